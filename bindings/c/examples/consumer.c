/*
 * consumer.c — read records as a member of a consumer group.
 *
 *   ./consumer                  # on "memory:" (it produces its own input first)
 *   ./consumer sqlite:events.db
 *
 * At-least-once: the consumer commits what it has processed, so after a crash
 * it re-reads at most the records since the last commit — never loses one.
 */
#include <stdio.h>
#include <string.h>
#include "kofka.h"

static int failed(kofka_err err, const char *what) {
    if (err == KOFKA_OK) return 0;
    fprintf(stderr, "%s: %s: %s\n", what, kofka_err_name(err), kofka_last_error());
    return 1;
}

/* Puts n records on the topic so that the example has something to read. */
static int produce_input(kofka_broker *broker, const char *topic, int n) {
    kofka_producer *p = NULL;
    if (failed(kofka_producer_new(broker, NULL, &p), "kofka_producer_new")) return 1;
    for (int i = 0; i < n; i++) {
        char value[32];
        int len = snprintf(value, sizeof value, "event-%d", i);
        kofka_record rec = {.partition = KOFKA_PARTITION_ANY, .value = value, .value_len = (size_t)len};
        if (failed(kofka_send(p, topic, &rec), "kofka_send")) { kofka_producer_close(p, 0); return 1; }
    }
    return failed(kofka_producer_close(p, 5000), "kofka_producer_close");
}

int main(int argc, char **argv) {
    const char *storage = argc > 1 ? argv[1] : "memory:";
    const char *topic = "events";
    const int count = 20;
    kofka_broker *broker = NULL;
    kofka_consumer *consumer = NULL;
    int status = 1;

    if (failed(kofka_broker_open(storage, NULL, &broker), "kofka_broker_open")) return 1;
    kofka_err err = kofka_topic_create(broker, topic, 2);
    if (err != KOFKA_ERR_TOPIC_EXISTS && failed(err, "kofka_topic_create")) goto out;
    if (produce_input(broker, topic, count)) goto out;

    const char *config[] = {
        "group.id", "example-readers",
        "delivery.mode", "at-least-once",
        "auto.offset.reset", "earliest",  /* a new group starts at the beginning */
        NULL,
    };
    if (failed(kofka_consumer_new(broker, config, &consumer), "kofka_consumer_new")) goto out;
    const char *topics[] = {topic};
    if (failed(kofka_subscribe(consumer, topics, 1), "kofka_subscribe")) goto out;

    /* Poll until 'count' records arrived (or 2 s pass with nothing new). */
    int received = 0;
    while (received < count) {
        kofka_message *msgs[8];
        size_t n = 0;
        if (failed(kofka_poll_batch(consumer, 2000, msgs, 8, &n), "kofka_poll_batch")) goto out;
        if (n == 0) break; /* nothing arrived in time: not an error */
        for (size_t i = 0; i < n; i++) {
            const kofka_message *m = msgs[i];
            printf("%s[%d]@%lld: %.*s\n", m->topic, m->partition, (long long)m->offset, (int)m->value_len,
                   (const char *)m->value);
            received++;
            kofka_message_free(msgs[i]); /* each message is freed on its own */
        }
        /* Processed: commit the positions after the returned messages. */
        if (failed(kofka_commit(consumer), "kofka_commit")) goto out;
    }
    if (received < count) { fprintf(stderr, "expected %d records, got %d\n", count, received); goto out; }

    for (int p = 0; p < 2; p++) {
        int64_t committed = -1;
        if (failed(kofka_committed(consumer, topic, p, &committed), "kofka_committed")) goto out;
        printf("group example-readers: %s[%d] committed at %lld\n", topic, p, (long long)committed);
    }
    status = 0;
out:
    /* Graceful close: final commit, leave the group. */
    if (failed(kofka_consumer_close(consumer), "kofka_consumer_close")) status = 1;
    if (failed(kofka_broker_close(broker), "kofka_broker_close")) status = 1;
    return status;
}
