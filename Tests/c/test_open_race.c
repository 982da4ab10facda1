/*
 * test_open_race.c — many processes opening one new SQLite file at the same moment.
 *
 * 12 children are forked, wait on a pipe so they start together, and each opens
 * "sqlite:PATH" for a file that does not exist yet, creates a topic (or finds it
 * created by another), sends one record and closes. Repeated for several fresh
 * files. Proven:
 *  - every open succeeds (no "database is locked" because another opener was
 *    switching the file to WAL, no "not a Kofka database" from a half-created file);
 *  - every child's send lands: the topic holds exactly one record per child.
 */
#include "check.h"
#include <sys/wait.h>

#define CHILDREN 12
#define ROUNDS 4

static int child(const char *storage, int go_fd) {
    char c;
    if (read(go_fd, &c, 1) != 1) return 9;
    kofka_broker *b = NULL;
    kofka_err e = kofka_broker_open(storage, NULL, &b);
    if (e != KOFKA_OK) {
        fprintf(stderr, "child %d: open: %s: %s\n", (int)getpid(), kofka_err_name(e), kofka_last_error());
        return 2;
    }
    e = kofka_topic_create(b, "race", 1);
    if (e != KOFKA_OK && e != KOFKA_ERR_TOPIC_EXISTS) {
        fprintf(stderr, "child: create: %s: %s\n", kofka_err_name(e), kofka_last_error());
        kofka_broker_close(b);
        return 3;
    }
    kofka_producer *p = NULL;
    int rc = 0;
    if (kofka_producer_new(b, NULL, &p) != KOFKA_OK) rc = 4;
    kofka_record r = test_record(NULL, 0, "x", 1);
    if (!rc && kofka_send(p, "race", &r) != KOFKA_OK) {
        fprintf(stderr, "child: send: %s\n", kofka_last_error());
        rc = 5;
    }
    kofka_producer_close(p, 5000);
    kofka_broker_close(b);
    return rc;
}

int main(void) {
    check_init();
    printf("test_open_race: %d processes open one new SQLite file at once, %d times\n", CHILDREN, ROUNDS);
    for (int round = 0; round < ROUNDS; round++) {
        char path[128], storage[160];
        snprintf(path, sizeof path, "/tmp/kofka-open-race-%d-%d.db", (int)getpid(), round);
        test_remove_db(path);
        snprintf(storage, sizeof storage, "sqlite:%s", path);
        int go[2];
        if (pipe(go) != 0) { perror("pipe"); return 1; }
        pid_t kids[CHILDREN];
        for (int i = 0; i < CHILDREN; i++) {
            kids[i] = fork();
            if (kids[i] == 0) {
                close(go[1]);
                _exit(child(storage, go[0]));
            }
        }
        close(go[0]);
        char start[CHILDREN];
        memset(start, 'g', sizeof start);
        ssize_t w = write(go[1], start, sizeof start);   /* release them together */
        (void)w;
        close(go[1]);
        int ok = 0;
        for (int i = 0; i < CHILDREN; i++) {
            int status = 0;
            waitpid(kids[i], &status, 0);
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
        }
        check_context = storage;
        CHECK_EQ(CHILDREN, ok);
        kofka_broker *b = NULL;
        if (CHECK_OK(kofka_broker_open(storage, NULL, &b))) {
            int64_t low = -1, high = -1;
            CHECK_OK(kofka_watermarks(b, "race", 0, &low, &high));
            CHECK_EQ(CHILDREN, high);
            kofka_broker_close(b);
        }
        test_remove_db(path);
    }
    return check_done();
}
