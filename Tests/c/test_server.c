/*
 * test_server.c — kofka_server_start / kofka_server_port / kofka_server_stop,
 * through the C ABI and a raw TCP socket speaking Kafka's wire protocol:
 *  - a server on port 0 reports the port it chose, and answers ApiVersions v0
 *    (error 0, Produce and Fetch among the keys) and, for a version it does
 *    not support, error 35 (UNSUPPORTED_VERSION) in a v0 response;
 *  - it serves the broker's storage: records sent through the library are
 *    seen by ListOffsets v1 (latest = the high watermark) over the wire;
 *  - bad arguments: a NULL or foreign broker, a NULL out, a malformed listen
 *    address, an address in use, an unknown config key, a closed broker;
 *    kofka_server_port on NULL; a second stop is KOFKA_ERR_CLOSED, NULL is OK;
 *  - after stop the port no longer accepts connections, and the broker stays
 *    open and usable.
 * Runs on every backend of Tests/c (memory, SQLite, PostgreSQL when set).
 */
#define _DEFAULT_SOURCE
#include "check.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    return fd;
}

/* A growing big-endian buffer for one request. */
typedef struct { unsigned char b[512]; size_t n; } wbuf;
static void put16(wbuf *w, int v) { w->b[w->n++] = (unsigned char)(v >> 8); w->b[w->n++] = (unsigned char)v; }
static void put32(wbuf *w, int32_t v) { for (int s = 24; s >= 0; s -= 8) w->b[w->n++] = (unsigned char)((uint32_t)v >> s); }
static void put64(wbuf *w, int64_t v) { for (int s = 56; s >= 0; s -= 8) w->b[w->n++] = (unsigned char)((uint64_t)v >> s); }
static void putstr(wbuf *w, const char *s) { put16(w, (int)strlen(s)); memcpy(w->b + w->n, s, strlen(s)); w->n += strlen(s); }

static int get16(const unsigned char *p) { return (int16_t)((p[0] << 8) | p[1]); }
static int32_t get32(const unsigned char *p) { return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]); }
static int64_t get64(const unsigned char *p) { return (int64_t)(((uint64_t)(uint32_t)get32(p) << 32) | (uint32_t)get32(p + 4)); }

/* Request header v1 (api key, version, correlation id, client id) then the body; returns 0 on send. */
static int send_request(int fd, int key, int version, int32_t corr, const wbuf *body) {
    wbuf w = {{0}, 4};
    put16(&w, key); put16(&w, version); put32(&w, corr); putstr(&w, "test_server");
    memcpy(w.b + w.n, body->b, body->n); w.n += body->n;
    uint32_t size = (uint32_t)(w.n - 4);
    w.b[0] = (unsigned char)(size >> 24); w.b[1] = (unsigned char)(size >> 16); w.b[2] = (unsigned char)(size >> 8); w.b[3] = (unsigned char)size;
    return write(fd, w.b, w.n) == (ssize_t)w.n ? 0 : -1;
}

