// test_data.c — token shards and the data order: round trips in both shard formats, every
// rejected-shard message, the permutation, the sample order, the unigram entropy, and
// `tessera prepare` (called in-process; the real binary is exercised by tests/cmake/data.cmake).
//
// usage: test_data [WORK_DIR]   (a fresh temporary directory when omitted; removed at the end)
#define _GNU_SOURCE // nftw's FTW_DEPTH
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/commands.h"
#include "runtime/data.h"

#include "tests/unit/capture.h"
#include "tests/unit/expect.h"

static char g_dir[1024];

// ---------------------------------------------------------------------------------------------
// helpers: paths, raw shard files, log capture

static const char *path_in(const char *fmt, const char *name) {
    static char buf[4][2048];
    static int k;
    k = (k + 1) % 4;
    char rel[1024];
    snprintf(rel, sizeof rel, fmt, name);
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, rel);
    return buf[k];
}

static void make_dir(const char *sub) { mkdir(path_in("%s", sub), 0755); }

// A shard with an arbitrary header and payload: how the bad shards are made.
static void write_raw_shard(const char *path, int32_t magic, int32_t version, int32_t count,
                            const void *payload, size_t payload_bytes) {
    int32_t header[SHARD_HEADER_INTS] = {magic, version, count};
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(header, sizeof header, 1, f);
    if (payload_bytes) fwrite(payload, 1, payload_bytes, f);
    fclose(f);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    if (len) *len = got;
    return b;
}

// dataset_open must fail with TS_ERR_INPUT and exactly one error line holding every `want`
static void expect_open_error(const char *pattern, int T, int vocab, const char *const *want) {
    dataset ds;
    capture_begin();
    ts_status st = dataset_open(&ds, pattern, T, vocab);
    char *log = capture_end();
    EXPECT(st == TS_ERR_INPUT, "dataset_open(%s) returned %s", pattern, ts_status_name(st));
    EXPECT(count_substr(log, "error: ") == 1, "expected one error line, got:\n%s", log);
    for (int i = 0; want[i]; i++)
        EXPECT(strstr(log, want[i]), "'%s' missing from the error:\n%s", want[i], log);
    EXPECT(ds.n_shards == 0 && ds.shards == NULL, "a failed open leaves the dataset empty");
    free(log);
}

// ---------------------------------------------------------------------------------------------
// round trips

static void test_roundtrip(int vocab, int expect_bytes, int32_t expect_magic,
                           int32_t expect_version) {
    enum { N = 1000, T = 16 };
    uint32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (uint32_t)((i * 7919u + (uint32_t)i / 3u) % (uint32_t)vocab);
    tok[10] = (uint32_t)vocab - 1; // the largest token survives the format
    char name[64];
    snprintf(name, sizeof name, "rt_%d.bin", vocab);
    const char *path = path_in("%s", name);
    EXPECT(shard_write(path, tok, N, vocab) == TS_OK, "shard_write vocab %d", vocab);
    EXPECT(access(path_in("%s.tmp", name), F_OK) != 0, "no temporary file left behind");

    size_t len;
    char *raw = read_file(path, &len);
    int32_t hdr[3];
    memcpy(hdr, raw, sizeof hdr);
    EXPECT(len == 1024 + (size_t)N * (size_t)expect_bytes, "file size %zu", len);
    EXPECT(hdr[0] == expect_magic && hdr[1] == expect_version && hdr[2] == N, "header %d %d %d",
           hdr[0], hdr[1], hdr[2]);
    free(raw);

    dataset ds;
    EXPECT(dataset_open(&ds, path, T, vocab) == TS_OK, "open %s", path);
    if (ds.n_shards != 1) return;
    EXPECT(ds.shards[0].token_bytes == expect_bytes, "token bytes %d", ds.shards[0].token_bytes);
    EXPECT(ds.shards[0].n_tokens == N, "tokens %llu", (unsigned long long)ds.shards[0].n_tokens);
    EXPECT(ds.n_seq == (N - 1) / T, "n_seq %llu", (unsigned long long)ds.n_seq);
    int32_t out[T + 1];
    int bad = 0;
    for (uint64_t s = 0; s < ds.n_seq; s++) {
        EXPECT(dataset_sequence(&ds, s, out) == TS_OK, "sequence %llu", (unsigned long long)s);
        for (int t = 0; t <= T; t++)
            bad += out[t] != (int32_t)tok[s * T + (uint64_t)t];
    }
    EXPECT(bad == 0, "%d tokens differ after the round trip (vocab %d)", bad, vocab);
    dataset_close(&ds);
}

