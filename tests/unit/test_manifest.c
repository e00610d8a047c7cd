// test_manifest.c — checkpoint manifests (runtime/manifest.c): the written MANIFEST checked
// byte by byte against XXH64 computed here in one shot, then every kind of damage on a fresh
// copy of a small checkpoint directory, each of which must be refused with the right reason:
// a byte flipped in each file (first, middle, last byte, and either side of the 1 MiB block
// boundary of the large file), a file truncated or emptied, deleted, a stray file (also a
// leftover MANIFEST.tmp), MANIFEST deleted, altered (a hash digit, a size digit, its own checksum
// line) or truncated (one byte, half, its last line, all of it), and a directory that does not
// exist. File names the format cannot hold must be refused by the writer.
//
// usage: test_manifest DIR
// Leaves DIR/good (intact) and DIR/bad (weights.h5 with one byte flipped at offset 1000) for the
// `tessera ckpt verify` tests in tests/cmake/manifest.cmake.
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime/manifest.h"

#include "tests/unit/expect.h"

// ---------------------------------------------------------------------------------------------
// the checkpoint: four files, one larger than the 1 MiB hashing block and not a multiple of it

typedef struct {
    const char *name;
    size_t size;
    uint32_t seed; // 0: text content
} test_file;

#define WEIGHTS_SIZE ((1u << 20) + 500000u + 17u)
static const test_file k_files[] = {
    {"config.toml", 0, 0},
    {"empty.bin", 0, 1},
    {"optim.h5", 100000, 7},
    {"weights.h5", WEIGHTS_SIZE, 2463534242u},
};
#define N_FILES 4
static const char k_config[] = "[model]\nlayers = 2\nheads = 2\nwidth = 64\n";

