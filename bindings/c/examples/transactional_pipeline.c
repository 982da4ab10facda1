/*
 * transactional_pipeline.c — exactly-once consume-transform-produce.
 *
 *   ./transactional_pipeline                  # on "memory:"
 *   ./transactional_pipeline sqlite:pipe.db
 *
 * Reads "numbers", writes each number squared to "squares", and commits the
 * consumer's offsets inside the same transaction: the output records and the
 * input offsets become visible together or not at all. A crash between the
 * two cannot duplicate or lose a result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kofka.h"

static int failed(kofka_err err, const char *what) {
    if (err == KOFKA_OK) return 0;
    fprintf(stderr, "%s: %s: %s\n", what, kofka_err_name(err), kofka_last_error());
    return 1;
}

static int create_topic(kofka_broker *b, const char *name) {
    kofka_err err = kofka_topic_create(b, name, 1);
    return err == KOFKA_ERR_TOPIC_EXISTS ? 0 : failed(err, "kofka_topic_create");
}

int main(int argc, char **argv) {
    const char *storage = argc > 1 ? argv[1] : "memory:";
    const int count = 12;
    kofka_broker *broker = NULL;
    kofka_producer *input = NULL, *producer = NULL;
    kofka_consumer *consumer = NULL, *reader = NULL;
    int status = 1;

    if (failed(kofka_broker_open(storage, NULL, &broker), "kofka_broker_open")) return 1;
    if (create_topic(broker, "numbers") || create_topic(broker, "squares")) goto out;

    /* Input: the numbers 1..count. */
    if (failed(kofka_producer_new(broker, NULL, &input), "kofka_producer_new")) goto out;
    for (int i = 1; i <= count; i++) {
        char v[16];
        int len = snprintf(v, sizeof v, "%d", i);
        kofka_record rec = {.partition = KOFKA_PARTITION_ANY, .value = v, .value_len = (size_t)len};
        if (failed(kofka_send(input, "numbers", &rec), "kofka_send")) goto out;
    }

    /* The pipeline: a transactional producer and a read_committed consumer. */
    const char *pconf[] = {"delivery.mode", "exactly-once", "transactional.id", "squarer-1", NULL};
    const char *cconf[] = {"delivery.mode", "exactly-once", "group.id", "squarer", "max.poll.records", "5", NULL};
    if (failed(kofka_producer_new(broker, pconf, &producer), "kofka_producer_new")) goto out;
    if (failed(kofka_consumer_new(broker, cconf, &consumer), "kofka_consumer_new")) goto out;
    const char *topics[] = {"numbers"};
    if (failed(kofka_subscribe(consumer, topics, 1), "kofka_subscribe")) goto out;
    /* Fences any older instance with the same transactional.id. */
    if (failed(kofka_init_transactions(producer, 5000), "kofka_init_transactions")) goto out;

    int done = 0;
    while (done < count) {
        kofka_message *msgs[5];
        size_t n = 0;
        if (failed(kofka_poll_batch(consumer, 2000, msgs, 5, &n), "kofka_poll_batch")) goto out;
        if (n == 0) { fprintf(stderr, "input ended after %d of %d\n", done, count); goto out; }

        if (failed(kofka_begin_transaction(producer), "kofka_begin_transaction")) goto out;
        kofka_err err = KOFKA_OK;
        for (size_t i = 0; i < n; i++) {
            char in[32], out_v[32];
            size_t len = msgs[i]->value_len < sizeof in - 1 ? msgs[i]->value_len : sizeof in - 1;
            memcpy(in, msgs[i]->value, len);
            in[len] = '\0';
            long x = strtol(in, NULL, 10);
            int olen = snprintf(out_v, sizeof out_v, "%ld", x * x);
            kofka_record rec = {.partition = KOFKA_PARTITION_ANY, .key = in, .key_len = len,
                                .value = out_v, .value_len = (size_t)olen};
            if (err == KOFKA_OK) err = kofka_send(producer, "squares", &rec);
            kofka_message_free(msgs[i]);
        }
        /* The consumer's positions join the transaction ... */
        if (err == KOFKA_OK) err = kofka_send_offsets_to_transaction(producer, consumer, 5000);
        /* ... and commit with the output, atomically. */
        if (err == KOFKA_OK) err = kofka_commit_transaction(producer, 5000);
        if (err != KOFKA_OK) {
            failed(err, "transaction");
            /* Fenced means another instance took over: stop. Otherwise abort and rewind. */
            if (err == KOFKA_ERR_PRODUCER_FENCED) goto out;
            if (failed(kofka_abort_transaction(producer, 5000), "kofka_abort_transaction")) goto out;
            if (failed(kofka_seek_to_committed(consumer), "kofka_seek_to_committed")) goto out;
            continue;
        }
        done += (int)n;
        printf("committed a transaction of %zu squares (%d/%d)\n", n, done, count);
    }

    /* Check the result with a read_committed reader. */
    if (failed(kofka_consumer_new(broker, (const char *[]){"isolation.level", "read_committed", NULL}, &reader),
               "kofka_consumer_new"))
        goto out;
    int32_t p0[] = {0};
    if (failed(kofka_assign(reader, "squares", p0, 1), "kofka_assign")) goto out;
    int seen = 0;
    for (;;) {
        kofka_message *m = NULL;
        if (failed(kofka_poll(reader, 500, &m), "kofka_poll")) goto out;
        if (!m) break;
        printf("squares@%lld: %.*s -> %.*s\n", (long long)m->offset, (int)m->key_len, (const char *)m->key,
               (int)m->value_len, (const char *)m->value);
        seen++;
        kofka_message_free(m);
    }
    int64_t committed = -1;
    if (failed(kofka_committed(consumer, "numbers", 0, &committed), "kofka_committed")) goto out;
    printf("%d squares; group squarer committed numbers[0] at %lld\n", seen, (long long)committed);
    if (seen < count || committed < count) { fprintf(stderr, "incomplete pipeline\n"); goto out; }
    status = 0;
out:
    if (failed(kofka_consumer_close(reader), "kofka_consumer_close")) status = 1;
    if (failed(kofka_consumer_close(consumer), "kofka_consumer_close")) status = 1;
    if (failed(kofka_producer_close(producer, 5000), "kofka_producer_close")) status = 1;
    if (failed(kofka_producer_close(input, 5000), "kofka_producer_close")) status = 1;
    if (failed(kofka_broker_close(broker), "kofka_broker_close")) status = 1;
    return status;
}