// ---------------------------------------------------------------------------------------------
// rejected shards: each case in its own folder, one error line naming file, offset and expectation

static void test_bad_shards(void) {
    uint16_t u16[100];
    for (int i = 0; i < 100; i++)
        u16[i] = (uint16_t)(i % 200);
    char pat[2048];

    make_dir("bad_magic");
    write_raw_shard(path_in("%s/a.bin", "bad_magic"), 12345, 1, 100, u16, sizeof u16);
    snprintf(pat, sizeof pat, "%s", path_in("%s/*.bin", "bad_magic"));
    expect_open_error(pat, 8, 256,
                      (const char *[]){path_in("%s/a.bin", "bad_magic"), "magic 12345",
                                       "byte offset 0", "expected 20240520", "20240801", NULL});

    make_dir("bad_version16");
    write_raw_shard(path_in("%s/a.bin", "bad_version16"), SHARD_MAGIC_U16, 7, 100, u16, sizeof u16);
    snprintf(pat, sizeof pat, "%s", path_in("%s/a.bin", "bad_version16"));
    expect_open_error(
        pat, 8, 256,
        (const char *[]){pat, "version 7 at byte offset 4", "expected 1", "magic 20240520", NULL});

    make_dir("bad_version32");
    uint32_t u32[50] = {0};
    write_raw_shard(path_in("%s/a.bin", "bad_version32"), SHARD_MAGIC_U32, 1, 50, u32, sizeof u32);
    snprintf(pat, sizeof pat, "%s", path_in("%s/a.bin", "bad_version32"));
    expect_open_error(
        pat, 8, 256,
        (const char *[]){pat, "version 1 at byte offset 4", "expected 7", "magic 20240801", NULL});

    // header says 100 tokens, the file holds 90 (truncated) or 110 (trailing bytes)
    make_dir("bad_size");
    write_raw_shard(path_in("%s/short.bin", "bad_size"), SHARD_MAGIC_U16, 1, 100, u16, 180);
    snprintf(pat, sizeof pat, "%s", path_in("%s/short.bin", "bad_size"));
    expect_open_error(pat, 8, 256,
                      (const char *[]){pat, "file is 1204 bytes", "expected 1224",
                                       "100 tokens x 2 bytes", "byte offset 8", NULL});
    uint16_t more[110] = {0};
    write_raw_shard(path_in("%s/long.bin", "bad_size"), SHARD_MAGIC_U16, 1, 100, more, sizeof more);
    snprintf(pat, sizeof pat, "%s", path_in("%s/long.bin", "bad_size"));
    expect_open_error(pat, 8, 256,
                      (const char *[]){pat, "file is 1244 bytes", "expected 1224", NULL});

    make_dir("bad_count");
    write_raw_shard(path_in("%s/a.bin", "bad_count"), SHARD_MAGIC_U16, 1, -5, NULL, 0);
    snprintf(pat, sizeof pat, "%s", path_in("%s/a.bin", "bad_count"));
    expect_open_error(pat, 8, 256, (const char *[]){pat, "token count -5 at byte offset 8", NULL});

    make_dir("bad_header");
    char junk[100] = "not a shard";
    write_bytes(path_in("%s/a.bin", "bad_header"), junk, sizeof junk);
    snprintf(pat, sizeof pat, "%s", path_in("%s/a.bin", "bad_header"));
    expect_open_error(pat, 8, 256,
                      (const char *[]){pat, "file is 100 bytes", "1024-byte shard header", NULL});

    // token 300 at index 37 (and a later one, 999): the first is reported, with its offset
    make_dir("bad_token16");
    uint16_t tk[100];
    memcpy(tk, u16, sizeof tk);
    tk[37] = 300;
    tk[50] = 999;
    write_raw_shard(path_in("%s/a.bin", "bad_token16"), SHARD_MAGIC_U16, 1, 100, tk, sizeof tk);
    snprintf(pat, sizeof pat, "%s", path_in("%s/a.bin", "bad_token16"));
    expect_open_error(pat, 8, 256,
                      (const char *[]){pat, "token 300 at byte offset 1098", "(token 37)",
                                       "expected < vocab 256", NULL});

    make_dir("bad_token32");
    uint32_t tk32[50];
    for (int i = 0; i < 50; i++)
        tk32[i] = 99999;
    tk32[5] = 100000;
    write_raw_shard(path_in("%s/a.bin", "bad_token32"), SHARD_MAGIC_U32, 7, 50, tk32, sizeof tk32);
    snprintf(pat, sizeof pat, "%s", path_in("%s/a.bin", "bad_token32"));
    expect_open_error(
        pat, 8, 100000,
        (const char *[]){pat, "token 100000 at byte offset 1044", "expected < vocab 100000", NULL});

    // a vocab of 50257 (GPT-2) rejects 50257 itself in a uint16 shard
    make_dir("bad_token_gpt2");
    uint16_t g[20] = {0};
    g[19] = 50257;
    write_raw_shard(path_in("%s/a.bin", "bad_token_gpt2"), SHARD_MAGIC_U16, 1, 20, g, sizeof g);
    snprintf(pat, sizeof pat, "%s", path_in("%s/a.bin", "bad_token_gpt2"));
    expect_open_error(pat, 8, 50257,
                      (const char *[]){"token 50257 at byte offset 1062", "vocab 50257", NULL});

    make_dir("no_match");
    snprintf(pat, sizeof pat, "%s", path_in("%s/train_*.bin", "no_match"));
    expect_open_error(pat, 8, 256, (const char *[]){pat, "no file matches", NULL});

    // 10 + 10 tokens: 20 in all, but no single shard holds T+1 = 17 (sequences never span shards)
    make_dir("too_short");
    write_raw_shard(path_in("%s/a.bin", "too_short"), SHARD_MAGIC_U16, 1, 10, u16, 20);
    write_raw_shard(path_in("%s/b.bin", "too_short"), SHARD_MAGIC_U16, 1, 10, u16, 20);
    snprintf(pat, sizeof pat, "%s", path_in("%s/*.bin", "too_short"));
    expect_open_error(
        pat, 16, 256,
        (const char *[]){pat, "20 tokens in 2 shard(s)", "largest holds 10", "T+1 = 17", NULL});

    // every shard is validated, not only the first: the second one's fault is named
    make_dir("second_bad");
    write_raw_shard(path_in("%s/train_000.bin", "second_bad"), SHARD_MAGIC_U16, 1, 100, u16,
                    sizeof u16);
    write_raw_shard(path_in("%s/train_001.bin", "second_bad"), SHARD_MAGIC_U16, 1, 100, tk,
                    sizeof tk);
    snprintf(pat, sizeof pat, "%s", path_in("%s/train_*.bin", "second_bad"));
    expect_open_error(pat, 8, 256,
                      (const char *[]){path_in("%s/train_001.bin", "second_bad"),
                                       "token 300 at byte offset 1098", NULL});
}