static unsigned char *file_content(const test_file *f, size_t *size) {
    if (f->seed == 0) {
        *size = sizeof k_config - 1;
        unsigned char *p = malloc(*size);
        memcpy(p, k_config, *size);
        return p;
    }
    *size = f->size;
    unsigned char *p = malloc(f->size ? f->size : 1);
    uint32_t x = f->seed;
    for (size_t i = 0; i < f->size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "test setup: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "test setup: cannot read %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    if (fread(p, 1, (size_t)len, f) != (size_t)len) exit(1);
    fclose(f);
    p[len] = 0;
    *n = (size_t)len;
    return p;
}

static void run(const char *cmd) {
    if (system(cmd) != 0) {
        fprintf(stderr, "test setup: '%s' failed\n", cmd);
        exit(1);
    }
}

static char g_root[4096];
static int g_case;

// a fresh checkpoint directory with its manifest written; returns its path (static buffer)
static const char *fresh_ckpt(const char *label) {
    static char dir[4200];
    snprintf(dir, sizeof dir, "%s/%02d-%s", g_root, ++g_case, label);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    run(cmd);
    for (int i = 0; i < N_FILES; i++) {
        size_t n;
        unsigned char *p = file_content(&k_files[i], &n);
        char path[4300];
        snprintf(path, sizeof path, "%s/%s", dir, k_files[i].name);
        write_bytes(path, p, n);
        free(p);
    }
    EXPECT(manifest_write(dir) == TS_OK, "manifest_write(%s)", dir);
    return dir;
}

static void path_in(char *out, size_t len, const char *dir, const char *name) {
    snprintf(out, len, "%s/%s", dir, name);
}

// verify must fail with TS_ERR_INPUT and a reason that starts with want_prefix
static void expect_refused(const char *dir, const char *want_prefix, const char *what) {
    char why[512] = "";
    ts_status st = manifest_verify(dir, why, sizeof why);
    EXPECT(st == TS_ERR_INPUT, "%s: status %d, want TS_ERR_INPUT (why '%s')", what, st, why);
    EXPECT(strncmp(why, want_prefix, strlen(want_prefix)) == 0, "%s: why '%s', want '%s...'", what,
           why, want_prefix);
    EXPECT(strchr(why, '\n') == NULL, "%s: why is not one line: '%s'", what, why);
}

// ---------------------------------------------------------------------------------------------
// the cases

static void test_written_manifest(void) {
    const char *dir = fresh_ckpt("written");
    char path[4300];
    path_in(path, sizeof path, dir, MANIFEST_NAME);
    size_t len;
    char *text = (char *)read_bytes(path, &len);

    // expected text, hashed here in one shot (the writer streams in 1 MiB blocks)
    char want[4096];
    int at = snprintf(want, sizeof want, "tessera-manifest 1\n");
    uint64_t total = 0;
    for (int i = 0; i < N_FILES; i++) {
        size_t n;
        unsigned char *p = file_content(&k_files[i], &n);
        at += snprintf(want + at, sizeof want - at, "file %s %zu %016" PRIx64 "\n", k_files[i].name,
                       n, (uint64_t)XXH64(p, n, 0));
        total += n;
        free(p);
    }
    at += snprintf(want + at, sizeof want - at, "manifest %016" PRIx64 "\n",
                   (uint64_t)XXH64(want, (size_t)at, 0));
    EXPECT(len == (size_t)at && memcmp(text, want, len) == 0, "MANIFEST is\n%s\nwant\n%s", text,
           want);
    free(text);

    char why[512] = "";
    manifest m;
    EXPECT(manifest_verify_into(dir, &m, why, sizeof why) == TS_OK, "fresh: %s", why);
    EXPECT(m.n_files == N_FILES && m.total_bytes == total, "%d files %" PRIu64 " bytes", m.n_files,
           m.total_bytes);
    manifest_free(&m);
    EXPECT(manifest_verify(dir, why, sizeof why) == TS_OK, "verify: %s", why);
    path_in(path, sizeof path, dir, MANIFEST_TMP_NAME);
    EXPECT(access(path, F_OK) != 0, "MANIFEST.tmp left behind");

    // writing again gives the same bytes (a stale MANIFEST.tmp is replaced, not listed)
    write_bytes(path, "partial", 7);
    EXPECT(manifest_write(dir) == TS_OK, "rewrite");
    char mpath[4300];
    path_in(mpath, sizeof mpath, dir, MANIFEST_NAME);
    text = (char *)read_bytes(mpath, &len);
    EXPECT(len == (size_t)at && memcmp(text, want, len) == 0, "rewritten MANIFEST differs");
    free(text);
    EXPECT(manifest_verify(dir, why, sizeof why) == TS_OK, "after rewrite: %s", why);
}

static void flip_byte(const char *path, size_t off) {
    FILE *f = fopen(path, "r+b");
    if (!f) exit(1);
    fseek(f, (long)off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)off, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
}

static void test_flipped_bytes(void) {
    for (int i = 0; i < N_FILES; i++) {
        size_t n;
        unsigned char *orig = file_content(&k_files[i], &n);
        if (n == 0) {
            free(orig);
            continue;
        }
        size_t offsets[] = {0, 1, n / 2, n - 1, (1u << 20) - 1, 1u << 20};
        int n_off = n > (1u << 20) ? 6 : 4;
        for (int k = 0; k < n_off; k++) {
            const char *dir = fresh_ckpt("flip");
            char path[4300];
            path_in(path, sizeof path, dir, k_files[i].name);
            flip_byte(path, offsets[k]);
            orig[offsets[k]] ^= 0x01;
            char want[256];
            snprintf(want, sizeof want, "%s: xxh64 %016" PRIx64 ", manifest says ", k_files[i].name,
                     (uint64_t)XXH64(orig, n, 0));
            orig[offsets[k]] ^= 0x01;
            char what[128];
            snprintf(what, sizeof what, "%s byte %zu flipped", k_files[i].name, offsets[k]);
            expect_refused(dir, want, what);
        }
        free(orig);
    }
}

static void test_truncated_deleted_extra(void) {
    char path[4300], why[512];
    const char *dir = fresh_ckpt("truncated");
    path_in(path, sizeof path, dir, "weights.h5");
    EXPECT(truncate(path, WEIGHTS_SIZE - 1) == 0, "truncate");
    char want[128];
    snprintf(want, sizeof want, "weights.h5: size %u bytes, manifest says %u", WEIGHTS_SIZE - 1,
             WEIGHTS_SIZE);
    expect_refused(dir, want, "weights.h5 one byte short");

    dir = fresh_ckpt("emptied");
    path_in(path, sizeof path, dir, "optim.h5");
    EXPECT(truncate(path, 0) == 0, "truncate");
    expect_refused(dir, "optim.h5: size 0 bytes, manifest says 100000", "optim.h5 emptied");

    dir = fresh_ckpt("grown");
    path_in(path, sizeof path, dir, "empty.bin");
    write_bytes(path, "x", 1);
    expect_refused(dir, "empty.bin: size 1 bytes, manifest says 0", "empty.bin grown");

    dir = fresh_ckpt("deleted");
    path_in(path, sizeof path, dir, "optim.h5");
    EXPECT(unlink(path) == 0, "unlink");
    expect_refused(dir, "optim.h5: missing", "optim.h5 deleted");

    dir = fresh_ckpt("extra");
    path_in(path, sizeof path, dir, "zz-stray.h5");
    write_bytes(path, "x", 1);
    expect_refused(dir, "zz-stray.h5: not listed in MANIFEST", "stray file");

    dir = fresh_ckpt("extra-tmp");
    path_in(path, sizeof path, dir, MANIFEST_TMP_NAME);
    write_bytes(path, "", 0);
    expect_refused(dir, "MANIFEST.tmp: not listed in MANIFEST", "leftover MANIFEST.tmp");

    // a subdirectory is not a file of the checkpoint and is ignored
    dir = fresh_ckpt("subdir");
    path_in(path, sizeof path, dir, "sub");
    EXPECT(mkdir(path, 0755) == 0, "mkdir");
    EXPECT(manifest_verify(dir, why, sizeof why) == TS_OK, "subdir: %s", why);
}

// overwrite the byte at off in dir/MANIFEST with c (which must differ from what is there)
static void set_manifest_byte(const char *dir, size_t off, char c) {
    char path[4300];
    path_in(path, sizeof path, dir, MANIFEST_NAME);
    size_t n;
    char *text = (char *)read_bytes(path, &n);
    if (off >= n || text[off] == c) exit(1);
    text[off] = c;
    write_bytes(path, text, n);
    free(text);
}

static size_t manifest_size(const char *dir, char **text) {
    char path[4300];
    path_in(path, sizeof path, dir, MANIFEST_NAME);
    size_t n;
    *text = (char *)read_bytes(path, &n);
    return n;
}

static void test_manifest_damage(void) {
    char path[4300], *text;
    const char *dir = fresh_ckpt("manifest-deleted");
    path_in(path, sizeof path, dir, MANIFEST_NAME);
    EXPECT(unlink(path) == 0, "unlink");
    expect_refused(dir, "MANIFEST: missing", "MANIFEST deleted");

    // a hash digit of the weights.h5 line, a size digit of the optim.h5 line, the own checksum
    const char *alter[][2] = {
        {"file weights.h5 ", "hash"}, {"file optim.h5 ", "size"}, {"manifest ", "checksum"}};
    for (int k = 0; k < 3; k++) {
        dir = fresh_ckpt("manifest-altered");
        manifest_size(dir, &text);
        char *line = strstr(text, alter[k][0]);
        EXPECT(line != NULL, "no line '%s'", alter[k][0]);
        if (!line) continue;
        char *nl = strchr(line, '\n');
        size_t off = strcmp(alter[k][1], "size") == 0 ? (size_t)(line - text) + strlen(alter[k][0])
                                                      : (size_t)(nl - text) - 1; // last hex digit
        char c = text[off] == '1' ? '2' : '1';
        free(text);
        set_manifest_byte(dir, off, c);
        char what[64];
        snprintf(what, sizeof what, "MANIFEST %s digit changed", alter[k][1]);
        expect_refused(dir, "MANIFEST: its checksum does not match (altered)", what);
    }

    // truncations: one byte short, half, without its last line, empty
    for (int k = 0; k < 4; k++) {
        dir = fresh_ckpt("manifest-truncated");
        size_t n = manifest_size(dir, &text);
        size_t keep = k == 0 ? n - 1 : k == 1 ? n / 2 : k == 2 ? n - 26 : 0;
        if (k == 2) EXPECT(text[keep - 1] == '\n', "line boundary");
        free(text);
        path_in(path, sizeof path, dir, MANIFEST_NAME);
        EXPECT(truncate(path, (off_t)keep) == 0, "truncate");
        char what[64];
        snprintf(what, sizeof what, "MANIFEST truncated to %zu of %zu bytes", keep, n);
        expect_refused(dir,
                       k == 3 ? "MANIFEST: empty (truncated)"
                              : "MANIFEST: last line is not its checksum (truncated?)",
                       what);
    }
}

static void test_unreadable_and_bad_names(void) {
    char path[4300], why[512] = "";
    snprintf(path, sizeof path, "%s/does-not-exist", g_root);
    EXPECT(manifest_verify(path, why, sizeof why) == TS_ERR_SYSTEM, "missing dir: '%s'", why);
    EXPECT(strstr(why, "does-not-exist: cannot read directory") != NULL, "why '%s'", why);

    const char *bad_names[] = {"with space.h5", "with\nnewline.h5", "tab\t.h5"};
    for (int k = 0; k < 3; k++) {
        const char *dir = fresh_ckpt("bad-name");
        path_in(path, sizeof path, dir, MANIFEST_NAME);
        unlink(path);
        char bad[4400];
        path_in(bad, sizeof bad, dir, bad_names[k]);
        write_bytes(bad, "x", 1);
        EXPECT(manifest_write(dir) == TS_ERR_INPUT, "name %d accepted", k);
        EXPECT(access(path, F_OK) != 0, "MANIFEST written despite name %d", k);
    }
}

// ---------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_manifest DIR\n");
        return 2;
    }
    snprintf(g_root, sizeof g_root, "%s/cases", argv[1]);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_root, g_root);
    run(cmd);
    log_set_level(LOG_ERROR);

    test_written_manifest();
    test_flipped_bytes();
    test_truncated_deleted_extra();
    test_manifest_damage();
    test_unreadable_and_bad_names();

    // fixtures for the CLI tests
    const char *dir = fresh_ckpt("good");
    snprintf(cmd, sizeof cmd, "rm -rf '%s/good' && cp -r '%s' '%s/good'", argv[1], dir, argv[1]);
    run(cmd);
    dir = fresh_ckpt("bad");
    char path[4300];
    path_in(path, sizeof path, dir, "weights.h5");
    flip_byte(path, 1000);
    snprintf(cmd, sizeof cmd, "rm -rf '%s/bad' && cp -r '%s' '%s/bad'", argv[1], dir, argv[1]);
    run(cmd);

    printf("test_manifest: %d cases, %d failures\n", g_case, g_failures);
    return g_failures ? 1 : 0;
}
