// test_base.c — base/: the durable write and its failures (the old file stays whole), directory
// commits, mkdir -p's error classes, deletion that never follows a link, opening that refuses
// FIFOs, the environment-knob table, and the status file every way of dying leaves behind.
//
// usage: test_base WORK_DIR   (created if missing; its contents are replaced)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/common.h"
#include "base/env.h"
#include "base/fs.h"
#include "base/status_file.h"
#include "tests/unit/expect.h"

static char g_dir[4096];

static const char *path_in(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
    return buf;
}

// the whole content of a file, NUL-terminated ("" when missing)
static char *slurp(const char *path) {
    static char buf[8192];
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return buf;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

static int exists(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

// ---------------------------------------------------------------------------------------------
// the durable write

static ts_status produce_fail(int fd, const char *tmp, void *ctx) {
    (void)ctx;
    TS_CHECK(fs_write_all(fd, "half of the new", 15, tmp));
    log_error("%s: the producer failed half-way (on purpose)", tmp);
    return TS_ERR_SYSTEM;
}

static void test_atomic_write(void) {
    char path[4200], tmp[4300];
    path_in(path, sizeof path, "file.txt");
    EXPECT(fs_atomic_write(path, NULL, "old content\n", 12) == TS_OK, "first write");
    EXPECT(strcmp(slurp(path), "old content\n") == 0, "content after the first write: %s",
           slurp(path));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    EXPECT(!exists(tmp), "the temporary file is gone after a write");

    // a producer that fails: the old file is intact, the temporary removed
    EXPECT(fs_atomic_write_with(path, NULL, produce_fail, NULL) == TS_ERR_SYSTEM,
           "a failing producer fails the write");
    EXPECT(strcmp(slurp(path), "old content\n") == 0, "old file intact after a failed write: %s",
           slurp(path));
    EXPECT(!exists(tmp), "no temporary left by a failed write");

    // a write that the file-size limit cuts short (a full disk, as the kernel reports it)
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit lim = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &lim);
        static char big[65536];
        memset(big, 'x', sizeof big);
        _exit(fs_atomic_write(path, NULL, big, sizeof big) == TS_ERR_SYSTEM ? 0 : 1);
    }
    int ws = 0;
    waitpid(pid, &ws, 0);
    EXPECT(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "a write past the size limit fails cleanly");
    EXPECT(strcmp(slurp(path), "old content\n") == 0, "old file intact after a short write: %s",
           slurp(path));
    EXPECT(!exists(tmp), "no temporary left by a short write");

    // an explicit temporary name; a directory that does not exist
    snprintf(tmp, sizeof tmp, "%s.tmp.42", path);
    EXPECT(fs_atomic_write(path, tmp, "new\n", 4) == TS_OK, "write through a named temporary");
    EXPECT(strcmp(slurp(path), "new\n") == 0, "replaced: %s", slurp(path));
    EXPECT(!exists(tmp), "named temporary gone");
    char missing[4200];
    path_in(missing, sizeof missing, "no/such/dir/file");
    EXPECT(fs_atomic_write(missing, NULL, "x", 1) == TS_ERR_SYSTEM, "write into a missing dir");

    // fs_write_new_file never replaces
    EXPECT(fs_write_new_file(path, "y", 1) == TS_ERR_SYSTEM, "write_new_file over a file fails");
    EXPECT(strcmp(slurp(path), "new\n") == 0, "and leaves it: %s", slurp(path));

    // fs_commit_file: a file produced elsewhere
    snprintf(tmp, sizeof tmp, "%s.produced", path);
    put(tmp, "produced\n");
    EXPECT(fs_commit_file(tmp, path) == TS_OK, "commit a produced file");
    EXPECT(strcmp(slurp(path), "produced\n") == 0, "committed: %s", slurp(path));
    EXPECT(!exists(tmp), "produced file renamed");
}

// ---------------------------------------------------------------------------------------------
// directories

static void test_commit_dir(void) {
    char final[4200], tmp[4200], file[4300], old[4300];
    path_in(final, sizeof final, "step-1");
    path_in(tmp, sizeof tmp, "step-1.tmp");
    snprintf(old, sizeof old, "%s.old", final);
    EXPECT(mkdir(tmp, 0755) == 0, "mkdir %s", tmp);
    snprintf(file, sizeof file, "%s/a", tmp);
    put(file, "first\n");
    EXPECT(fs_commit_dir(tmp, final) == TS_OK, "commit a new directory");
    snprintf(file, sizeof file, "%s/a", final);
    EXPECT(strcmp(slurp(file), "first\n") == 0, "committed content: %s", slurp(file));
    EXPECT(!exists(tmp), "tmp renamed");

    // replacing: the old one steps aside and goes
    EXPECT(mkdir(tmp, 0755) == 0, "mkdir %s", tmp);
    snprintf(file, sizeof file, "%s/b", tmp);
    put(file, "second\n");
    EXPECT(fs_commit_dir(tmp, final) == TS_OK, "replace a directory");
    snprintf(file, sizeof file, "%s/b", final);
    EXPECT(strcmp(slurp(file), "second\n") == 0, "replaced content: %s", slurp(file));
    snprintf(file, sizeof file, "%s/a", final);
    EXPECT(!exists(file), "nothing of the old directory is left in the new one");
    EXPECT(!exists(old), "the old directory is removed");

    // a tmp that does not exist: final untouched
    EXPECT(fs_commit_dir(tmp, final) != TS_OK, "commit of a missing tmp fails");
    snprintf(file, sizeof file, "%s/b", final);
    EXPECT(strcmp(slurp(file), "second\n") == 0, "final intact after a failed commit");
}