// ---------------------------------------------------------------------------------------------
// files that are not shards, and shards that change under an open dataset

// A glob that matches a FIFO or a device node: refused at once, never opened (a FIFO would block
// the open forever, and reading a device may never end).
static void test_not_regular(void) {
    make_dir("fifo");
    EXPECT(mkfifo(path_in("%s/train_000.bin", "fifo"), 0644) == 0, "mkfifo");
    char pat[2048];
    snprintf(pat, sizeof pat, "%s", path_in("%s/train_*.bin", "fifo"));
    expect_open_error(pat, 8, 256,
                      (const char *[]){path_in("%s/train_000.bin", "fifo"),
                                       "token shard is not a regular file", NULL});
    make_dir("device");
    EXPECT(symlink("/dev/zero", path_in("%s/train_000.bin", "device")) == 0, "symlink");
    snprintf(pat, sizeof pat, "%s", path_in("%s/train_*.bin", "device"));
    expect_open_error(pat, 8, 256, (const char *[]){"is not a regular file", NULL});
}

// The shard is truncated (or rewritten) after dataset_open checked it: reading a sequence past
// the new end, or a token that is now out of range, is one error line naming the shard and the
// offset, TS_ERR_INPUT (a mapped shard would have died of SIGBUS).
static void test_changed_while_open(void) {
    enum { N = 1000, T = 16 };
    uint32_t tok[N];
    for (int i = 0; i < N; i++)
        tok[i] = (uint32_t)(i % 256);
    make_dir("changed");
    const char *path = path_in("%s/train_000.bin", "changed");
    EXPECT(shard_write(path, tok, N, 256) == TS_OK, "write");
    dataset ds;
    EXPECT(dataset_open(&ds, path, T, 256) == TS_OK, "open");
    if (ds.n_shards != 1) return;
    int32_t out[T + 1];
    EXPECT(dataset_sequence(&ds, 50, out) == TS_OK && out[0] == (50 * T) % 256, "before");

    EXPECT(truncate(path, 1024 + 2 * 400) == 0, "truncate");
    EXPECT(dataset_sequence(&ds, 10, out) == TS_OK, "a sequence before the cut still reads");
    capture_begin();
    ts_status st = dataset_sequence(&ds, 50, out);
    char *log = capture_end();
    EXPECT(st == TS_ERR_INPUT, "read past the cut: %s", ts_status_name(st));
    EXPECT(count_substr(log, "error: ") == 1 && strstr(log, path) &&
               strstr(log, "the file ends at byte 1824, expected 3024 bytes") &&
               strstr(log, "truncated while tessera was using it") &&
               strstr(log, "byte offset 2624"),
           "the error names the shard, both sizes and the offset:\n%s", log);
    free(log);
    double h;
    capture_begin();
    st = dataset_unigram_entropy(&ds, 256, &h);
    log = capture_end();
    EXPECT(st == TS_ERR_INPUT && count_substr(log, "error: ") == 1 && strstr(log, path),
           "entropy of a truncated shard: %s\n%s", ts_status_name(st), log);
    free(log);

    // rewritten in place with a token out of range
    FILE *f = fopen(path, "r+b");
    uint16_t big = 999;
    fseek(f, 1024 + 2 * (10 * T + 3), SEEK_SET);
    fwrite(&big, 2, 1, f);
    fclose(f);
    capture_begin();
    st = dataset_sequence(&ds, 10, out);
    log = capture_end();
    EXPECT(st == TS_ERR_INPUT && strstr(log, "token 999 at byte offset 1350") &&
               strstr(log, "shard changed"),
           "a token out of range after opening: %s\n%s", ts_status_name(st), log);
    free(log);
    dataset_close(&ds);
}

