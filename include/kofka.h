/*
 * kofka.h — Kofka: Kafka's delivery semantics as an embeddable library.
 *
 * Kofka gives a C program topics, partitions, producers, consumers,
 * consumer groups, idempotence and transactions on a storage backend chosen
 * at run time ("memory:" or "sqlite:PATH"). There is no server: a broker is a
 * handle on a storage backend, and every producer and consumer opened from it
 * reads and writes that storage directly. Several processes that open the same
 * SQLite file form one broker.
 *
 * Delivery modes (config key "delivery.mode"):
 *   at-most-once   the producer never retries; the consumer commits before it
 *                  returns records. Records may be lost, never duplicated.
 *   at-least-once  (default) the producer retries until acknowledged; the
 *                  consumer commits what a poll returned at the next poll.
 *                  Nothing is lost; duplicates are possible.
 *   exactly-once   an idempotent producer (producer id, epoch, sequence
 *                  numbers; duplicates are dropped by the broker) plus
 *                  transactions that make output records and consumer offsets
 *                  one atomic step; consumers read only committed data.
 *
 * ---------------------------------------------------------------------------
 * Conventions and caveats (read before the first call)
 * ---------------------------------------------------------------------------
 *  - Every fallible function returns a kofka_err; KOFKA_OK is 0. Results come
 *    back through out-parameters, which are left untouched on failure unless
 *    the function says otherwise.
 *  - kofka_last_error() returns a human message for the last failure on the
 *    calling thread ("" after a success). It names the offending value.
 *  - No function traps, aborts or leaks on bad input: NULL handles and
 *    pointers, a NULL data pointer with a non-zero length, unknown config
 *    keys, invalid names and oversized records all return an error code.
 *  - Config is a NULL-terminated array of alternating keys and values,
 *    e.g. {"delivery.mode", "exactly-once", "transactional.id", "tx-1", NULL}.
 *    NULL means all defaults. Unknown keys, invalid values and an odd number
 *    of entries fail with KOFKA_ERR_INVALID_CONFIG.
 *  - Handles (kofka_broker, kofka_producer, kofka_consumer) are opaque and
 *    safe to use from several threads at once, except where a function says
 *    otherwise. Closing or destroying a NULL handle is a harmless no-op.
 *  - A handle is a token, not an address: the library keeps a registry of
 *    live handles and checks every handle argument against it. A handle that
 *    was already closed or destroyed is answered with KOFKA_ERR_CLOSED (a
 *    second close included; kofka_consumer_destroy of a closed consumer is a
 *    no-op that sets kofka_last_error()); a pointer the library never
 *    returned, or a handle of another kind (a producer passed as a consumer),
 *    is answered with KOFKA_ERR_INVALID_ARG; neither ever crashes. A close on
 *    one thread while another thread is inside a call with the same handle is
 *    safe: the running call finishes with the object it started with (or
 *    returns KOFKA_ERR_CLOSED), and the object is freed when the last such
 *    call returns. Handle values are never reused within a process.
 *  - Sizes and counts are size_t and are checked as such: a length larger
 *    than message.max.bytes is KOFKA_ERR_MSG_TOO_LARGE and a count beyond a
 *    function's limit is KOFKA_ERR_INVALID_ARG, before any byte is read.
 *    Data pointers must point at as many bytes as their length says; the
 *    library cannot check that.
 *  - Strings passed in are copied; the library never keeps a caller's pointer
 *    after a call returns. Memory the library returns is freed with the
 *    function named at the call that returned it.
 *  - Delivery callbacks run only on a thread that calls kofka_producer_poll(),
 *    kofka_flush(), kofka_producer_close(), kofka_commit_transaction() or
 *    kofka_abort_transaction() (the last two flush and serve reports on the
 *    calling thread), never on a library thread.
 *  - Offsets: a partition's offsets are dense when written, starting at 0;
 *    compaction leaves gaps, which readers skip. The high watermark is the next
 *    offset to be written; the low watermark is the log start offset, which
 *    retention and kofka_delete_records move up. A committed consumer offset
 *    is the offset of the next record to read. Transaction markers do not
 *    occupy offsets; records of aborted transactions do occupy offsets and are
 *    skipped by read_committed consumers.
 *  - Retention is unlimited by default (log.retention.ms=-1,
 *    log.retention.bytes=-1), unlike Kafka: an embedded log never deletes
 *    what nobody asked it to delete. See kofka_topic_create_with_config.
 *
 * ---------------------------------------------------------------------------
 * Error classes: what to do after a failure
 * ---------------------------------------------------------------------------
 * Each function below lists the codes it can return and, after "->", what the
 * caller should do next. The classes (as in librdkafka and sqlite3.h):
 *
 *  retriable  KOFKA_ERR_BUSY        the storage was locked past its busy timeout;
 *                                   nothing was written -> repeat the same call.
 *             KOFKA_ERR_TIMED_OUT   for a send: the outcome is unknown (written
 *                                   or not) -> repeat; an idempotent producer
 *                                   deduplicates, an at-least-once one may write
 *                                   a duplicate. Elsewhere: the wait ran out.
 *             KOFKA_ERR_QUEUE_FULL  kofka_produce -> serve reports with
 *                                   kofka_producer_poll, then repeat.
 *             kofka_err_is_retriable() is 1 for exactly these.
 *  abortable  the open transaction cannot commit; kofka_txn_requires_abort() is 1
 *             (after KOFKA_ERR_TXN_TIMED_OUT, or a send whose outcome stayed
 *             unknown inside a transaction) -> kofka_abort_transaction, rewind
 *             consumers (kofka_seek_to_committed), begin again and redo the work.
 *  fatal      KOFKA_ERR_PRODUCER_FENCED a newer producer took the transactional.id
 *             or producer id -> close this producer; this process is a zombie
 *             and must not write again under that id (create a new producer,
 *             which fences the other, only if this process is the rightful owner).
 *             KOFKA_ERR_STORAGE     the backend failed (I/O, corruption, disk full)
 *             -> the outcome of a write is unknown; report it, close the broker;
 *             retrying may work after the cause is fixed.
 *             KOFKA_ERR_CLOSED      the handle or its broker was closed -> stop
 *             using it (close it if it is not closed yet).
 *  group      KOFKA_ERR_REBALANCED  the consumer no longer owns the partition in the
 *             group's current generation; nothing was committed -> poll again (the
 *             poll rejoins and follows the new assignment); records since the last
 *             commit will be delivered again, to this or another member.
 *  caller     KOFKA_ERR_INVALID_ARG, KOFKA_ERR_INVALID_CONFIG, KOFKA_ERR_INVALID_STATE,
 *             KOFKA_ERR_UNKNOWN_TOPIC, KOFKA_ERR_UNKNOWN_PARTITION,
 *             KOFKA_ERR_TOPIC_EXISTS, KOFKA_ERR_MSG_TOO_LARGE,
 *             KOFKA_ERR_OFFSET_OUT_OF_RANGE, KOFKA_ERR_NO_OFFSET,
 *             KOFKA_ERR_UNSUPPORTED -> the same call fails the same way: fix the
 *             argument, the config or the order of calls (kofka_last_error() names
 *             the offending value).
 *  report     KOFKA_ERR_PURGED      only in delivery reports: the record was never
 *             written because its transaction was aborted -> produce it again in
 *             a new transaction if it is still wanted.
 *  KOFKA_ERR_OUT_OF_ORDER_SEQUENCE  an idempotent producer's sequence has a gap
 *             (records were lost between it and the broker) -> close the producer
 *             and create a new one; check what was written.
 *
 * Every function that takes a handle may also return KOFKA_ERR_INVALID_ARG
 * (NULL, a pointer the library never returned, a handle of another kind) and
 * KOFKA_ERR_CLOSED (the handle, or its broker, was closed); they are listed
 * per function only where they mean something more.
 */
