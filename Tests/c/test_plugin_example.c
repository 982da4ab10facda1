/*
 * test_plugin_example.c — the README's plugin example (bindings/c/examples/plugin/count_plugin.c)
 * is a complete plugin: compiled against kofka.h alone (a folder holding only the header, as
 * an installation has it) with `cc -shared -fPIC`, not linked with libkofka, it loads from
 * plugin.library.paths and sees every send, acknowledgement, consume, commit and close, on
 * both backends.
 *
 * Also: a plugin built against an older, shorter kofka_interceptors (it ends before on_consume;
 * Tests/c/plugins/old_struct_plugin.c) keeps working, through kofka_interceptors_register and
 * kofka_interceptors_add, with its struct ending where an unreadable page begins: Kofka reads
 * no byte past struct_size. And the README shows the example file as it is.
 */
#include "check.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#define TOPIC "events"
#define EACH 10   /* records sent each way: kofka_send, kofka_send_batch, kofka_produce */

static char root[PATH_MAX];
static char tmp[64];
static char count_plugin[PATH_MAX];
static char old_plugin[PATH_MAX];

/* ---- an independent observer, to compare commit counts with ------------------------- */

static atomic_long observed_commits;

static void observe_commit(void *o, const char *g, const char *t, int32_t p, int64_t off, kofka_err e) {
    (void)o, (void)g, (void)t, (void)p, (void)off, (void)e;
    observed_commits++;
}

/* ---- finding things ----------------------------------------------------------------- */

static int is_root(const char *dir) {
    char p[PATH_MAX + 64];
    struct stat st;
    snprintf(p, sizeof p, "%s/bindings/c/examples/plugin/count_plugin.c", dir);
    return stat(p, &st) == 0;
}

/** The project folder: $KOFKA_ROOT, else three folders above this program
 *  (Tests/c/build/NAME), else three above the working folder (run.sh runs tests there). */
static int find_root(void) {
    const char *env = getenv("KOFKA_ROOT");
    if (env && is_root(env)) { snprintf(root, sizeof root, "%s", env); return 1; }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 16);
    if (n > 0) {
        exe[n] = '\0';
        strcat(exe, "/../../../..");
        if (realpath(exe, root) && is_root(root)) return 1;
    }
    return realpath("../../..", root) && is_root(root);
}

static int run_cmd(const char *cmd) {
    int rc = system(cmd);
    if (rc != 0) printf("  command failed (%d): %s\n", rc, cmd);
    return rc == 0;
}

/** Builds a plugin from src against tmp/include (kofka.h alone), with no -lkofka. */
static int build_plugin(const char *src, const char *out) {
    const char *cc = getenv("CC") ? getenv("CC") : "cc";
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof cmd, "%s -std=c11 -Wall -Wextra -Werror -shared -fPIC -I %s/include %s -o %s", cc, tmp, src, out);
    return run_cmd(cmd);
}

/** Whether the command's output contains needle. */
static int output_contains(const char *cmd, const char *needle) {
    FILE *f = popen(cmd, "r");
    if (!f) return 0;
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) if (strstr(line, needle)) found = 1;
    pclose(f);
    return found;
}

static void *symbol(const char *lib, const char *name) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);   /* the copy Kofka loaded */
    return h ? dlsym(h, name) : NULL;
}

/* ---- one backend ---------------------------------------------------------------------- */

