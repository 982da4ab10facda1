/*
 * producer.c — send records with Kofka, synchronously and asynchronously.
 *
 *   cc -std=c11 producer.c $(pkg-config --cflags --libs kofka) -o producer
 *   ./producer                  # on "memory:"
 *   ./producer sqlite:events.db # on a SQLite file (created if missing)
 *
 * Every call's result is checked; on failure the program prints the code's
 * name and kofka_last_error() (which names the offending value) and exits 1.
 */
#include <stdio.h>
#include <string.h>
#include "kofka.h"

/* Prints "what: KOFKA_ERR_...: message" and returns 1 if err is not KOFKA_OK. */
static int failed(kofka_err err, const char *what) {
    if (err == KOFKA_OK) return 0;
    fprintf(stderr, "%s: %s: %s\n", what, kofka_err_name(err), kofka_last_error());
    return 1;
}

static int delivered = 0;

/* Delivery report: runs on our thread, inside kofka_producer_poll / kofka_flush. */
static void on_delivery(kofka_producer *p, const char *topic, const kofka_record *r, void *msg_opaque,
                        void *cb_opaque) {
    (void)p; (void)cb_opaque;
    if (r->err != KOFKA_OK) {
        fprintf(stderr, "record %s failed: %s\n", (const char *)msg_opaque, kofka_err_name(r->err));
        return;
    }
    delivered++;
    printf("delivered %s to %s[%d] at offset %lld\n", (const char *)msg_opaque, topic, r->partition,
           (long long)r->offset);
}

int main(int argc, char **argv) {
    const char *storage = argc > 1 ? argv[1] : "memory:";
    kofka_broker *broker = NULL;
    kofka_producer *producer = NULL;
    int status = 1;

    if (failed(kofka_broker_open(storage, NULL, &broker), "kofka_broker_open")) return 1;
    printf("kofka %s on %s\n", kofka_version(), storage);

    /* A topic with 3 partitions; on a reused SQLite file it may exist already. */
    kofka_err err = kofka_topic_create(broker, "orders", 3);
    if (err != KOFKA_ERR_TOPIC_EXISTS && failed(err, "kofka_topic_create")) goto out;

    /* acks=all, retries, idempotence: nothing lost, nothing duplicated. */
    const char *config[] = {"delivery.mode", "exactly-once", "client.id", "example-producer", NULL};
    if (failed(kofka_producer_new(broker, config, &producer), "kofka_producer_new")) goto out;

    /* 1. Synchronous: kofka_send returns once the record is stored. */
    const char *customers[] = {"alice", "bob", "carol"};
    for (int i = 0; i < 3; i++) {
        char value[64];
        int len = snprintf(value, sizeof value, "{\"order\": %d, \"customer\": \"%s\"}", i, customers[i]);
        kofka_header headers[] = {{"content-type", "application/json", 16}};
        kofka_record rec = {
            .partition = KOFKA_PARTITION_ANY,       /* the key picks the partition (murmur2, like Kafka) */
            .key = customers[i], .key_len = strlen(customers[i]),
            .value = value, .value_len = (size_t)len,
            .headers = headers, .header_count = 1,
            .timestamp_ms = 0,                      /* now */
        };
        if (failed(kofka_send(producer, "orders", &rec), "kofka_send")) goto out;
        printf("sent order %d for %s to partition %d, offset %lld\n", i, customers[i], rec.partition,
               (long long)rec.offset);
    }

    /* 2. Asynchronous: kofka_produce queues; reports arrive on poll/flush. */
    if (failed(kofka_producer_set_delivery_cb(producer, on_delivery, NULL), "kofka_producer_set_delivery_cb"))
        goto out;
    static const char *names[] = {"async-0", "async-1", "async-2", "async-3", "async-4"};
    for (int i = 0; i < 5; i++) {
        kofka_record rec = {.partition = KOFKA_PARTITION_ANY, .value = names[i], .value_len = strlen(names[i])};
        err = kofka_produce(producer, "orders", &rec, (void *)names[i]);
        if (err == KOFKA_ERR_QUEUE_FULL) { kofka_producer_poll(producer, 100); i--; continue; }
        if (failed(err, "kofka_produce")) goto out;
    }
    if (failed(kofka_flush(producer, 10000), "kofka_flush")) goto out;
    if (delivered != 5) { fprintf(stderr, "expected 5 delivery reports, got %d\n", delivered); goto out; }

    for (int p = 0; p < 3; p++) {
        int64_t low, high;
        if (failed(kofka_watermarks(broker, "orders", p, &low, &high), "kofka_watermarks")) goto out;
        printf("orders[%d]: offsets %lld .. %lld\n", p, (long long)low, (long long)high - 1);
    }
    status = 0;
out:
    /* Close in reverse order; closing NULL is a harmless no-op. */
    if (failed(kofka_producer_close(producer, 5000), "kofka_producer_close")) status = 1;
    if (failed(kofka_broker_close(broker), "kofka_broker_close")) status = 1;
    return status;
}