#ifndef KOFKA_H
#define KOFKA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/** Status of a call. The numeric values are stable. */
typedef enum kofka_err {
    KOFKA_OK = 0,                        /**< success */
    KOFKA_ERR_INVALID_ARG = 1,           /**< a NULL pointer, oversized count, bad name, unknown storage scheme,
                                              or a pointer that is not a handle of the expected kind */
    KOFKA_ERR_INVALID_CONFIG = 2,        /**< unknown config key, invalid value, odd-length array, contradiction */
    KOFKA_ERR_INVALID_STATE = 3,         /**< the call is not allowed in the handle's current state */
    KOFKA_ERR_UNKNOWN_TOPIC = 4,         /**< the topic does not exist (and was not auto-created) */
    KOFKA_ERR_UNKNOWN_PARTITION = 5,     /**< the topic has no such partition */
    KOFKA_ERR_TOPIC_EXISTS = 6,          /**< kofka_topic_create on an existing topic */
    KOFKA_ERR_MSG_TOO_LARGE = 7,         /**< key + value + headers exceed message.max.bytes */
    KOFKA_ERR_OFFSET_OUT_OF_RANGE = 8,   /**< an offset beyond the partition's watermarks */
    KOFKA_ERR_NO_OFFSET = 9,             /**< no committed offset and auto.offset.reset=none */
    KOFKA_ERR_TIMED_OUT = 10,            /**< timed out; for a send: outcome unknown (request or ack lost) */
    KOFKA_ERR_STORAGE = 11,              /**< the storage backend failed: I/O, corruption, disk full */
    KOFKA_ERR_OUT_OF_ORDER_SEQUENCE = 12,/**< an idempotent batch's sequence number leaves a gap */
    KOFKA_ERR_PRODUCER_FENCED = 13,      /**< a newer producer with the same producer id / transactional.id exists */
    KOFKA_ERR_TXN_TIMED_OUT = 14,        /**< the open transaction was aborted after transaction.timeout.ms */
    KOFKA_ERR_REBALANCED = 15,           /**< the consumer is not (or no longer) the owner in the current generation */
    KOFKA_ERR_CLOSED = 16,               /**< the handle, or its broker, was closed */
    KOFKA_ERR_UNSUPPORTED = 17,          /**< not available in this build or on this backend */
    KOFKA_ERR_QUEUE_FULL = 18,           /**< kofka_produce: queue.buffering.max.messages reached; poll and retry */
    KOFKA_ERR_BUSY = 19,                 /**< the storage stayed locked by another writer past sqlite.busy.timeout.ms;
                                              nothing was written; retriable */
    KOFKA_ERR_PURGED = 20                /**< delivery report only: the record was removed from the producer's queue
                                              before it was written, because its transaction was aborted */
} kofka_err;

/**
 * The message for the last failure on the calling thread.
 * @return a NUL-terminated string owned by the library, valid until the next
 *         Kofka call on this thread; "" after a successful call. Never NULL.
 */
const char *kofka_last_error(void);

/** The code's name, e.g. "KOFKA_ERR_PRODUCER_FENCED"; a static string.
 *  An unknown value gives "KOFKA_ERR_UNKNOWN". Never NULL. */
const char *kofka_err_name(kofka_err err);

/** One sentence describing the code; a static string. Never NULL. */
const char *kofka_err_desc(kofka_err err);

/**
 * Whether repeating the same call may succeed: 1 for KOFKA_ERR_BUSY (nothing was written),
 * KOFKA_ERR_TIMED_OUT (outcome unknown) and KOFKA_ERR_QUEUE_FULL; 0 for every other code,
 * including KOFKA_OK and values that are not codes.
 */
int kofka_err_is_retriable(kofka_err err);

/** The library version, e.g. "0.1.0"; a static string. */
const char *kofka_version(void);

/* ------------------------------------------------------------------------ */
/* Handles and records                                                       */
/* ------------------------------------------------------------------------ */

typedef struct kofka_broker kofka_broker;     /**< a storage backend opened as a broker */
typedef struct kofka_producer kofka_producer; /**< a producer on a broker */
typedef struct kofka_consumer kofka_consumer; /**< a consumer on a broker */
typedef struct kofka_server kofka_server;     /**< a Kafka wire-protocol server on a broker */

/** Pass as kofka_record.partition to let the partitioner choose. */
#define KOFKA_PARTITION_ANY (-1)

/** A record header. Names need not be unique; order is kept. */
typedef struct kofka_header {
    const char *name;                      /**< NUL-terminated, not NULL */
    const void *value; size_t value_len;   /**< value may be NULL (then value_len must be 0) */
} kofka_header;

/** A record to produce. The library copies every byte it needs before the call returns. */
typedef struct kofka_record {
    int32_t     partition;    /**< in: a partition or KOFKA_PARTITION_ANY; out: where it went */
    const void *key;   size_t key_len;     /**< key may be NULL (then key_len must be 0) */
    const void *value; size_t value_len;   /**< value may be NULL (then value_len must be 0) */
    const kofka_header *headers; size_t header_count;  /**< in: optional, copied */
    int64_t     timestamp_ms; /**< in: milliseconds since the epoch; 0 = now */
    int64_t     offset;       /**< out: offset written, -1 if not known (acks=0) */
    kofka_err   err;          /**< out: this record's result (batches, delivery reports) */
} kofka_record;

/** A consumed record. Every pointer in it is owned by the message and stays
 *  valid until kofka_message_free(). */
typedef struct kofka_message {
    const char *topic;        /**< NUL-terminated topic name */
    int32_t     partition;    /**< partition it was read from */
    int64_t     offset;       /**< its offset in the partition */
    int64_t     timestamp_ms; /**< the record's timestamp, ms since the epoch */
    const void *key;   size_t key_len;     /**< NULL if the record had no key */
    const void *value; size_t value_len;   /**< NULL if the record had no value */
    const kofka_header *headers; size_t header_count; /**< NULL / 0 when none */
} kofka_message;

/* ------------------------------------------------------------------------ */
/* Broker                                                                    */
/* ------------------------------------------------------------------------ */

/**
 * Opens a broker on a storage backend.
 *
 * @param[in]  storage "memory:" (volatile, this handle only) or "sqlite:PATH"
 *                     (PATH relative or absolute; the file is created if
 *                     missing; many threads and processes may open it).
 * @param[in]  config  NULL or a NULL-terminated key/value array. Keys:
 *                     auto.create.topics.enable (true), num.partitions (1),
 *                     message.max.bytes (1048576), sqlite.synchronous
 *                     (full | normal), sqlite.busy.timeout.ms (5000),
 *                     fault.storage.failure.rate (0.0: probability a produce
 *                     write fails, half before and half after its commit),
 *                     fault.storage.seed (1); topic defaults (see
 *                     kofka_topic_create_with_config) log.retention.ms (-1),
 *                     log.retention.bytes (-1), log.cleanup.policy (delete),
 *                     log.cleaner.delete.retention.ms (86400000),
 *                     log.cleaner.min.compaction.lag.ms (0); the background
 *                     cleaner's period log.retention.check.interval.ms (300000;
 *                     0 = none); state expiry producer.id.expiration.ms
 *                     (86400000), transactional.id.expiration.ms (604800000),
 *                     offsets.retention.minutes (10080).
 * @param[out] out     receives the broker; release with kofka_broker_close().
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG    storage or out is NULL, or the scheme is unknown (the
 *                                  message lists the known ones) -> fix the string;
 *         KOFKA_ERR_INVALID_CONFIG an unknown key or invalid value -> fix the config;
 *         KOFKA_ERR_BUSY           another process held the file locked while it was being
 *                                  set up -> retry;
 *         KOFKA_ERR_STORAGE        the file cannot be opened, is not a Kofka database, is
 *                                  corrupt, or has a newer schema -> check the path; do not
 *                                  retry blindly.
 */
kofka_err kofka_broker_open(const char *storage, const char *const *config, kofka_broker **out);

/**
 * Closes the broker and frees it. Producers and consumers still open on it get
 * KOFKA_ERR_CLOSED from their calls from then on, but remain valid handles until
 * they are closed themselves (they must still be closed, to be freed).
 * Closing NULL is a no-op returning KOFKA_OK.
 * @return KOFKA_OK;
 *         KOFKA_ERR_CLOSED      b was already closed -> nothing to do (a second close);
 *         KOFKA_ERR_INVALID_ARG b is not a broker handle -> fix the call.
 */
kofka_err kofka_broker_close(kofka_broker *b);

/**
 * Creates a topic.
 * @param[in] topic      name matching [A-Za-z0-9._-]{1,249}, not "." or "..".
 * @param[in] partitions 1 .. 100000.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG  NULL, a bad name or count -> fix the argument;
 *         KOFKA_ERR_TOPIC_EXISTS -> use the existing topic (kofka_topic_partitions);
 *         KOFKA_ERR_BUSY         the SQLite file stayed locked; nothing was created -> retry;
 *         KOFKA_ERR_STORAGE      -> see "Error classes";
 *         KOFKA_ERR_CLOSED       the broker was closed -> stop.
 */
kofka_err kofka_topic_create(kofka_broker *b, const char *topic, int32_t partitions);

/**
 * Reads a topic's partition count into *partitions.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_UNKNOWN_TOPIC -> create it, or fix the name;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_topic_partitions(kofka_broker *b, const char *topic, int32_t *partitions);

/**
 * Creates a topic with its own configuration (Kafka's topic keys; any key not
 * given takes the broker default):
 *   retention.ms          delete records older than this, by timestamp: the log
 *                         start moves up to the first record not older (-1 = never);
 *   retention.bytes       per partition: delete the oldest records while the
 *                         partition holds more (-1 = never);
 *   cleanup.policy        delete | compact | compact,delete (compact: the latest
 *                         record per key survives, at its offset);
 *   delete.retention.ms   how long compaction keeps tombstones (NULL values);
 *   min.compaction.lag.ms records younger than this are not compacted;
 *   max.message.bytes     the largest record this topic takes.
 * Retention never deletes past the last stable offset; compaction never touches
 * records above it, younger than min.compaction.lag.ms, or the last record of a
 * partition, and removes records of aborted transactions.
 * @param[in] config NULL or a NULL-terminated key/value array (copied).
 * @return KOFKA_OK; the codes of kofka_topic_create, and
 *         KOFKA_ERR_INVALID_CONFIG an unknown key or invalid value, named in
 *                                  kofka_last_error() -> fix the config.
 */