static void test_mkdir_p(void) {
    char path[4200];
    path_in(path, sizeof path, "a/b/c");
    EXPECT(fs_mkdir_p(path, "test") == TS_OK, "mkdir -p %s", path);
    EXPECT(fs_mkdir_p(path, "test") == TS_OK, "mkdir -p of an existing directory");
    char file[4200];
    path_in(file, sizeof file, "a/plain");
    put(file, "x");
    path_in(path, sizeof path, "a/plain/sub");
    EXPECT(fs_mkdir_p(path, "test") == TS_ERR_INPUT, "a file in the way is bad input");
    EXPECT(fs_mkdir_p(file, "test") == TS_ERR_INPUT, "a file at the path is bad input");
}

static void test_remove_tree(void) {
    // a victim outside the tree, linked from inside it: never touched
    char victim[4200], vfile[4300], tree[4200], p[4400];
    path_in(victim, sizeof victim, "victim");
    mkdir(victim, 0755);
    snprintf(vfile, sizeof vfile, "%s/precious", victim);
    put(vfile, "keep me\n");
    path_in(tree, sizeof tree, "tree");
    mkdir(tree, 0755);
    snprintf(p, sizeof p, "%s/sub", tree);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/sub/f", tree);
    put(p, "x");
    snprintf(p, sizeof p, "%s/link-to-dir", tree);
    EXPECT(symlink(victim, p) == 0, "symlink");
    snprintf(p, sizeof p, "%s/sub/link-to-file", tree);
    EXPECT(symlink(vfile, p) == 0, "symlink");
    EXPECT(fs_remove_tree(tree) == TS_OK, "remove a tree with links in it");
    EXPECT(!exists(tree), "tree gone");
    EXPECT(strcmp(slurp(vfile), "keep me\n") == 0, "the links' targets are untouched");

    // the path itself a link: the link goes, the target stays
    char link[4200];
    path_in(link, sizeof link, "link");
    EXPECT(symlink(victim, link) == 0, "symlink");
    EXPECT(fs_remove_tree(link) == TS_OK, "remove a link to a directory");
    EXPECT(!exists(link), "link gone");
    EXPECT(strcmp(slurp(vfile), "keep me\n") == 0, "target untouched");
    EXPECT(fs_remove_tree(link) == TS_OK, "removing what is not there is fine");
}