static void run(const test_backend *be) {
    char paths[2 * PATH_MAX + 2];
    snprintf(paths, sizeof paths, "%s;%s", count_plugin, old_plugin);
    const char *config[] = {"plugin.library.paths", paths, NULL};
    kofka_broker *b = NULL;
    if (!CHECK_OK(kofka_broker_open(be->storage, config, &b))) return;

    atomic_long *seen = symbol(count_plugin, "count_plugin_seen");
    atomic_long *old_seen = symbol(old_plugin, "old_struct_seen");
    void **old_opaque = symbol(old_plugin, "old_struct_opaque_seen");
    void *(*old_struct_at_page_end)(void) = (void *(*)(void))symbol(old_plugin, "old_struct_at_page_end");
    if (!CHECK(seen && old_seen && old_opaque && old_struct_at_page_end)) { kofka_broker_close(b); return; }
    long before[5], old_before[2];
    for (int i = 0; i < 5; i++) before[i] = seen[i];
    for (int i = 0; i < 2; i++) old_before[i] = old_seen[i];

    /* an older struct added directly to the broker, also ending at an unreadable page */
    void *direct = old_struct_at_page_end();
    CHECK(direct != NULL);
    CHECK_OK(kofka_interceptors_add(b, "old-direct", direct));
    kofka_interceptors observer = {.struct_size = sizeof observer, .on_commit = observe_commit};
    CHECK_OK(kofka_interceptors_add(b, "observer", &observer));
    long commits_before = observed_commits;

    CHECK_OK(kofka_topic_create(b, TOPIC, 2));
    kofka_producer *p = NULL;
    CHECK_OK(kofka_producer_new(b, NULL, &p));
    kofka_record batch[EACH];
    for (int i = 0; i < EACH; i++) {
        kofka_record r = test_record("k", 1, "sent", 4);
        CHECK_OK(kofka_send(p, TOPIC, &r));
        batch[i] = test_record("k", 1, "batched", 7);
    }
    CHECK_OK(kofka_send_batch(p, TOPIC, batch, EACH));
    for (int i = 0; i < EACH; i++) {
        kofka_record r = test_record(NULL, 0, "produced", 8);
        CHECK_OK(kofka_produce(p, TOPIC, &r, NULL));
    }
    CHECK_OK(kofka_producer_close(p, 10000));

    const char *cc[] = {"group.id", "example", NULL};
    kofka_consumer *c = NULL;
    CHECK_OK(kofka_consumer_new(b, cc, &c));
    const char *topics[] = {TOPIC};
    CHECK_OK(kofka_subscribe(c, topics, 1));
    int consumed = 0;
    int64_t deadline = test_now_ms() + 10000;
    while (consumed < 3 * EACH && test_now_ms() < deadline) {
        kofka_message *m = NULL;
        if (kofka_poll(c, 100, &m) == KOFKA_OK && m) { consumed++; kofka_message_free(m); }
    }
    CHECK_EQ(3 * EACH, consumed);
    CHECK_OK(kofka_commit(c));
    CHECK_OK(kofka_consumer_close(c));
    CHECK_OK(kofka_broker_close(b));

    CHECK_EQ(3 * EACH, seen[0] - before[0]);   /* sent */
    CHECK_EQ(3 * EACH, seen[1] - before[1]);   /* acknowledged */
    CHECK_EQ(3 * EACH, seen[2] - before[2]);   /* consumed */
    CHECK(seen[3] - before[3] >= 2);           /* at least one commit per partition */
    CHECK_EQ(observed_commits - commits_before, seen[3] - before[3]);
    CHECK_EQ(1, seen[4] - before[4]);          /* closed */
    /* the older struct (registered by its plugin, and added directly): sends and acks, twice */
    CHECK_EQ(2 * 3 * EACH, old_seen[0] - old_before[0]);
    CHECK_EQ(2 * 3 * EACH, old_seen[1] - old_before[1]);
    CHECK(*old_opaque != NULL);                /* the opaque it set was passed back */
}

/* ---- the README shows the example as it is ---------------------------------------------- */

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    if (buf) buf[n] = '\0';
    fclose(f);
    return buf;
}

static void readme_shows_the_example(void) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/README.md", root);
    char *readme = read_all(p);
    snprintf(p, sizeof p, "%s/bindings/c/examples/plugin/count_plugin.c", root);
    char *example = read_all(p);
    CHECK(readme && example);
    if (readme && example) {
        if (!CHECK(strstr(readme, example) != NULL)) printf("  README.md does not show %s as it is\n", p);
        CHECK(strlen(example) > 0);
        int lines = 0;
        for (const char *c = example; *c; c++) lines += *c == '\n';
        CHECK(lines <= 45);   /* the "40-line plugin" */
    }
    free(readme);
    free(example);
}

int main(void) {
    check_init();
    if (!CHECK(find_root())) { printf("  cannot find the project folder (set KOFKA_ROOT)\n"); return check_done(); }
    snprintf(tmp, sizeof tmp, "/tmp/kofka-ctest-plugin-XXXXXX");
    if (!CHECK(mkdtemp(tmp) != NULL)) return check_done();

    /* an "installation" holding nothing but the header */
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/include && cp %s/include/kofka.h %s/include/", tmp, root, tmp);
    CHECK(run_cmd(cmd));
    snprintf(count_plugin, sizeof count_plugin, "%s/libcount_plugin.so", tmp);
    snprintf(old_plugin, sizeof old_plugin, "%s/libold_struct_plugin.so", tmp);
    char src[PATH_MAX + 64];
    snprintf(src, sizeof src, "%s/bindings/c/examples/plugin/count_plugin.c", root);
    int built = CHECK(build_plugin(src, count_plugin));
    snprintf(src, sizeof src, "%s/Tests/c/plugins/old_struct_plugin.c", root);
    built &= CHECK(build_plugin(src, old_plugin));

    if (built) {
        /* not linked with libkofka: its kofka_* calls are left to the program that loads it */
        snprintf(cmd, sizeof cmd, "readelf -d %s 2>/dev/null", count_plugin);
        CHECK(!output_contains(cmd, "libkofka"));
        snprintf(cmd, sizeof cmd, "nm -D --undefined-only %s 2>/dev/null", count_plugin);
        CHECK(output_contains(cmd, "kofka_interceptors_register"));
        for (int i = 0; i < TEST_BACKEND_COUNT; i++) {
            test_backend be;
            test_backend_setup(&be, i, "plugin");
            run(&be);
            test_backend_teardown(&be);
        }
    }
    readme_shows_the_example();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    run_cmd(cmd);
    return check_done();
}