kofka_err kofka_topic_create_with_config(kofka_broker *b, const char *topic, int32_t partitions,
                                         const char *const *config);

/**
 * Sets keys of a topic's own configuration (the others keep their values). An
 * empty value ("") returns the key to the broker default. Stored with the topic:
 * every handle on the storage applies it at its next maintenance; producers of
 * this handle check max.message.bytes against it at once.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_INVALID_CONFIG -> fix the config (nothing was changed);
 *         KOFKA_ERR_UNKNOWN_TOPIC -> fix the name;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_topic_config_set(kofka_broker *b, const char *topic, const char *const *config);

/**
 * Copies the value in effect for topic config `key` (the topic's own, else the
 * broker default) into buf, NUL-terminated.
 * @param[in]     key one of the keys of kofka_topic_create_with_config.
 * @param[out]    buf room for *len bytes (may be NULL when *len is 0).
 * @param[in,out] len in: the size of buf; out: the bytes needed, NUL included
 *                    (also on KOFKA_ERR_INVALID_ARG for a buffer too small).
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG    NULL arguments, or buf too small (*len says how
 *                                  much is needed) -> call again with a larger buffer;
 *         KOFKA_ERR_INVALID_CONFIG an unknown key -> fix the key;
 *         KOFKA_ERR_UNKNOWN_TOPIC -> fix the name;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_topic_config_get(kofka_broker *b, const char *topic, const char *key, char *buf, size_t *len);

/**
 * Kafka's DeleteRecords: every record of the partition below before_offset is
 * deleted, and before_offset becomes its log start offset (low watermark).
 * Consumers positioned below it follow their auto.offset.reset. Deletes in
 * short write transactions (safe beside producers and consumers).
 * @param[in]  before_offset 0 .. the high watermark, or -1 for the high watermark
 *                           (everything). At or below the log start: nothing changes.
 * @param[out] low_watermark NULL, or the partition's log start offset afterwards.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_OFFSET_OUT_OF_RANGE before_offset is above the high watermark
 *                                       -> pass at most the high watermark, or -1;
 *         KOFKA_ERR_UNKNOWN_TOPIC, KOFKA_ERR_UNKNOWN_PARTITION -> fix the name / number;
 *         KOFKA_ERR_BUSY the storage stayed locked; the records deleted so far stay
 *                        deleted -> retry;
 *         KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_delete_records(kofka_broker *b, const char *topic, int32_t partition,
                               int64_t before_offset, int64_t *low_watermark);

/**
 * Runs retention, compaction and state expiry now, for every topic, and returns
 * when done: each topic's retention.ms / retention.bytes / cleanup.policy;
 * producer ids idle past producer.id.expiration.ms, transactional ids idle past
 * transactional.id.expiration.ms, committed offsets of groups empty for
 * offsets.retention.minutes, aborted-transaction index entries below the log
 * start; then freed space is given back. The same work runs by itself on every
 * broker handle every log.retention.check.interval.ms (one cleaner at a time
 * across processes sharing a file). It writes in short chunks (each about 25 ms
 * at most), so producers and consumers keep working; a process killed in the
 * middle loses nothing that must survive.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_BUSY the storage stayed locked; what was done so far stays done
 *                        -> retry later;
 *         KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_broker_maintain(kofka_broker *b);

/**
 * Reads a partition's watermarks: *low = the log start offset (the first offset
 * it may still hold: 0 until retention or kofka_delete_records moved it), *high
 * = the next offset to be written (includes records of open transactions).
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_UNKNOWN_TOPIC, KOFKA_ERR_UNKNOWN_PARTITION -> fix the name / number;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_watermarks(kofka_broker *b, const char *topic, int32_t partition, int64_t *low, int64_t *high);

/* ------------------------------------------------------------------------ */
/* Producer                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * Creates a producer.
 *
 * Config: delivery.mode (at-most-once | at-least-once | exactly-once;
 * default at-least-once) presets the keys below; explicit keys override it:
 *   acks (0 | 1 | all), retries, retry.backoff.ms (100), delivery.timeout.ms
 *   (120000), enable.idempotence, transactional.id, transaction.timeout.ms
 *   (60000), linger.ms (5), batch.num.messages (10000),
 *   queue.buffering.max.messages (100000), client.id,
 *   fault.request.loss.rate, fault.ack.loss.rate (0.0 .. 1.0), fault.seed.
 * Presets: at-most-once = acks=0, retries=0; at-least-once = acks=all,
 * retries=2147483647; exactly-once = acks=all, retries=2147483647,
 * enable.idempotence=true.
 *
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG    NULL b or out, or b is not a broker -> fix the call;
 *         KOFKA_ERR_INVALID_CONFIG unknown key, invalid value, or a contradiction
 *                                  (transactional.id with acks=0, enable.idempotence
 *                                  without acks=all) -> fix the config;
 *         KOFKA_ERR_BUSY           (idempotent: allocating the producer id) -> retry;
 *         KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED the broker was closed -> stop.
 */
kofka_err kofka_producer_new(kofka_broker *b, const char *const *config, kofka_producer **out);

/**
 * Flushes queued records (waiting up to timeout_ms, -1 = forever, serving
 * delivery reports on this thread), then frees the producer. An open
 * transaction is aborted. The handle is closed even when an error is returned:
 * every later call with it, a second close included, is KOFKA_ERR_CLOSED.
 * Closing NULL is a no-op.
 * @return KOFKA_OK;
 *         KOFKA_ERR_TIMED_OUT   records were still queued (they are failed with
 *                               KOFKA_ERR_TIMED_OUT in their delivery reports) -> nothing
 *                               to retry: the handle is closed; treat their outcome as unknown;
 *         KOFKA_ERR_CLOSED      already closed -> nothing to do;
 *         KOFKA_ERR_INVALID_ARG not a producer handle -> fix the call.
 */
kofka_err kofka_producer_close(kofka_producer *p, int timeout_ms);

/**
 * Sends one record synchronously: returns when the mode's guarantee for it is
 * settled (written and acknowledged, deduplicated, or given up on). With
 * acks=0 (at-most-once) nothing is waited for: the record is handed to the
 * producer's background writer, the call returns at once with offset -1, and
 * kofka_flush / kofka_producer_close wait for the write. On return
 * record->partition, record->offset and record->err are set.
 * @param[in,out] record see kofka_record; headers and data are copied.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG  NULL, a bad partition, NULL data with a length
 *                                -> fix the record;
 *         KOFKA_ERR_MSG_TOO_LARGE key + value + headers (or any one length, or
 *                                header_count) exceed message.max.bytes -> split or
 *                                shrink the record;
 *         KOFKA_ERR_UNKNOWN_TOPIC (auto-creation disabled), KOFKA_ERR_UNKNOWN_PARTITION
 *                                -> fix the name / partition;
 *         KOFKA_ERR_BUSY         the storage stayed locked and the producer gave up;
 *                                nothing was written -> retry the send;
 *         KOFKA_ERR_TIMED_OUT    gave up, outcome unknown (retries or delivery.timeout.ms
 *                                used up) -> retry (an idempotent producer deduplicates;
 *                                at-least-once may duplicate); inside a transaction
 *                                kofka_txn_requires_abort() is then 1 -> abort;
 *         KOFKA_ERR_TXN_TIMED_OUT the transaction outlived transaction.timeout.ms -> abort
 *                                the transaction and redo it;
 *         KOFKA_ERR_INVALID_STATE transactional producer outside a transaction -> call
 *                                kofka_begin_transaction first;
 *         KOFKA_ERR_PRODUCER_FENCED -> fatal: close the producer;
 *         KOFKA_ERR_OUT_OF_ORDER_SEQUENCE -> close the producer, create a new one;
 *         KOFKA_ERR_STORAGE      -> the outcome is unknown; see "Error classes";
 *         KOFKA_ERR_CLOSED       the producer or its broker was closed -> stop.
 */
kofka_err kofka_send(kofka_producer *p, const char *topic, kofka_record *record);

/**
 * Sends count records synchronously, one storage transaction per partition
 * touched. Each record's partition, offset and err are set; a record with bad
 * pointers or lengths fails alone (its err is set, the others are sent).
 * @return the first record's error, or KOFKA_OK if all succeeded; the codes of
 *         kofka_send(), per record, with the same next steps (retry only the
 *         records whose err is retriable). count may be 0 (records may then be
 *         NULL); a count larger than an array of records can be is
 *         KOFKA_ERR_INVALID_ARG -> fix the call.
 */
kofka_err kofka_send_batch(kofka_producer *p, const char *topic, kofka_record *records, size_t count);