static int read_full(int fd, unsigned char *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Reads one response: *len bytes after the size prefix (correlation id first). */
static int read_response(int fd, unsigned char *out, size_t cap, size_t *len) {
    unsigned char sz[4];
    if (read_full(fd, sz, 4) != 0) return -1;
    int32_t n = get32(sz);
    if (n < 4 || (size_t)n > cap) return -1;
    *len = (size_t)n;
    return read_full(fd, out, (size_t)n);
}

static void api_versions_are_answered_and_an_unsupported_version_gets_error_35(int port) {
    int fd = connect_to(port);
    if (!CHECK(fd >= 0)) return;
    wbuf empty = {{0}, 0};
    unsigned char r[4096];
    size_t n = 0;
    CHECK_EQ(0, send_request(fd, 18, 0, 7, &empty));
    if (CHECK_EQ(0, read_response(fd, r, sizeof r, &n)) && CHECK(n >= 10)) {
        CHECK_EQ(7, get32(r));
        CHECK_EQ(0, get16(r + 4));
        int32_t count = get32(r + 6);
        CHECK(count >= 10 && (size_t)(10 + count * 6) <= n);
        int produce = 0, fetch = 0;
        for (int32_t i = 0; i < count && (size_t)(10 + i * 6 + 6) <= n; i++) {
            int key = get16(r + 10 + i * 6);
            produce |= key == 0;
            fetch |= key == 1;
        }
        CHECK(produce && fetch);
    }
    /* ApiVersions v99: Kafka answers error 35 in a v0 response listing its range. */
    CHECK_EQ(0, send_request(fd, 18, 99, 8, &empty));
    if (CHECK_EQ(0, read_response(fd, r, sizeof r, &n)) && CHECK(n >= 10)) {
        CHECK_EQ(8, get32(r));
        CHECK_EQ(35, get16(r + 4));
        CHECK(get32(r + 6) >= 10);
    }
    close(fd);
}

static void list_offsets_over_the_wire_sees_what_the_library_wrote(kofka_broker *b, int port) {
    kofka_producer *p = NULL;
    if (!CHECK_OK(kofka_producer_new(b, NULL, &p))) return;
    for (int i = 0; i < 3; i++) {
        kofka_record rec = {0};
        rec.partition = 0;
        rec.value = "v";
        rec.value_len = 1;
        CHECK_OK(kofka_send(p, "served", &rec));
    }
    CHECK_OK(kofka_producer_close(p, 2000));
    int fd = connect_to(port);
    if (!CHECK(fd >= 0)) return;
    wbuf body = {{0}, 0};
    put32(&body, -1);              /* replica id: a client */
    put32(&body, 1);               /* one topic */
    putstr(&body, "served");
    put32(&body, 1);               /* one partition */
    put32(&body, 0);
    put64(&body, -1);              /* latest */
    unsigned char r[4096];
    size_t n = 0;
    CHECK_EQ(0, send_request(fd, 2, 1, 9, &body));
    /* v1: corr, [topic: name, [partition, error, timestamp, offset]] */
    if (CHECK_EQ(0, read_response(fd, r, sizeof r, &n)) && CHECK(n >= 4 + 4 + 2 + 6 + 4 + 4 + 2 + 8 + 8)) {
        CHECK_EQ(9, get32(r));
        CHECK_EQ(1, get32(r + 4));
        CHECK_EQ(6, get16(r + 8));
        CHECK(memcmp(r + 10, "served", 6) == 0);
        CHECK_EQ(1, get32(r + 16));
        CHECK_EQ(0, get32(r + 20));
        CHECK_EQ(0, get16(r + 24));
        CHECK_EQ(3, get64(r + 34));
    }
    close(fd);
}

static void bad_arguments_get_codes_and_messages(kofka_broker *b, int used_port) {
    kofka_server *s = NULL;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_server_start(NULL, "127.0.0.1:0", NULL, &s));
    CHECK(strlen(kofka_last_error()) > 0);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_server_start((kofka_broker *)&used_port, "127.0.0.1:0", NULL, &s));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_server_start(b, "127.0.0.1:0", NULL, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_server_start(b, "127.0.0.1:notaport", NULL, &s));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_server_start(b, "127.0.0.1:99999", NULL, &s));
    char in_use[64];
    snprintf(in_use, sizeof in_use, "127.0.0.1:%d", used_port);
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_server_start(b, in_use, NULL, &s));
    CHECK_CONTAINS(kofka_last_error(), in_use);
    const char *unknown[] = {"no.such.key", "1", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_server_start(b, "127.0.0.1:0", unknown, &s));
    CHECK_CONTAINS(kofka_last_error(), "no.such.key");
    const char *bad_threads[] = {"server.worker.threads", "0", NULL};
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_server_start(b, "127.0.0.1:0", bad_threads, &s));
    CHECK(s == NULL);
    int port = -1;
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_server_port(NULL, &port));
    CHECK_EQ(-1, port);
    CHECK_OK(kofka_server_stop(NULL));
}

int main(void) {
    check_init();
    printf("test_server: kofka_server_start/port/stop over a raw Kafka wire connection\n");
    for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
        test_backend be;
        test_backend_setup(&be, i, "server");
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(be.storage, NULL, &b))) {
            CHECK_OK(kofka_topic_create(b, "served", 1));
            kofka_server *s = NULL;
            const char *cfg[] = {"server.worker.threads", "2", NULL};
            if (CHECK_OK(kofka_server_start(b, "127.0.0.1:0", cfg, &s))) {
                int port = 0;
                CHECK_OK(kofka_server_port(s, &port));
                CHECK(port > 0 && port < 65536);
                api_versions_are_answered_and_an_unsupported_version_gets_error_35(port);
                list_offsets_over_the_wire_sees_what_the_library_wrote(b, port);
                bad_arguments_get_codes_and_messages(b, port);
                CHECK_OK(kofka_server_stop(s));
                CHECK_ERR(KOFKA_ERR_CLOSED, kofka_server_stop(s));
                CHECK_ERR2(KOFKA_ERR_CLOSED, KOFKA_ERR_INVALID_ARG, kofka_server_port(s, &port));
                int fd = connect_to(port);
                CHECK(fd < 0);
                if (fd >= 0) close(fd);
                /* The broker stays open and usable after its server stopped. */
                CHECK_OK(kofka_topic_create(b, "after", 1));
            }
            CHECK_OK(kofka_broker_close(b));
            kofka_broker *closed = b;
            kofka_server *none = NULL;
            CHECK_ERR2(KOFKA_ERR_CLOSED, KOFKA_ERR_INVALID_ARG, kofka_server_start(closed, "127.0.0.1:0", NULL, &none));
            CHECK(none == NULL);
        }
        test_backend_teardown(&be);
    }
    return check_done();
}