static void test_open_regular(void) {
    char fifo[4200], file[4200];
    path_in(fifo, sizeof fifo, "fifo");
    EXPECT(mkfifo(fifo, 0644) == 0, "mkfifo: %s", strerror(errno));
    int fd = 123;
    // without O_NONBLOCK this open would wait forever for a writer
    EXPECT(fs_open_regular(fifo, "test input", &fd) == TS_ERR_INPUT, "a FIFO is refused");
    EXPECT(fd == -1, "no descriptor for a refused file");
    EXPECT(fs_open_regular("/dev/zero", "test input", &fd) == TS_ERR_INPUT, "a device");
    EXPECT(fs_open_regular(g_dir, "test input", &fd) == TS_ERR_INPUT, "a directory");
    path_in(file, sizeof file, "regular");
    put(file, "abc");
    EXPECT(fs_open_regular(file, "test input", &fd) == TS_OK, "a regular file");
    char buf[4] = {0};
    EXPECT(fd >= 0 && read(fd, buf, 3) == 3 && strcmp(buf, "abc") == 0, "and it reads");
    if (fd >= 0) close(fd);
    EXPECT(fs_is_regular_nofollow(file) && !fs_is_regular_nofollow(fifo), "is_regular");
    // the quiet form tells "not a regular file" from "cannot open"
    EXPECT(fs_open_regular_fd(fifo) == FS_NOT_REGULAR, "quiet: a FIFO");
    EXPECT(fs_open_regular_fd("/dev/null") == FS_NOT_REGULAR, "quiet: a device");
    errno = 0;
    EXPECT(fs_open_regular_fd(g_dir) == FS_NOT_REGULAR, "quiet: a directory");
    char missing[4200];
    path_in(missing, sizeof missing, "missing");
    EXPECT(fs_open_regular_fd(missing) == -1 && errno == ENOENT, "quiet: missing");
    fd = fs_open_regular_fd(file);
    EXPECT(fd >= 0 && (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0, "quiet: a regular file, blocking");
    if (fd >= 0) close(fd);
}

// ---------------------------------------------------------------------------------------------
// the environment table

static void test_env(void) {
    int choice = -1;
    unsetenv("TESSERA_COMM");
    EXPECT(env_get_choice("TESSERA_COMM", &choice) == TS_OK && choice == 0, "unset: %d", choice);
    setenv("TESSERA_COMM", "mpi", 1);
    EXPECT(env_get_choice("TESSERA_COMM", &choice) == TS_OK && choice == 2, "mpi: %d", choice);
    setenv("TESSERA_COMM", "mp", 1);
    EXPECT(env_get_choice("TESSERA_COMM", &choice) == TS_ERR_INPUT, "a prefix is not a choice");
    setenv("TESSERA_COMM", "mpix", 1);
    EXPECT(env_get_choice("TESSERA_COMM", &choice) == TS_ERR_INPUT, "nor a longer word");
    unsetenv("TESSERA_COMM");
    setenv("TESSERA_ATTENTION", "simple", 1);
    EXPECT(env_get_choice("TESSERA_ATTENTION", &choice) == TS_OK && choice == 2, "simple: %d",
           choice);
    unsetenv("TESSERA_ATTENTION");
    long v = 0;
    setenv("PMIX_RANK", "12", 1);
    EXPECT(env_get_int("PMIX_RANK", -1, &v) == TS_OK && v == 12, "int: %ld", v);
    setenv("PMIX_RANK", "12x", 1);
    EXPECT(env_get_int("PMIX_RANK", -1, &v) == TS_ERR_INPUT, "not an int");
    unsetenv("PMIX_RANK");
    EXPECT(env_get_int("PMIX_RANK", -1, &v) == TS_OK && v == -1, "unset: fallback");
    for (int i = 0; i < env_n_knobs; i++)
        EXPECT(env_knobs[i].help && env_knobs[i].help[0], "%s has help", env_knobs[i].name);
}

// ---------------------------------------------------------------------------------------------
// every way of dying leaves the status file

typedef enum { DIE_FATAL_INPUT, DIE_FATAL_SYSTEM, DIE_PANIC, DIE_OOM, DIE_EXIT_OK } die_how;

static void die(die_how how) {
    switch (how) {
    case DIE_FATAL_INPUT: ts_fatal(TS_ERR_INPUT, "a bad input (on purpose)");
    case DIE_FATAL_SYSTEM: ts_fatal(TS_ERR_SYSTEM, "a failing disk (on purpose)");
    case DIE_PANIC: TS_ASSERT(1 == 2); break;
    case DIE_OOM: ts_malloc(SIZE_MAX / 2, "an impossible buffer"); break;
    case DIE_EXIT_OK: ts_exit(TS_OK);
    }
    _exit(99);
}

static void test_status_on_exit(void) {
    struct {
        die_how how;
        const char *reason;
        int code; // exit code, or -signal
    } cases[] = {
        {DIE_FATAL_INPUT, "bad_input", TS_EXIT_INPUT},
        {DIE_FATAL_SYSTEM, "system", TS_EXIT_SYSTEM},
        {DIE_PANIC, "internal", -SIGABRT},
        {DIE_OOM, "system", TS_EXIT_SYSTEM},
        {DIE_EXIT_OK, "finished", TS_EXIT_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char status[4200];
        snprintf(status, sizeof status, "%s/rank-3.status", g_dir);
        unlink(status);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            log_init(3, 4);
            log_set_quiet_errors(1);
            status_file_set_dir(g_dir);
            status_file_set_rank(3);
            status_file_set_host("hostA");
            status_file_set_step(17);
            die(cases[i].how);
        }
        int ws = 0;
        waitpid(pid, &ws, 0);
        int got = WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? -WTERMSIG(ws) : 999;
        EXPECT(got == cases[i].code, "case %zu: exit %d, expected %d", i, got, cases[i].code);
        const char *text = slurp(status);
        char want[256];
        snprintf(want, sizeof want, "reason %s\nstep 17\n", cases[i].reason);
        EXPECT(strncmp(text, want, strlen(want)) == 0, "case %zu: status file:\n%s", i, text);
        snprintf(want, sizeof want, "exit_code %d\nhost hostA\n",
                 cases[i].code < 0 ? TS_EXIT_INTERNAL : cases[i].code);
        EXPECT(strstr(text, want) != NULL, "case %zu: status file:\n%s", i, text);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_base WORK_DIR\n");
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
    fs_remove_tree(g_dir);
    if (fs_mkdir_p(g_dir, "test_base: WORK_DIR") != TS_OK) return 2;
    log_init(0, 1);
    test_atomic_write();
    test_commit_dir();
    test_mkdir_p();
    test_remove_tree();
    test_open_regular();
    test_env();
    test_status_on_exit();
    printf("%s: base tests, %d failure(s)\n", g_failures ? "FAIL" : "PASS", g_failures);
    return g_failures ? 1 : 0;
}