/**
 * Sends count records synchronously from packed buffers: the fastest way across the C
 * boundary (one call, no per-record structs), e.g. for bindings. Record i's key is the next
 * key_lens[i] bytes of keys (-1 = a NULL key) and its value the next value_lens[i] bytes of
 * values (-1 = a NULL value); timestamps are "now"; no headers. Sent as kofka_send_batch.
 * Every length is checked before any byte is read: a length below -1 or above 2^31-1 fails
 * the whole call and nothing is sent; a record above message.max.bytes fails alone.
 * @param[in]  partition      a partition for every record, or KOFKA_PARTITION_ANY.
 * @param[in]  keys, key_lens both NULL when no record has a key.
 * @param[out] partitions_out NULL, or count entries: where each record went.
 * @param[out] offsets_out    NULL, or count entries: each record's offset (-1 if unknown or failed).
 * @param[out] errs_out       NULL, or count entries: each record's result.
 * @return the first record's error, or KOFKA_OK; the codes of kofka_send() with its next
 *         steps, and KOFKA_ERR_INVALID_ARG for a length below -1, NULL buffers with
 *         lengths or an impossible count, KOFKA_ERR_MSG_TOO_LARGE for a length above
 *         2^31-1 -> fix the buffers.
 */
kofka_err kofka_send_packed(kofka_producer *p, const char *topic, int32_t partition,
                            const void *keys, const int64_t *key_lens,
                            const void *values, const int64_t *value_lens, size_t count,
                            int32_t *partitions_out, int64_t *offsets_out, kofka_err *errs_out);

/**
 * Queues a copy of the record for asynchronous delivery and returns. A
 * background writer batches queued records by linger.ms and
 * batch.num.messages, so many share one storage commit. The outcome arrives
 * as a delivery report (see kofka_producer_set_delivery_cb): KOFKA_OK, the
 * codes of kofka_send(), or KOFKA_ERR_PURGED when its transaction was aborted
 * before it was written.
 * @param[in] msg_opaque passed back unchanged in the delivery report.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG, KOFKA_ERR_MSG_TOO_LARGE -> fix the record;
 *         KOFKA_ERR_UNKNOWN_TOPIC (auto-creation disabled), KOFKA_ERR_UNKNOWN_PARTITION
 *                                (an explicit partition out of range) -> fix it;
 *         KOFKA_ERR_QUEUE_FULL   queue.buffering.max.messages records are queued or
 *                                awaiting their report -> call kofka_producer_poll, retry;
 *         KOFKA_ERR_INVALID_STATE transactional producer outside a transaction -> begin one;
 *         KOFKA_ERR_PRODUCER_FENCED -> fatal; KOFKA_ERR_TXN_TIMED_OUT -> abort;
 *         KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_produce(kofka_producer *p, const char *topic, const kofka_record *record, void *msg_opaque);

/** What kofka_produce_lease() grants. */
typedef struct kofka_lease {
    size_t  credits;       /**< out: queue slots reserved for the next kofka_produce_packed() (>= 1) */
    int32_t partitions;    /**< out: the topic's partition count (an explicit partition must be below it) */
    size_t  max_kv_bytes;  /**< out: a record without headers or timestamp whose key_len + value_len is at
                                most this passes kofka_produce's size check (the topic's max.message.bytes) */
    int32_t hold_ms;       /**< out: the producer's linger.ms: a caller holding records hands them over
                                within this many ms of the first, as the writer would have sent them */
    int64_t txn;           /**< out: the transaction open when the lease was granted (0: none); the
                                lease's records belong to it, and fail if it ended before the handover */
} kofka_lease;

/**
 * Reserves up to max slots of the produce queue for one later kofka_produce_packed(),
 * so that a caller (a binding) can collect records itself and hand them over many at a
 * time. Performs every check of kofka_produce that does not depend on the record: the
 * producer is open, a transaction can take records, the topic exists (or is created).
 * Reserved slots count against queue.buffering.max.messages exactly as queued records do
 * until kofka_produce_packed() fills or releases them (it always releases them all), or
 * the producer is closed.
 * @param[in]  topic  the topic the records will go to.
 * @param[in]  max    slots wanted; 0 is taken as 1. Fewer may be granted.
 * @param[out] out    the lease; untouched on failure.
 * @return KOFKA_OK (out->credits >= 1);
 *         KOFKA_ERR_QUEUE_FULL   no slot is free -> call kofka_producer_poll, retry (as kofka_produce);
 *         KOFKA_ERR_UNSUPPORTED  the producer has send or acknowledgement interceptors, which
 *                                see records one by one -> use kofka_produce;
 *         KOFKA_ERR_INVALID_ARG  p, topic or out is NULL, or p is not a producer -> fix the call;
 *         the other codes of kofka_produce that do not depend on the record (UNKNOWN_TOPIC,
 *         INVALID_STATE, PRODUCER_FENCED, TXN_TIMED_OUT, BUSY, STORAGE, CLOSED), same next steps.
 * Threads: any thread; each lease belongs to the caller that took it.
 */
kofka_err kofka_produce_lease(kofka_producer *p, const char *topic, size_t max, kofka_lease *out);

/**
 * Queues count records in order, as count calls of kofka_produce would at this moment
 * (same partitioner: murmur2 of the key, else the spread produce uses; same background
 * writer and delivery reports), in the slots of a lease, then releases the lease's unused
 * slots: lease->credits are released on every path, success or error. The records belong to
 * the lease's transaction (lease->txn): if it was committed or aborted since the lease was
 * granted, every record fails in its report with KOFKA_ERR_INVALID_STATE — records held
 * across the end of a transaction never join the next one. Record i's key is the next key_lens[i] bytes of keys (-1 = a NULL key), its value
 * the next value_lens[i] bytes of values (-1 = NULL), as in kofka_send_packed; no headers;
 * timestamp now. The bytes are copied before the call returns.
 * A record kofka_produce would refuse now (the producer's broker closed, no transaction to
 * take it, fenced, an explicit partition out of range, too large for the topic) is not
 * written: its delivery report carries the error kofka_produce would have returned, in its
 * place among the reports. A record whose opaque is NULL has no delivery callback (its
 * report is counted by kofka_producer_poll, not handed to the callback).
 * @param[in] lease       the lease the records fill (as kofka_produce_lease set it); count must
 *                        not exceed lease->credits.
 * @param[in] keys, key_lens  both NULL when no record has a key.
 * @param[in] values, value_lens  value_lens must not be NULL when count > 0.
 * @param[in] partitions  NULL, or count entries: a partition or KOFKA_PARTITION_ANY.
 * @param[in] opaques     NULL (all NULL), or count msg_opaque values for the reports.
 * @return KOFKA_OK (every record is queued; failures come in delivery reports);
 *         KOFKA_ERR_INVALID_ARG  NULL p, topic or lease, count > lease->credits, a length below -1, a
 *                                NULL buffer with a non-zero length, a partition below -1
 *                                -> fix the call; nothing was queued;
 *         KOFKA_ERR_MSG_TOO_LARGE a length above 2^31-1 -> nothing was queued;
 *         KOFKA_ERR_QUEUE_FULL   lease->credits named more slots than were reserved and the queue
 *                                has no room for the records beyond them -> nothing was queued;
 *                                pass the lease as it was granted;
 *         KOFKA_ERR_CLOSED       the producer was closed -> stop; nothing was queued.
 * Threads: any thread.
 */
kofka_err kofka_produce_packed(kofka_producer *p, const char *topic, const kofka_lease *lease,
                               const void *keys, const int64_t *key_lens,
                               const void *values, const int64_t *value_lens,
                               const int32_t *partitions, void *const *opaques, size_t count);

/**
 * A delivery report. record->err, record->partition and record->offset are
 * set; record->key/value point at the library's copy, valid only during the
 * call. topic is valid only during the call. Runs on the thread that called
 * kofka_producer_poll / kofka_flush / kofka_producer_close /
 * kofka_commit_transaction / kofka_abort_transaction. p is the producer's
 * handle (during kofka_producer_close it is already closed: calls with it
 * return KOFKA_ERR_CLOSED).
 */
typedef void (*kofka_delivery_cb)(kofka_producer *p, const char *topic, const kofka_record *record,
                                  void *msg_opaque, void *cb_opaque);

/** Sets (or, with cb NULL, clears) the delivery report callback. Safe while another thread
 *  serves reports: a batch of reports being served keeps the callback it started with.
 *  @return KOFKA_OK; KOFKA_ERR_INVALID_ARG (not a producer) -> fix the call;
 *          KOFKA_ERR_CLOSED -> stop. */
kofka_err kofka_producer_set_delivery_cb(kofka_producer *p, kofka_delivery_cb cb, void *cb_opaque);

/**
 * Registers a word the library keeps at 1 while delivery reports wait to be served and at 0
 * once a poll, flush or close has served them all, so that a caller for whom every call into
 * the library is costly (a binding) can skip a kofka_producer_poll(p, 0) that would serve
 * nothing. The word is written with release stores under the producer's lock; read it with an
 * acquire (or plain aligned) load. It is a hint, never a promise: a report that becomes ready
 * just after the caller read 0 is served by the next poll, flush or close as always.
 * @param[in] flag  caller-owned; set at once to its current meaning. NULL unregisters. It must
 *                  stay valid until this function is called again (with another flag or NULL)
 *                  or kofka_producer_close returns: after that the library never writes it.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG (not a producer) -> fix the call;
 *         KOFKA_ERR_CLOSED -> stop (the flag is not registered).
 * Threads: any thread.
 */
