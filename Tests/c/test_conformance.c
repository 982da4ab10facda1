/*
 * test_conformance.c — kofka_storage_conformance: Kofka's storage conformance suite run from C
 * against memory:, sqlite: and the LMDB plugin (lmdb:, when it is built): every check passes
 * and reports one PASS line; a filter runs only the checks it names; bad arguments get codes.
 */
#include "check.h"

typedef struct report { int lines, pass, fail, skip; char first[256]; } report;

static void on_line(void *opaque, const char *line) {
    report *r = opaque;
    if (r->lines++ == 0) snprintf(r->first, sizeof r->first, "%s", line);
    if (strncmp(line, "PASS  ", 6) == 0) r->pass++;
    else if (strncmp(line, "FAIL  ", 6) == 0) { r->fail++; printf("    %s\n", line); }
    else if (strncmp(line, "SKIP  ", 6) == 0) r->skip++;
    else printf("    %s\n", line);
}

static void every_check_passes_on(const char *storage, int expect_skips) {
    printf("  %s\n", storage);
    report r;
    memset(&r, 0, sizeof r);
    int failed = -1;
    if (!CHECK_OK(kofka_storage_conformance(storage, NULL, NULL, on_line, &r, &failed))) return;
    CHECK_EQ(0, failed);
    CHECK_EQ(0, r.fail);
    CHECK(r.pass >= 18 - expect_skips);
    if (!expect_skips) CHECK_EQ(0, r.skip);
    CHECK_EQ(r.pass + r.skip, r.lines);
}

int main(void) {
    check_init();
    printf("test_conformance: kofka_storage_conformance from C\n");
    every_check_passes_on("memory:", 4);
    char storage[128];
    snprintf(storage, sizeof storage, "sqlite:/tmp/kofka-cconf-%d", (int)getpid());
    every_check_passes_on(storage, 0);
    kofka_broker *probe = NULL;
    snprintf(storage, sizeof storage, "lmdb:/tmp/kofka-cconf-lmdb-%d", (int)getpid());
    if (kofka_broker_open(storage, NULL, &probe) == KOFKA_OK) {
        kofka_broker_close(probe);
        char dir[128];
        snprintf(dir, sizeof dir, "rm -rf /tmp/kofka-cconf-lmdb-%d", (int)getpid());
        if (system(dir) != 0) printf("    (could not remove the probe store)\n");
        every_check_passes_on(storage, 0);
    } else {
        printf("  lmdb: not available here (%s)\n", kofka_last_error());
    }

    report r;
    memset(&r, 0, sizeof r);
    int failed = -1;
    CHECK_OK(kofka_storage_conformance("memory:", NULL, "offsetsAreDense", on_line, &r, &failed));
    CHECK_EQ(1, r.lines);
    CHECK_EQ(0, failed);
    CHECK(strncmp(r.first, "PASS  offsetsAreDenseFromZero", 29) == 0);
    CHECK_OK(kofka_storage_conformance("memory:", NULL, "offsetsAreDense", NULL, NULL, NULL));

    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_storage_conformance(NULL, NULL, NULL, NULL, NULL, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_storage_conformance("no-colon", NULL, NULL, NULL, NULL, NULL));
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_storage_conformance("memory:", NULL, "no-such-check", NULL, NULL, NULL));
    CHECK_CONTAINS(kofka_last_error(), "no-such-check");
    CHECK_ERR(KOFKA_ERR_INVALID_ARG, kofka_storage_conformance("nosuchscheme:/tmp/x", NULL, NULL, NULL, NULL, NULL));
    CHECK_CONTAINS(kofka_last_error(), "nosuchscheme");
    const char *bad[] = {"no.such.key", "1", NULL};
    snprintf(storage, sizeof storage, "sqlite:/tmp/kofka-cconf-bad-%d", (int)getpid());
    CHECK_ERR(KOFKA_ERR_INVALID_CONFIG, kofka_storage_conformance(storage, bad, NULL, NULL, NULL, NULL));
    return check_done();
}
