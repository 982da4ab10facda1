/*
 * kofka_metrics.h — libkofka_metrics.so, Kofka's metrics plugin.
 *
 * An interceptor plugin (include/kofka.h, "Plugins") built by `swift build` beside
 * libkofka.so. Load it with the broker config key
 *
 *     plugin.library.paths = /path/to/libkofka_metrics.so
 *
 * and every producer and consumer of that broker counts what it does; the counts are written
 * in the Prometheus text exposition format (version 0.0.4) to the file named by metrics.path,
 * every metrics.interval.ms by a background thread and whenever a broker using the plugin
 * closes. The file is replaced atomically (written to "PATH.tmp.PID", then renamed), which is
 * what node-exporter's textfile collector expects.
 *
 * Config keys (the broker passes every "metrics.*" key to the plugin and checks none of them;
 * the plugin rejects a "metrics.*" key it does not know with KOFKA_ERR_INVALID_CONFIG):
 *   metrics.path            the file to write (its folder must exist and be writable);
 *                           absent: counters are kept but nothing is written.
 *   metrics.interval.ms     0 .. 86400000 (default 10000): how often the file is rewritten;
 *                           0 = only when a broker closes (and at process exit).
 *   metrics.latency.header  true (default) | false: tag every record sent with the header
 *                           KOFKA_METRICS_SEND_HEADER (8 bytes, big-endian CLOCK_MONOTONIC
 *                           nanoseconds) so that its acknowledgement, on whichever thread it
 *                           comes, can be timed; false: no header, no latency histogram.
 *
 * A plugin is loaded once per process, so the config of the first broker that names it is the
 * one it keeps; its counters are process-wide (every broker that uses the interceptors named
 * "metrics" adds to them), as Prometheus counters should be: they only ever go up.
 *
 * Metrics (labels in braces; bytes are key + value bytes, headers not counted):
 *   kofka_sent_records_total{topic}                 records handed to a producer (on_send)
 *   kofka_produced_records_total{topic}             records acknowledged without error
 *   kofka_produced_bytes_total{topic}
 *   kofka_delivery_failures_total{topic,error}      records acknowledged with an error (its name)
 *   kofka_consumed_records_total{topic}             records returned by poll (on_consume)
 *   kofka_consumed_bytes_total{topic}
 *   kofka_commits_total{group,topic}                partitions committed (one per partition)
 *   kofka_commit_failures_total{group,topic,error}  partitions whose commit failed
 *   kofka_produce_latency_seconds{topic}            histogram: on_send to a successful
 *                                                   on_acknowledgement
 */
#ifndef KOFKA_METRICS_H
#define KOFKA_METRICS_H

#include <stddef.h>

#include "kofka.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The header the plugin adds to every record it sees sent (metrics.latency.header). */
#define KOFKA_METRICS_SEND_HEADER "kofka-metrics-send-ns"

/** The plugin's entry point (include/kofka.h, "Plugins"): reads the metrics.* keys of config,
 *  registers the interceptors named "metrics" and starts the writer thread.
 *  @return KOFKA_OK; KOFKA_ERR_INVALID_CONFIG an unknown metrics.* key, a bad value or a
 *          metrics.path whose folder is not writable (errstr says which); the code of
 *          kofka_interceptors_register otherwise. */
kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif /* KOFKA_METRICS_H */