kofka_err kofka_producer_set_ready_flag(kofka_producer *p, int32_t *flag);

/**
 * Serves delivery reports on the calling thread, waiting up to timeout_ms
 * (0 = do not wait, -1 = until at least one report) for the first one. Returns
 * at once when no record is in flight (no report can come).
 * @return the number of reports served; -1 when p is NULL, closed or not a
 *         producer (kofka_last_error() says which) -> stop polling it.
 */
int kofka_producer_poll(kofka_producer *p, int timeout_ms);

/**
 * Waits until every queued record is delivered or failed, serving delivery
 * reports on this thread. timeout_ms -1 waits forever.
 * @return KOFKA_OK;
 *         KOFKA_ERR_TIMED_OUT records are still queued -> call again (nothing is lost:
 *                             they stay queued);
 *         KOFKA_ERR_INVALID_ARG -> fix the call; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_flush(kofka_producer *p, int timeout_ms);

/**
 * Registers transactional.id with the broker: gets its stable producer id and
 * bumps the epoch, which fences every earlier producer with the same id and
 * aborts that producer's open transaction.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_STATE no transactional.id, or already initialised -> fix the
 *                                 config / call it once;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_init_transactions(kofka_producer *p, int timeout_ms);

/**
 * Opens a transaction.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_STATE no transactional.id, before kofka_init_transactions, a
 *                                 transaction already open, or the previous one must be
 *                                 aborted first (kofka_txn_requires_abort() is 1) -> fix
 *                                 the order of calls / abort;
 *         KOFKA_ERR_PRODUCER_FENCED -> fatal: close the producer;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_begin_transaction(kofka_producer *p);

/**
 * Adds the consumer's current positions (for its group, generation and
 * assignment) to the open transaction: they become the group's committed
 * offsets if and only if the transaction commits.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG   c is NULL or not a consumer handle -> fix the call;
 *         KOFKA_ERR_CLOSED        p or c (or their broker) was closed -> stop;
 *         KOFKA_ERR_INVALID_STATE no open transaction, or the consumer has no group.id
 *                                 -> fix the order of calls / the consumer config;
 *         KOFKA_ERR_REBALANCED    the consumer's generation is stale or it no longer
 *                                 owns a partition it returned records from whose
 *                                 offsets no committed transaction (or commit) holds —
 *                                 offsets sent to a transaction that aborted do not
 *                                 count -> abort the transaction, kofka_seek_to_committed,
 *                                 poll the consumer (it follows the new assignment), redo
 *                                 the work;
 *         KOFKA_ERR_TXN_TIMED_OUT -> abort; KOFKA_ERR_PRODUCER_FENCED -> fatal;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE -> abort.
 */
kofka_err kofka_send_offsets_to_transaction(kofka_producer *p, kofka_consumer *c, int timeout_ms);

/**
 * Commits the open transaction: first flushes every record queued by
 * kofka_produce (waiting up to timeout_ms, serving their delivery reports on
 * this thread: delivery callbacks run inside this call), then makes its
 * records visible to read_committed consumers and its offsets committed,
 * atomically.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_STATE no open transaction -> fix the order of calls;
 *         KOFKA_ERR_TIMED_OUT     queued records were not all delivered in time; nothing
 *                                 was committed -> call again, or abort;
 *         KOFKA_ERR_TXN_TIMED_OUT it outlived transaction.timeout.ms and was aborted
 *                                 (kofka_txn_requires_abort() is 1) -> abort, redo;
 *         KOFKA_ERR_PRODUCER_FENCED a newer producer took the id; the transaction was
 *                                 aborted -> fatal: close the producer;
 *         KOFKA_ERR_BUSY -> retry the commit; KOFKA_ERR_STORAGE -> the outcome of the
 *         commit is unknown: retry the commit (one that took effect answers KOFKA_OK
 *         again) or abort (an abort of one that took effect fails with
 *         KOFKA_ERR_INVALID_STATE and the transaction stands committed: do not redo
 *         it); KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_commit_transaction(kofka_producer *p, int timeout_ms);

/**
 * Aborts the open transaction: its written records are skipped by
 * read_committed consumers forever; its offsets are discarded. Records still
 * queued by kofka_produce and not yet written are never written: they are
 * failed with KOFKA_ERR_PURGED in their delivery reports, which are served on
 * this thread inside this call (delivery callbacks run here). Consumers are
 * not rewound (see kofka_seek_to_committed).
 * @return KOFKA_OK (kofka_txn_requires_abort() is 0 afterwards);
 *         KOFKA_ERR_INVALID_STATE no open or failed transaction -> nothing to abort; or
 *                                 the transaction had committed (a commit that failed
 *                                 with KOFKA_ERR_STORAGE took effect) -> it stands
 *                                 committed, offsets included: do not redo its work;
 *         KOFKA_ERR_PRODUCER_FENCED -> fatal: close the producer;
 *         KOFKA_ERR_BUSY -> retry the abort; KOFKA_ERR_STORAGE -> retry, or close (a
 *         transaction left open is aborted after transaction.timeout.ms);
 *         KOFKA_ERR_CLOSED -> stop. After a failed abort the queued records are
 *         already purged: the transaction is abort-only (kofka_txn_requires_abort()
 *         is 1, kofka_commit_transaction fails with KOFKA_ERR_INVALID_STATE).
 */
kofka_err kofka_abort_transaction(kofka_producer *p, int timeout_ms);

/**
 * Whether the open transaction can only be aborted (librdkafka's txn_requires_abort): a send,
 * kofka_send_offsets_to_transaction or kofka_commit_transaction failed in a way that leaves the
 * transaction unable to commit (KOFKA_ERR_TXN_TIMED_OUT, an outcome that stayed unknown), or a
 * kofka_abort_transaction failed after purging the queued records.
 * -> call kofka_abort_transaction, then begin a new transaction and redo its work.
 * @return 1 or 0; 0 for a NULL, closed or invalid handle (kofka_last_error() then says which,
 *         and is "" after a valid handle).
 */
int kofka_txn_requires_abort(kofka_producer *p);

/* ------------------------------------------------------------------------ */
/* Consumer                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * Creates a consumer.
 * Config: group.id, delivery.mode (at-most-once | at-least-once |
 * exactly-once), enable.auto.commit, auto.offset.reset (earliest | latest |
 * none), isolation.level (read_committed | read_uncommitted),
 * session.timeout.ms (10000), max.poll.records (500),
 * partition.assignment.strategy (range | roundrobin), client.id,
 * auto.commit.interval.ms (5000, Kafka's: at-least-once commits what earlier
 * polls returned at the first poll after each interval, and at close; 0 commits
 * at the very next poll, one storage commit per poll, fewest duplicates after a
 * crash), queued.min.messages (1000: a poll that finds
 * nothing read ahead reads up to this many records at once; later polls hand
 * them out from memory) and queued.max.messages.kbytes (65536). Records only
 * read ahead are never counted in a position or committed; a seek or a
 * rebalance drops them.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_INVALID_CONFIG -> fix the config; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_consumer_new(kofka_broker *b, const char *const *config, kofka_consumer **out);

/**
 * Joins group.id and subscribes to the topics; the group assigns partitions.
 * @param[in] count 1 .. 100000 topics.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG   NULL, count 0 or above the limit, a bad name -> fix it;
 *         KOFKA_ERR_INVALID_STATE no group.id, or manually assigned -> fix the config /
 *                                 use one or the other;
 *         KOFKA_ERR_UNKNOWN_TOPIC (auto-creation disabled) -> create it first;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_subscribe(kofka_consumer *c, const char *const *topics, size_t count);

/**
 * Assigns partitions of a topic manually (no group membership); adds to any
 * earlier manual assignment. Commits still use group.id when it is set.
 * @param[in] count 0 .. 100000 partitions (0 does nothing).
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG   NULL, count above the limit -> fix the call;
 *         KOFKA_ERR_INVALID_STATE subscribed -> use one or the other;
 *         KOFKA_ERR_UNKNOWN_TOPIC, KOFKA_ERR_UNKNOWN_PARTITION -> fix the name / number;
 *         KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_assign(kofka_consumer *c, const char *topic, const int32_t *partitions, size_t count);

/**
 * Returns the next record, blocking up to timeout_ms (-1 = forever) and
 * waking as soon as one is available. *out = NULL when nothing arrived in
 * time (KOFKA_OK). Free a returned message with kofka_message_free().
 * A poll blocked on one thread does not hold up kofka_commit, kofka_position,
 * kofka_consumer_close or kofka_consumer_destroy on another: when the consumer
 * is closed or destroyed, the blocked poll returns KOFKA_OK with *out = NULL.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_NO_OFFSET    no committed offset and auto.offset.reset=none
 *                                -> kofka_seek to a start, or commit one;
 *         KOFKA_ERR_OFFSET_OUT_OF_RANGE the position fell below the log start and
 *                                auto.offset.reset=none -> kofka_seek;
 *         KOFKA_ERR_BUSY -> poll again; KOFKA_ERR_STORAGE;
 *         KOFKA_ERR_CLOSED the consumer's broker was closed (or the consumer, before
 *                          the call) -> stop.
 */