// ---------------------------------------------------------------------------------------------
// permutation

static void test_permutation(void) {
    const uint64_t sizes[] = {1, 2, 3, 4, 5, 7, 16, 17, 100, 1000, 4097, 65537};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t n = sizes[k];
        unsigned char *seen = malloc(n);
        for (uint64_t seed = 0; seed < 3; seed++)
            for (uint64_t epoch = 0; epoch < 3; epoch++) {
                memset(seen, 0, n);
                int dup = 0, out_of_range = 0;
                for (uint64_t i = 0; i < n; i++) {
                    uint64_t p = data_permute(i, n, seed, epoch);
                    if (p >= n) {
                        out_of_range++;
                        continue;
                    }
                    dup += seen[p];
                    seen[p] = 1;
                }
                EXPECT(dup == 0 && out_of_range == 0,
                       "n=%llu seed=%llu epoch=%llu: %d repeats, %d out of range",
                       (unsigned long long)n, (unsigned long long)seed, (unsigned long long)epoch,
                       dup, out_of_range);
            }
        free(seen);
    }
    // a shuffle, different per seed and per epoch, and the same on every call
    enum { N = 1000 };
    int fixed = 0, diff_seed = 0, diff_epoch = 0, unstable = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint64_t p = data_permute(i, N, 42, 0);
        fixed += p == i;
        diff_seed += p != data_permute(i, N, 43, 0);
        diff_epoch += p != data_permute(i, N, 42, 1);
        unstable += p != data_permute(i, N, 42, 0);
    }
    // a random permutation has ~1 fixed point and differs from another in ~999 places
    EXPECT(fixed < 10, "%d fixed points of 1000", fixed);
    EXPECT(diff_seed > 950, "seeds 42 and 43 agree on %d of 1000", N - diff_seed);
    EXPECT(diff_epoch > 950, "epochs 0 and 1 agree on %d of 1000", N - diff_epoch);
    EXPECT(unstable == 0, "%d values changed between identical calls", unstable);
}

// ---------------------------------------------------------------------------------------------
// sample order: token = 20000 * shard + position, so every token says where it came from