kofka_err kofka_poll(kofka_consumer *c, int timeout_ms, kofka_message **out);

/**
 * Like kofka_poll but returns up to max records (at most max.poll.records)
 * into out[0 .. *count-1]; each must be freed with kofka_message_free().
 * *count = 0 when nothing arrived in time. max is the size of the caller's
 * array: 0 is KOFKA_ERR_INVALID_ARG; any larger value (SIZE_MAX included)
 * asks for up to max.poll.records. Errors and next steps as kofka_poll.
 */
kofka_err kofka_poll_batch(kofka_consumer *c, int timeout_ms, kofka_message **out, size_t max, size_t *count);

/**
 * Lends up to max records (at most max.poll.records) into out[0 .. *count-1],
 * blocking up to timeout_ms for the first, after settling the previous lend.
 * Lent records are made like kofka_poll_batch's (free each with
 * kofka_message_free) but are not yet *returned*: kofka_commit, kofka_position,
 * kofka_consumer_close, kofka_send_offsets_to_transaction and automatic commits
 * do not count them. The next kofka_poll_lend on this consumer settles them:
 * the first `settle` records of the previous lend count as returned then
 * (positions move past them, commits cover them); the others are taken back and
 * made again by the next poll or lend. So a binding can cross into the library
 * once per batch, hand the batch out one record at a time, and say at its next
 * call how many it handed out; a process that dies first loses nothing it had
 * not handed out.
 *   - settle: how many of the previous lend's records were handed out
 *     (0 .. its *count); pass 0 on the first call.
 *   - max: the size of out; 0 only settles (out may then be NULL) and returns
 *     at once.
 *   - window_ns (may be NULL): set to how long, in nanoseconds from now, the
 *     lent records may be handed out before the next call is due — a group
 *     member's heartbeat and an automatic commit run only inside calls, so a
 *     binding that holds lent records past this calls again (settling what it
 *     handed out; the rest is lent again). UINT64_MAX when nothing is due
 *     (manual assignment, no automatic commits).
 *     With auto.commit.interval.ms=0 (commit at every poll) a lend makes at
 *     most one record.
 * At-most-once with a group (it commits before it returns) and a consumer
 * whose broker has an on_consume interceptor (it sees what is returned): a lend
 * makes at most one record, returned at once (committed first in at-most-once);
 * settling it changes nothing more.
 * Any other call that moves what is read ahead (kofka_poll, kofka_poll_batch,
 * kofka_seek, kofka_seek_to_committed, an assignment change, a rebalance inside
 * a poll) takes lent records back; settling them afterwards is
 * KOFKA_ERR_INVALID_ARG and changes nothing (settle 0 then).
 * Threads: as kofka_poll; one thread should own the lend/settle sequence.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG c, count or (max > 0) out NULL, or
 *         settle above what is lent -> fix the call; other errors and next
 *         steps as kofka_poll (on an error nothing is lent; the settle took
 *         effect unless it was the error).
 */
kofka_err kofka_poll_lend(kofka_consumer *c, size_t settle, int timeout_ms, kofka_message **out, size_t max,
                          size_t *count, uint64_t *window_ns);

/**
 * Frees a message returned by kofka_poll / kofka_poll_batch / kofka_poll_lend. NULL is a no-op.
 * The library keeps the set of messages it handed out and not yet freed: a
 * second free of the same message, or a pointer it never returned, is ignored
 * and sets kofka_last_error() (the heap is not touched). Not detected: a
 * stale pointer whose address the library has since handed out again for a
 * newer message (the newer message is freed).
 */
void kofka_message_free(kofka_message *m);

/**
 * Commits the position after every message returned so far, for every
 * assigned partition.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_STATE no group.id -> set one to commit;
 *         KOFKA_ERR_REBALANCED    not the owner in the current generation; nothing was
 *                                 committed -> poll again (it rejoins); records since the
 *                                 last commit will be delivered again;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_commit(kofka_consumer *c);

/**
 * Commits m->offset + 1 for m's topic and partition. Only m->topic,
 * m->partition and m->offset are read. The message must name a record the log
 * has: the topic exists, the partition is in range, and
 * 0 <= m->offset < the partition's high watermark.
 * @return KOFKA_OK; the errors of kofka_commit, and
 *         KOFKA_ERR_INVALID_ARG   m or m->topic is NULL -> fix the call;
 *         KOFKA_ERR_UNKNOWN_TOPIC the topic does not exist -> fix the message;
 *         KOFKA_ERR_UNKNOWN_PARTITION the partition is out of range -> fix the message;
 *         KOFKA_ERR_OFFSET_OUT_OF_RANGE m->offset is negative, INT64_MAX, or at or past
 *                                 the high watermark -> fix the message.
 *         A refused commit moves nothing.
 */
kofka_err kofka_commit_message(kofka_consumer *c, const kofka_message *m);

/**
 * Reads the group's committed offset for a partition; *offset = -1 when the
 * group has none.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_INVALID_STATE no group.id -> set one;
 *         KOFKA_ERR_UNKNOWN_TOPIC, KOFKA_ERR_UNKNOWN_PARTITION -> fix the name / number;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_committed(kofka_consumer *c, const char *topic, int32_t partition, int64_t *offset);

/**
 * Reads the consumer's position (next offset it will return) for an
 * assigned partition; -1 if it has not been fetched from yet.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_INVALID_STATE the partition is not assigned (or was revoked by a
 *                                 rebalance) -> ask only for assigned partitions;
 *         KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_position(kofka_consumer *c, const char *topic, int32_t partition, int64_t *offset);

/**
 * Sets the position of an assigned partition. offset may equal the high
 * watermark (then the consumer waits for new records).
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG -> fix the call;
 *         KOFKA_ERR_INVALID_STATE not assigned -> seek only assigned partitions;
 *         KOFKA_ERR_OFFSET_OUT_OF_RANGE outside 0 .. high watermark -> read the
 *                                 watermarks, pick an offset within them;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_seek(kofka_consumer *c, const char *topic, int32_t partition, int64_t offset);

/**
 * Rewinds every assigned partition to the group's committed offset (or the
 * auto.offset.reset position when there is none).
 * @return KOFKA_OK; KOFKA_ERR_INVALID_STATE (no group.id) -> set one;
 *         KOFKA_ERR_NO_OFFSET no committed offset and auto.offset.reset=none -> kofka_seek;
 *         KOFKA_ERR_BUSY -> retry; KOFKA_ERR_STORAGE; KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_seek_to_committed(kofka_consumer *c);

/**
 * Graceful close: the mode's final commit, leaves the group, frees. The
 * handle is closed even when an error is returned: every later call with it,
 * a second close included, is KOFKA_ERR_CLOSED. A kofka_poll blocked on
 * another thread returns (no message) and does not delay the close. Closing
 * NULL is a no-op.
 * @return KOFKA_OK;
 *         KOFKA_ERR_REBALANCED the final commit was refused (the group moved on) ->
 *                              nothing to do: the records will be delivered again;
 *         KOFKA_ERR_BUSY, KOFKA_ERR_STORAGE the final commit or leave failed -> nothing
 *                              to retry (the handle is closed): the group expires the
 *                              member after session.timeout.ms;
 *         KOFKA_ERR_CLOSED already closed -> nothing to do;
 *         KOFKA_ERR_INVALID_ARG not a consumer handle -> fix the call.
 */
kofka_err kofka_consumer_close(kofka_consumer *c);

/**
 * As if the process died: no commit, no leave; frees the handle. The group
 * notices after session.timeout.ms. NULL is a no-op. A closed, destroyed or
 * foreign handle is a no-op that sets kofka_last_error() (otherwise it is "").
 */
void kofka_consumer_destroy(kofka_consumer *c);

/* ------------------------------------------------------------------------ */
/* The Kafka wire protocol: serving a broker to Kafka clients                */
/* ------------------------------------------------------------------------ */

/*
 * A server speaks Kafka's binary protocol over TCP, so that any Kafka client
 * (librdkafka, confluent-kafka, kcat, kafka-python, the Java client) can
 * produce to, fetch from, join groups on and run transactions against the
 * broker's storage, while library handles keep using the same storage: one
 * log, one set of groups and transactions. This one node is the controller,
 * the leader of every partition and the coordinator of every group and
 * transactional id. See the README's "kofka serve" section for what is
 * served, at which versions, and the limits (one serving process per storage
 * coordinates the classic groups of that storage).
 */