static void test_sample_order(void) {
    enum { T = 8 };
    const int lens[] = {100, 9, 8, 57}; // 12, 1, 0 and 7 sequences
    make_dir("order");
    for (int s = 0; s < 4; s++) {
        uint32_t tok[100];
        for (int i = 0; i < lens[s]; i++)
            tok[i] = (uint32_t)(20000 * s + i);
        char name[64];
        snprintf(name, sizeof name, "order/train_%03d.bin", s);
        EXPECT(shard_write(path_in("%s", name), tok, (size_t)lens[s], 65536) == TS_OK, "write");
    }
    const char *pat = path_in("%s/train_*.bin", "order");
    dataset a, b;
    capture_begin(); // the shard with no sequence is mentioned at info level
    EXPECT(dataset_open(&a, pat, T, 65536) == TS_OK, "open a");
    char *log = capture_end();
    EXPECT(strstr(log, "train_002.bin: 8 tokens, fewer than one sequence of T+1 = 9"),
           "the empty shard is reported:\n%s", log);
    free(log);
    if (a.n_shards != 4) return;
    EXPECT(a.n_seq == 20, "n_seq %llu, expected 12 + 1 + 0 + 7", (unsigned long long)a.n_seq);

    // file order: shard by shard, window j of a shard starts at position j*T, never crosses
    int32_t out[T + 1], out2[T + 1];
    int prev_shard = 0, prev_start = -T, bad = 0;
    for (uint64_t i = 0; i < a.n_seq; i++) {
        dataset_sequence(&a, i, out);
        int shard = out[0] / 20000, start = out[0] % 20000;
        for (int t = 1; t <= T; t++)
            bad += out[t] != out[0] + t; // same shard, consecutive
        if (shard == prev_shard)
            bad += start != prev_start + T;
        else
            bad += shard < prev_shard || start != 0;
        bad += start + T >= lens[shard];
        prev_shard = shard;
        prev_start = start;
    }
    EXPECT(bad == 0, "%d violations of the file order", bad);
    EXPECT(prev_shard == 3 && prev_start == 6 * T, "last sequence: shard %d start %d", prev_shard,
           prev_start);

    // sample g depends on (seed, g) only: a second dataset, queried backwards, agrees; every
    // epoch visits every sequence once; epochs and seeds give different orders
    EXPECT(dataset_open(&b, pat, T, 65536) == TS_OK, "open b");
    const uint64_t n = a.n_seq, G = 3 * n;
    int32_t first[3 * 20];
    int mismatch = 0, cover_bad = 0, same_epoch = 0, same_seed = 0;
    for (uint64_t g = G; g-- > 0;) {
        dataset_sample(&b, 7, g, out2);
        first[g] = out2[0];
    }
    for (uint64_t e = 0; e < 3; e++) {
        int seen[20] = {0};
        for (uint64_t j = 0; j < n; j++) {
            uint64_t g = e * n + j;
            dataset_sample(&a, 7, g, out);
            mismatch += out[0] != first[g];
            dataset_sequence(&a, data_permute(j, n, 7, e), out2);
            mismatch += memcmp(out, out2, sizeof out) != 0;
            for (uint64_t i = 0; i < n; i++) { // which sequence is this?
                dataset_sequence(&a, i, out2);
                if (out2[0] == out[0]) seen[i]++;
            }
            if (e == 1) same_epoch += first[g] == first[g - n];
            dataset_sample(&a, 8, g, out2);
            same_seed += out2[0] == out[0];
        }
        for (uint64_t i = 0; i < n; i++)
            cover_bad += seen[i] != 1;
    }
    EXPECT(mismatch == 0, "%d samples depend on more than (seed, g)", mismatch);
    EXPECT(cover_bad == 0, "%d sequences not seen exactly once per epoch", cover_bad);
    EXPECT(same_epoch < 10, "epochs 0 and 1 agree on %d of 20 positions", same_epoch);
    EXPECT(same_seed < 30, "seeds 7 and 8 agree on %d of 60 samples", same_seed);
    dataset_close(&a);
    dataset_close(&b);
}

// ---------------------------------------------------------------------------------------------
// unigram entropy: counts 400/200/200 over two shards -> p = 1/2, 1/4, 1/4 -> 1.5 ln 2

static void test_entropy(void) {
    make_dir("entropy");
    uint32_t t[500];
    for (int i = 0; i < 500; i++)
        t[i] = i < 400 ? 0 : 1; // 400 x 0, 100 x 1
    EXPECT(shard_write(path_in("%s/a.bin", "entropy"), t, 500, 50257) == TS_OK, "write a");
    for (int i = 0; i < 300; i++)
        t[i] = i < 100 ? 1 : 2; // 100 x 1, 200 x 2
    EXPECT(shard_write(path_in("%s/b.bin", "entropy"), t, 300, 50257) == TS_OK, "write b");
    dataset ds;
    EXPECT(dataset_open(&ds, path_in("%s/*.bin", "entropy"), 4, 50257) == TS_OK, "open");
    double h = -1, want = 1.5 * log(2.0);
    EXPECT(dataset_unigram_entropy(&ds, 50257, &h) == TS_OK, "entropy");
    EXPECT(fabs(h - want) < 1e-12, "entropy %.15f, expected %.15f", h, want);
    dataset_close(&ds);

    uint32_t u[1024];
    for (int i = 0; i < 1024; i++)
        u[i] = (uint32_t)(i % 256);
    EXPECT(shard_write(path_in("%s/uniform.bin", "entropy"), u, 1024, 256) == TS_OK, "write");
    EXPECT(dataset_open(&ds, path_in("%s/uniform.bin", "entropy"), 4, 256) == TS_OK, "open");
    EXPECT(dataset_unigram_entropy(&ds, 256, &h) == TS_OK, "entropy");
    EXPECT(fabs(h - log(256.0)) < 1e-12, "uniform entropy %.15f, expected ln 256", h);
    dataset_close(&ds);
}

// ---------------------------------------------------------------------------------------------
// prepare (in-process): document split, hold-out, shard sizes, stats.txt, idempotence, errors

static int run_prepare(const char *const *args, char **log) {
    char *argv[32] = {"prepare"};
    int argc = 1;
    for (; args[argc - 1]; argc++)
        argv[argc] = (char *)args[argc - 1];
    capture_begin();
    int rc = cmd_prepare(argc, argv);
    *log = capture_end();
    return rc;
}

// all tokens of the shards matching pattern, as text
static char *shards_text(const char *pattern, size_t *len) {
    dataset ds;
    *len = 0;
    if (dataset_open(&ds, pattern, 1, 256) != TS_OK) return NULL;
    size_t n = 0;
    for (int s = 0; s < ds.n_shards; s++)
        n += ds.shards[s].n_tokens;
    char *t = malloc(n + 1);
    for (int s = 0; s < ds.n_shards; s++) {
        size_t bytes = ds.shards[s].n_tokens * sizeof(uint16_t);
        uint16_t *tok = malloc(bytes + 1);
        EXPECT(pread(ds.shards[s].fd, tok, bytes, 1024) == (ssize_t)bytes, "read %s",
               ds.shards[s].path);
        for (uint64_t i = 0; i < ds.shards[s].n_tokens; i++)
            t[(*len)++] = (char)tok[i];
        free(tok);
    }
    t[n] = 0;
    dataset_close(&ds);
    return t;
}

static long stats_value(const char *dir, const char *key) {
    char path[2048], *text, want[128];
    snprintf(path, sizeof path, "%s/stats.txt", dir);
    if (!(text = read_file(path, NULL))) return -1;
    snprintf(want, sizeof want, "\n%s ", key);
    char *p = strstr(text, want);
    long v = p ? strtol(p + strlen(want), NULL, 10) : -1;
    free(text);
    return v;
}

static double text_entropy(const char *t, size_t n) {
    double c[256] = {0}, h = 0;
    for (size_t i = 0; i < n; i++)
        c[(unsigned char)t[i]]++;
    for (int v = 0; v < 256; v++)
        if (c[v] > 0) h -= c[v] / (double)n * log(c[v] / (double)n);
    return h;
}

static void expect_prepare_error(const char *const *args, const char *const *want) {
    char *log;
    int rc = run_prepare(args, &log);
    EXPECT(rc == 2, "prepare %s ... exited %d, expected 2", args[0], rc);
    EXPECT(count_substr(log, "error: ") == 1, "expected one error line, got:\n%s", log);
    for (int i = 0; want[i]; i++)
        EXPECT(strstr(log, want[i]), "'%s' missing from the error:\n%s", want[i], log);
    free(log);
}

// 100 fortune-style documents separated by "%" lines, with stray blank lines, a CRLF separator
// and no final newline; returns the expected train and val texts
static void make_fortunes(const char *path, int variant, char *train, char *val) {
    char text[16384] = "", doc[128];
    train[0] = val[0] = 0;
    for (int d = 0; d < 100; d++) {
        if (d > 0) strcat(text, d == 50 ? "%\r\n" : "%\n");
        if (d % 7 == 0) strcat(text, "\n");
        snprintf(doc, sizeof doc, "fortune %d.%d\n\tsecond line of %d\n", d, variant, d);
        strcat(text, doc);
        if (d == 99) text[strlen(text) - 1] = 0; // no newline at the end of the file
        if (d % 13 == 0 && d != 99) strcat(text, "  \n");
        strcat(d % 10 == 9 ? val : train, doc);
        strcat(d % 10 == 9 ? val : train, "\n");
    }
    write_bytes(path, text, strlen(text));
}