/**
 * Starts serving broker b on a TCP address. Returns once the socket listens;
 * the server runs on its own threads (one I/O thread and a pool of workers)
 * until kofka_server_stop().
 *
 * @param[in]  b       an open broker; it must stay open while the server runs
 *                     (closing it first makes every request fail with a
 *                     retriable error until the server is stopped).
 * @param[in]  listen  "HOST:PORT" ("[IPV6]:PORT" for IPv6; a bare "HOST" means
 *                     port 9092). Port 0 picks a free port: read it with
 *                     kofka_server_port(). NULL means "127.0.0.1:9092".
 * @param[in]  config  NULL or a NULL-terminated key/value array. Keys:
 *                     advertised.host (the listen host; "127.0.0.1" when
 *                     listening on 0.0.0.0 or ::) — the host name clients are
 *                     told to connect to; server.worker.threads (8, 2...256) —
 *                     threads handling requests (a waiting Fetch or JoinGroup
 *                     holds none).
 * @param[out] out     receives the server; stop and free it with
 *                     kofka_server_stop(). Untouched on failure.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG    b is not a broker handle, out is NULL, listen is
 *                                  malformed, or the address cannot be bound (in use,
 *                                  not local) -> fix the address or pick port 0;
 *         KOFKA_ERR_INVALID_CONFIG an unknown key or invalid value -> fix the config;
 *         KOFKA_ERR_CLOSED         b was closed -> open a broker first.
 *
 * Threads: may be called from any thread; several servers may serve one broker
 * on different ports, but only one process should serve a given storage (the
 * classic groups' join rounds are coordinated in the serving process).
 */
kofka_err kofka_server_start(kofka_broker *b, const char *listen, const char *const *config, kofka_server **out);

/**
 * The port a server listens on (the one chosen when it was started on port 0).
 * @param[in]  s    a server handle.
 * @param[out] port receives the port. Untouched on failure.
 * @return KOFKA_OK;
 *         KOFKA_ERR_INVALID_ARG s is not a server handle or port is NULL -> fix the call;
 *         KOFKA_ERR_CLOSED      s was stopped -> nothing to read.
 * Threads: any thread, at any time before kofka_server_stop().
 */
kofka_err kofka_server_port(kofka_server *s, int *port);

/**
 * Stops a server gracefully and frees it: no new connections are accepted,
 * requests being handled finish (up to 5 seconds), every connection is
 * closed (clients see a disconnect and retry elsewhere or fail), the server's
 * threads end. Requests waiting for data or for their group are dropped
 * unanswered. The broker stays open. Stopping NULL is a no-op returning
 * KOFKA_OK.
 * @return KOFKA_OK;
 *         KOFKA_ERR_CLOSED      s was already stopped -> nothing to do;
 *         KOFKA_ERR_INVALID_ARG s is not a server handle -> fix the call.
 * Threads: any thread; blocks until the server's threads ended, so do not call
 * it from inside a callback the server runs (it runs none).
 */
kofka_err kofka_server_stop(kofka_server *s);

/* ------------------------------------------------------------------------ */
/* Plugins: storage backends and interceptors loaded at run time             */
/* ------------------------------------------------------------------------ */

/*
 * A plugin is a shared library that exports
 *
 *     kofka_err kofka_plugin_init(const char *const *config, char *errstr, size_t errstr_size);
 *
 * and, from it, registers what it provides with kofka_storage_register() and
 * kofka_interceptors_register(). A plugin is compiled against this header only
 * and is best linked without -lkofka (cc -shared -fPIC plugin.c): its kofka_*
 * calls then resolve to the library that loaded it, whether that is
 * libkofka.so in a C or Python process or the Kofka Swift package inside a
 * Swift program.
 *
 * Loading: the broker config key "plugin.library.paths" (';'-separated paths)
 * names libraries loaded before the storage string is resolved, each at most
 * once per process; kofka_plugin_init gets the broker's whole config array
 * (NULL-terminated key/value pairs) and, on failure, writes a message into
 * errstr (errstr_size bytes, NUL-terminated). A storage scheme that nobody has
 * registered ("lmdb:...") is looked up as a plugin library "libkofka_SCHEME.so"
 * (SQLite's extension naming): first in the folder that holds libkofka.so (or
 * the program embedding Kofka), then on the system library path; its
 * kofka_plugin_init must register the scheme. ("postgres:" is looked up as
 * libkofka_postgresql.so, which registers both spellings.)
 *
 * A plugin is initialised once per process, with the config of the first broker
 * that loads it. A plugin that wants every broker's config also exports
 *
 *     kofka_err kofka_plugin_config(const char *const *config, char *errstr, size_t errstr_size);
 *
 * which is called on every kofka_broker_open whose plugin.library.paths names the
 * library (right after kofka_plugin_init for the first); an error from it fails
 * that open with its code and errstr.
 *
 * Config keys that start with the name a plugin registered and a dot
 * ("metrics.path" for interceptors named "metrics", "lmdb.map.size" for the
 * scheme "lmdb") belong to that plugin and are not checked by the broker; every
 * other unknown key stays KOFKA_ERR_INVALID_CONFIG.
 *
 * Errors of kofka_broker_open when a plugin is involved: KOFKA_ERR_INVALID_ARG
 * (a library cannot be loaded — the message names it and dlerror() — or it has
 * no kofka_plugin_init; an unknown scheme with no plugin library found, naming
 * the places looked in), or the code kofka_plugin_init returned (message: its
 * errstr).
 */

/* ---- storage backends --------------------------------------------------- */

/** A record as a storage backend sees it. On append, the pointers point at the
 *  library's memory, valid only during the call (copy what you keep). On read,
 *  the backend fills it with pointers into its own memory, valid until the
 *  visit callback returns. Lengths are -1 for "no key" / "no value" / "no
 *  headers" (distinct from an empty one, 0). */
typedef struct kofka_stored_record {
    int64_t     offset;        /**< read: the record's offset; append: offset it gets (base + i) */
    int64_t     txn;           /**< the transaction that wrote it, 0 = none (one per append call) */
    int64_t     timestamp_ms;  /**< ms since the epoch (already resolved; never "now") */
    const void *key;     int64_t key_len;       /**< -1: no key */
    const void *value;   int64_t value_len;     /**< -1: no value */
    const void *headers; int64_t headers_len;   /**< encoded headers, opaque to the backend; -1: none */
} kofka_stored_record;

/** Returned by a visit callback: 0 = go on, 1 = stop. */
typedef int (*kofka_storage_visit_kv)(void *ctx, const char *key, size_t key_len, const void *value, size_t value_len);
typedef int (*kofka_storage_visit_record)(void *ctx, const kofka_stored_record *record);

/**
 * A storage backend as a table of functions: the C mirror of Kofka's storage
 * protocol (Swift's StorageBackend). It stores two things and nothing else —
 * partition logs (a partition is a number `pnum`, 0 <= pnum < 2^23; offsets
 * 0 <= offset < 2^40) and a key/value map of small blobs with ordered range
 * scans — and makes each write transaction atomic and exclusive, across threads
 * and, for a shared store, processes. Every delivery rule lives in Kofka above it.
 *
 * Versioning: struct_size is sizeof(kofka_storage_ops) as the plugin was
 * compiled; fields are only ever appended; Kofka reads only the fields that fit
 * in struct_size and treats a NULL slot as "not provided". Slots marked
 * REQUIRED must be set; the others have the default written next to them.
 *
 * Threads: open/close are called once per instance. Kofka calls begin from many
 * threads at once; a write transaction must exclude every other write
 * transaction on the same store (other instances and processes included): begin
 * waits for it and gives up with KOFKA_ERR_BUSY after the backend's own timeout.
 * Read transactions run concurrently with each other and with the writer and
 * see a consistent snapshot. All calls on one txn come from the thread that
 * began it, in order. change_token, wait_for_change and wake_all may be called
 * from any thread at any time between open and close.
 *
 * Errors: return KOFKA_OK, or a kofka_err — KOFKA_ERR_BUSY (locked; nothing
 * written), KOFKA_ERR_STORAGE (I/O, corruption, full), KOFKA_ERR_CLOSED — and,
 * before returning it, say what failed with kofka_storage_set_error(). After an
 * error inside a write transaction Kofka calls rollback.
 */