static void test_prepare(void) {
    make_dir("prep_in");
    char train[16384], val[4096], out[2048], pat[4096];
    const char *in = path_in("%s/fortunes.txt", "prep_in");
    make_fortunes(in, 0, train, val);
    snprintf(out, sizeof out, "%s", path_in("%s", "prep_out"));
    const char *args[] = {
        "--out", out, "--val-fraction", "0.1", "--shard-tokens=500", "--min-bytes", "0", in, NULL};
    char *log;
    EXPECT(run_prepare(args, &log) == 0, "prepare failed:\n%s", log);
    free(log);

    size_t n_train = strlen(train), n_val = strlen(val), len;
    long want_shards = (long)(n_train + 499) / 500;
    EXPECT(stats_value(out, "bytes_train") == (long)n_train, "bytes_train");
    EXPECT(stats_value(out, "bytes_val") == (long)n_val, "bytes_val");
    EXPECT(stats_value(out, "documents_train") == 90, "documents_train");
    EXPECT(stats_value(out, "documents_val") == 10, "documents_val (every 10th)");
    EXPECT(stats_value(out, "shards_train") == want_shards, "shards_train");
    snprintf(pat, sizeof pat, "%s/train_*.bin", out);
    char *got = shards_text(pat, &len);
    EXPECT(got && len == n_train && memcmp(got, train, len) == 0, "train text:\n%s", got);
    free(got);
    snprintf(pat, sizeof pat, "%s/val_000.bin", out);
    got = shards_text(pat, &len);
    EXPECT(got && len == n_val && memcmp(got, val, len) == 0, "val text:\n%s", got);
    free(got);
    struct stat st;
    snprintf(pat, sizeof pat, "%s/train_000.bin", out);
    EXPECT(stat(pat, &st) == 0 && st.st_size == 1024 + 2 * 500, "a full shard has 500 tokens");
    snprintf(pat, sizeof pat, "%s/stats.txt", out);
    char *stats = read_file(pat, NULL), want[64];
    snprintf(want, sizeof want, "unigram_entropy_nats %.6f\n", text_entropy(train, n_train));
    EXPECT(stats && strstr(stats, want), "'%s' missing from stats.txt:\n%s", want, stats);
    free(stats);

    // the same inputs and options again: nothing is written
    struct timespec before;
    snprintf(pat, sizeof pat, "%s/train_000.bin", out);
    stat(pat, &st);
    before = st.st_mtim;
    EXPECT(run_prepare(args, &log) == 0 && strstr(log, "up to date"), "rerun:\n%s", log);
    free(log);
    stat(pat, &st);
    EXPECT(st.st_mtim.tv_sec == before.tv_sec && st.st_mtim.tv_nsec == before.tv_nsec,
           "an up-to-date rerun rewrote %s", pat);

    // a changed input is prepared again; fewer shards remove the stale ones
    make_fortunes(in, 12345, train, val);
    const char *args2[] = {
        "--out", out, "--val-fraction", "0.1", "--shard-tokens", "100000", "--min-bytes", "0",
        in,      NULL};
    EXPECT(run_prepare(args2, &log) == 0 && !strstr(log, "up to date"), "changed:\n%s", log);
    EXPECT(strstr(log, "removed stale"), "stale shards not removed:\n%s", log);
    free(log);
    snprintf(pat, sizeof pat, "%s/train_001.bin", out);
    EXPECT(access(pat, F_OK) != 0, "%s should be gone", pat);
    EXPECT(stats_value(out, "shards_train") == 1, "one shard");
    EXPECT(stats_value(out, "bytes_train") == (long)strlen(train), "bytes_train after change");

    // a directory: its regular files only (no symlinks, hidden files, subdirectories), binary
    // files skipped; a file without "%" lines is split into paragraphs; --val-fraction 0
    make_dir("prep_dir");
    make_dir("prep_dir/sub");
    const char *para = "para one\nline two\n\n  \npara two\n\n\n\npara three";
    write_bytes(path_in("%s/a.txt", "prep_dir"), para, strlen(para));
    write_bytes(path_in("%s/b.dat", "prep_dir"), "ab\0cd", 5);
    write_bytes(path_in("%s/.hidden", "prep_dir"), "hidden\n", 7);
    write_bytes(path_in("%s/sub/x.txt", "prep_dir"), "sub\n", 4);
    EXPECT(symlink("a.txt", path_in("%s/c.txt", "prep_dir")) == 0, "symlink");
    char out2[2048];
    snprintf(out2, sizeof out2, "%s", path_in("%s", "prep_out2"));
    const char *args3[] = {"--out",       out2, "--val-fraction",          "0",
                           "--min-bytes", "0",  path_in("%s", "prep_dir"), NULL};
    EXPECT(run_prepare(args3, &log) == 0, "directory input:\n%s", log);
    EXPECT(strstr(log, "read 1 files (1 binary skipped)"), "file selection:\n%s", log);
    free(log);
    snprintf(pat, sizeof pat, "%s/train_*.bin", out2);
    got = shards_text(pat, &len);
    const char *want_text = "para one\nline two\n\npara two\n\npara three\n\n";
    EXPECT(got && len == strlen(want_text) && !memcmp(got, want_text, len), "paragraphs:\n%s", got);
    free(got);
    snprintf(pat, sizeof pat, "%s/val_000.bin", out2);
    EXPECT(access(pat, F_OK) != 0 && stats_value(out2, "bytes_val") == 0, "no val shard");

    // errors: one line each, exit 2, nothing written
    char out3[2048];
    snprintf(out3, sizeof out3, "%s", path_in("%s", "prep_out3"));
    expect_prepare_error((const char *[]){"--out", out3, in, NULL},
                         (const char *[]){in, "expected at least --min-bytes 1000000", NULL});
    EXPECT(access(out3, F_OK) != 0, "a refused corpus creates no output directory");
    expect_prepare_error(
        (const char *[]){"--out", out3, "--min-bytes", "0", path_in("%s/a.txt", "prep_dir"), NULL},
        (const char *[]){"3 documents, too few to hold out --val-fraction 0.05", NULL});
    expect_prepare_error((const char *[]){"--out", out3, path_in("%s/b.dat", "prep_dir"), NULL},
                         (const char *[]){path_in("%s/b.dat", "prep_dir"), "NUL byte at offset 2",
                                          "expected a text file", NULL});
    expect_prepare_error((const char *[]){"--out", out3, path_in("%s", "missing.txt"), NULL},
                         (const char *[]){"missing.txt: no such file or directory", NULL});
    expect_prepare_error(
        (const char *[]){"--bogus", in, NULL},
        (const char *[]){"unknown option '--bogus'", "usage: tessera prepare", NULL});
    expect_prepare_error(
        (const char *[]){"--val-fraction", "1.5", in, NULL},
        (const char *[]){"--val-fraction '1.5', expected a number in [0, 1)", NULL});
    expect_prepare_error((const char *[]){"--shard-tokens=12x", in, NULL},
                         (const char *[]){"--shard-tokens '12x'", NULL});
    expect_prepare_error((const char *[]){in, "--min-bytes", NULL},
                         (const char *[]){"--min-bytes expects a value", NULL});
    EXPECT(access(out3, F_OK) != 0, "no output directory after errors");
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

int main(int argc, char **argv) {
    int own_dir = argc < 2;
    if (own_dir) {
        char tmpl[] = "/tmp/tessera-test-data-XXXXXX";
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            return 1;
        }
        snprintf(g_dir, sizeof g_dir, "%s", tmpl);
    } else {
        snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
        nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); // leftovers of an earlier run
        mkdir(g_dir, 0755);
    }
    test_roundtrip(256, 2, SHARD_MAGIC_U16, SHARD_VERSION_U16);
    test_roundtrip(50257, 2, SHARD_MAGIC_U16, SHARD_VERSION_U16);
    test_roundtrip(65536, 2, SHARD_MAGIC_U16, SHARD_VERSION_U16);
    test_roundtrip(65537, 4, SHARD_MAGIC_U32, SHARD_VERSION_U32);
    test_roundtrip(100000, 4, SHARD_MAGIC_U32, SHARD_VERSION_U32);
    test_bad_shards();
    test_not_regular();
    test_changed_while_open();
    test_permutation();
    test_sample_order();
    test_entropy();
    test_prepare();
    if (g_failures == 0) nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("test_data: %s (%d failures)%s%s\n", g_failures ? "FAILED" : "ok", g_failures,
           g_failures ? "; files kept in " : "", g_failures ? g_dir : "");
    return g_failures ? 1 : 0;
}