typedef struct kofka_storage_ops {
    size_t struct_size;   /**< sizeof(kofka_storage_ops) as compiled */

    /** REQUIRED. Opens the store at `location` (the storage string after "SCHEME:"),
     *  with the broker's config (keys "SCHEME.*" are the backend's). *instance
     *  receives the backend's handle; errstr (errstr_size bytes) a message on failure. */
    kofka_err (*open)(void *opaque, const char *location, const char *const *config,
                      void **instance, char *errstr, size_t errstr_size);
    /** REQUIRED. Releases the instance; no call on it follows. */
    void (*close)(void *instance);

    /** REQUIRED. Begins a transaction: writable = 1 for the exclusive writer,
     *  0 for a read snapshot. *txn receives its handle. */
    kofka_err (*begin)(void *instance, int writable, void **txn);
    /** REQUIRED. Commits (a write: every change becomes visible at once and is
     *  durable as the backend promises) and ends the transaction. */
    kofka_err (*commit)(void *txn);
    /** REQUIRED. Discards every change and ends the transaction (also ends a read). */
    void (*rollback)(void *txn);

    /** REQUIRED. *value / *value_len receive the value under key, or *value = NULL
     *  when there is none; the pointer stays valid until the next call on txn. */
    kofka_err (*get)(void *txn, const char *key, size_t key_len, const void **value, size_t *value_len);
    /** REQUIRED. Stores value under key (writable txn), replacing any earlier value. */
    kofka_err (*put)(void *txn, const char *key, size_t key_len, const void *value, size_t value_len);
    /** REQUIRED. Removes key (writable txn); no error if absent. */
    kofka_err (*del)(void *txn, const char *key, size_t key_len);
    /** REQUIRED. Visits every entry with lower <= key < upper in ascending byte
     *  order, until visit returns 1. The pointers are valid during the callback. */
    kofka_err (*scan)(void *txn, const char *lower, size_t lower_len, const char *upper, size_t upper_len,
                      kofka_storage_visit_kv visit, void *ctx);

    /** REQUIRED. The partition's log start offset (0 until truncate moved it), high
     *  watermark (the next offset; never moves down, even when every record was
     *  deleted) and bytes held (the sum of key, value and headers lengths, -1 as
     *  0). All 0 for a partition never written. */
    kofka_err (*log_state)(void *txn, int64_t pnum, int64_t *start, int64_t *next, int64_t *bytes);
    /** REQUIRED. Appends count records (count >= 1) at the high watermark, all
     *  tagged with txn_id (writable txn); *base receives the first one's offset. */
    kofka_err (*append)(void *txn, int64_t pnum, int64_t txn_id, const kofka_stored_record *records,
                        size_t count, int64_t *base);
    /** REQUIRED. Visits, in offset order, up to max_count records held with
     *  from <= offset < below (offsets removed are simply absent), until visit
     *  returns 1; *visited receives how many were visited. */
    kofka_err (*read)(void *txn, int64_t pnum, int64_t from, int64_t below, size_t max_count,
                      kofka_storage_visit_record visit, void *ctx, size_t *visited);
    /** REQUIRED. Deletes every record below `before` and makes it the log start
     *  (clamped to the high watermark; at or below the current start: nothing
     *  changes); *start receives the log start afterwards (writable txn). */
    kofka_err (*truncate)(void *txn, int64_t pnum, int64_t before, int64_t *start);
    /** REQUIRED. Removes the records at the given offsets (ascending); offsets not
     *  held are ignored; the log start and high watermark do not move (writable txn). */
    kofka_err (*remove)(void *txn, int64_t pnum, const int64_t *offsets, size_t count);

    /** A number that changes whenever any writer (any process sharing the store)
     *  has committed. It may move a little after the commit (a notification that
     *  travels, as PostgreSQL's NOTIFY), but never before the commit is visible to a
     *  new read transaction: Kofka takes the token, then reads, then waits on it. Default (NULL): Kofka counts this process's commits only, so
     *  other processes' writes are seen when a consumer's wait times out. */
    uint64_t (*change_token)(void *instance);
    /** Blocks until change_token may differ from token, wake_all is called, or
     *  timeout_ns passes; may return early. Default: Kofka waits on its own
     *  commit counter, re-checking change_token every 2 ms. */
    void (*wait_for_change)(void *instance, uint64_t token, uint64_t timeout_ns);
    /** Wakes every wait_for_change of this instance. Default: Kofka's own. */
    void (*wake_all)(void *instance);
    /** Gives back part of the space deletions freed, holding the write lock
     *  briefly; *more = 1 when there is more to give back. Default: nothing. */
    kofka_err (*reclaim_space)(void *instance, int *more);
} kofka_storage_ops;

/**
 * Registers a storage backend under `scheme` ([a-z0-9.+-]{1,32}, not "memory" or
 * "sqlite"); from then on kofka_broker_open("SCHEME:location", ...) uses it, in
 * every broker opened afterwards (process-wide). The ops struct is copied
 * (struct_size bytes at most); opaque is passed to ops->open.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG (NULL, a bad scheme, struct_size too
 *         small for the REQUIRED slots, a REQUIRED slot NULL, or the scheme is
 *         already registered) -> fix the call.
 */
kofka_err kofka_storage_register(const char *scheme, const kofka_storage_ops *ops, void *opaque);

/**
 * For a storage backend: the message for the error the current op is about to
 * return (thread-local; copied; Kofka adds the scheme and the op). NULL clears it.
 */
void kofka_storage_set_error(const char *message);

/** Receives one line of a conformance report (NUL-terminated, valid during the call). */
typedef void (*kofka_conformance_line_cb)(void *opaque, const char *line);

/**
 * Runs Kofka's storage conformance suite (the checks of the Swift library
 * KofkaStorageTesting, as `kofka lab conformance` does) against the backend
 * that serves `storage`: how a backend written outside Kofka — a C plugin or a
 * Python class registered under a scheme — proves it keeps every promise of
 * the storage protocol (exact offsets, NULL vs empty, atomic exclusive writes
 * and their undo, change notification, deletion, persistence across reopen).
 *
 * @param[in]  storage "SCHEME:LOCATION": each check opens fresh stores at
 *                     LOCATION plus a suffix (-PID-N-RANDOM) and removes them
 *                     afterwards (a file with its -wal/-shm/-journal/-lock
 *                     siblings, or a directory with its files); or "memory:".
 * @param[in]  config  NULL or a NULL-terminated key/value array: broker config
 *                     for every store (e.g. the backend's own SCHEME.* keys).
 * @param[in]  only    NULL, or run only the checks whose name contains it.
 * @param[in]  line    NULL, or called once per check, on the calling thread,
 *                     with "PASS  name (0.01 s)", "SKIP  name: why" or
 *                     "FAIL  name (0.01 s)" followed by one line per failure.
 * @param[in]  opaque  passed to line.
 * @param[out] failed  NULL, or receives how many checks failed.
 * @return KOFKA_OK when every check ran (look at *failed for the verdict);
 *         KOFKA_ERR_INVALID_ARG    storage is NULL or not SCHEME:LOCATION, or no
 *                                  check's name contains `only` -> fix the call;
 *         KOFKA_ERR_INVALID_CONFIG an unknown key -> fix the config;
 *         or the error opening a first store returned (an unknown scheme is
 *         KOFKA_ERR_INVALID_ARG; a store that cannot be opened KOFKA_ERR_STORAGE).
 * Threads: any thread; the checks call the backend from several threads at once
 * (as brokers do). Takes seconds: the checks write, reopen and wait.
 */
kofka_err kofka_storage_conformance(const char *storage, const char *const *config, const char *only,
                                    kofka_conformance_line_cb line, void *opaque, int *failed);

/* ---- interceptors -------------------------------------------------------- */

/**
 * Hooks that observe (and may tag) what producers and consumers do, as in
 * librdkafka. Any hook may be NULL. A hook never changes a record's fate: what
 * it does cannot fail a send, a poll or a commit (it returns nothing).
 * Versioning: struct_size is sizeof(kofka_interceptors) as compiled; fields are
 * only ever appended; an older, shorter struct keeps working.
 */
typedef struct kofka_interceptors {
    size_t struct_size;   /**< sizeof(kofka_interceptors) as compiled: fields are only appended */
    void  *opaque;        /**< passed to every hook */
    /** Application thread, inside kofka_send / kofka_send_batch / kofka_send_packed /
     *  kofka_produce, before partitioning. May change the record (partition, key,
     *  value, headers, timestamp — e.g. add a header); pointers it sets must stay
     *  valid until the hook returns (Kofka copies them as soon as it returns). */
    void (*on_send)(void *opaque, const char *topic, kofka_record *record);
    /** Once per record, with its final result in record->err / partition / offset;
     *  on the thread that settles it: the sender's for kofka_send*, the one serving
     *  delivery reports (kofka_producer_poll, kofka_flush, ...) for kofka_produce. */
    void (*on_acknowledgement)(void *opaque, const char *topic, const kofka_record *record);
    /** Application thread, inside kofka_poll / kofka_poll_batch, for each message
     *  before it is returned. */
    void (*on_consume)(void *opaque, const kofka_message *message);
    /** After an offset commit (automatic, explicit, or inside a transaction's
     *  commit), once per partition, with its result. */
    void (*on_commit)(void *opaque, const char *group_id, const char *topic, int32_t partition,
                      int64_t offset, kofka_err err);
    /** The broker handle is closing (once, on the closing thread). */
    void (*on_close)(void *opaque);
} kofka_interceptors;

/**
 * Adds interceptors to a broker handle: every producer and consumer opened on
 * it afterwards calls them (in the order added). The struct is copied.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG (NULL, an empty name, struct_size too
 *         small, or a second add with the same name) -> fix the call;
 *         KOFKA_ERR_CLOSED -> stop.
 */
kofka_err kofka_interceptors_add(kofka_broker *b, const char *name, const kofka_interceptors *ic);

/**
 * Registers interceptors process-wide, usually from kofka_plugin_init. A broker
 * uses the registered ones its config key "interceptors" names (comma-separated),
 * or, when it has no such key, every one registered by a library in its own
 * plugin.library.paths. The struct is copied.
 * @return KOFKA_OK; KOFKA_ERR_INVALID_ARG (NULL, an empty name, struct_size too
 *         small, or the name is already registered) -> fix the call.
 */
kofka_err kofka_interceptors_register(const char *name, const kofka_interceptors *ic);

#ifdef __cplusplus
}
#endif
#endif /* KOFKA_H */
