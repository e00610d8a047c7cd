// test_codec.c — the codec seam (collectives/codec.h), run as real processes like test_comm:
//
//   test_codec BACKEND SIZE   alone (self) or under mpirun; exits 0 when every check passes.
//
// Checks: the registry (names, CODEC_CHOICES, unknown names); `none` gives the bytes and the bits
// of the plain float all-reduce and reduce-scatter; the two other wires, through test codecs
// defined here (a sparse one over the all-gather of variable blocks, with empty payloads, and a
// block one over the combine), give exact sums on every rank, alone and through the reducer with
// several buckets in flight; state hooks: a stateful test codec packs and unpacks its arrays,
// damaged, missing or mis-sized arrays are refused, every rank's state is gathered for a
// checkpoint and each rank gets its own back on resume (another codec's or world's is not).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/codec.h"
#include "collectives/comm.h"
#include "collectives/reducer.h"
#include "kernels/backend.h"
#include "tests/unit/expect.h"

// exact values: rank r holds sign * (r + 1) * 2^e, so every partial sum in any order is exact
static float exact(int rank, size_t i) {
    return (i % 3 == 0 ? -1.0f : 1.0f) * (float)(rank + 1) * ldexpf(1.0f, (int)(i % 17) - 8);
}
// the same, but zero at a third of the places, and everywhere on the last rank of a world > 1
static float sparse(int rank, int size, size_t i) {
    if ((size > 1 && rank == size - 1) || (i + (size_t)rank) % 3 == 0) return 0.0f;
    return exact(rank, i);
}
static float sparse_sum(int size, size_t i) {
    float s = 0;
    for (int r = 0; r < size; r++)
        s += sparse(r, size, i);
    return s;
}

// ---------------------------------------------------------------------------------------------
// test codecs

// "sparse" (GATHER): the nonzero values as (u32 index, f32 value) pairs
static size_t sparse_payload_bytes(const codec *cx, size_t count) {
    (void)cx;
    return count * 8;
}
static ts_status sparse_encode(codec *cx, size_t first, const float *grad, size_t count,
                               void *payload, size_t *bytes) {
    (void)cx, (void)first;
    unsigned char *p = payload;
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        if (grad[i] == 0.0f) continue;
        uint32_t idx = (uint32_t)i;
        memcpy(p + at, &idx, 4);
        memcpy(p + at + 4, &grad[i], 4);
        at += 8;
    }
    *bytes = at;
    return TS_OK;
}
static ts_status sparse_decode(codec *cx, size_t first, const void *payload, size_t bytes,
                               float *grad, size_t count) {
    (void)cx, (void)first;
    const unsigned char *p = payload;
    for (size_t at = 0; at + 8 <= bytes; at += 8) {
        uint32_t idx;
        float v;
        memcpy(&idx, p + at, 4);
        memcpy(&v, p + at + 4, 4);
        if (idx >= count) return TS_ERR_INTERNAL;
        grad[idx] += v;
    }
    return TS_OK;
}
static const codec_ops sparse_ops = {
    .name = "test_sparse",
    .help = "nonzero values with their indices",
    .wire = CODEC_WIRE_GATHER,
    .payload_bytes = sparse_payload_bytes,
    .encode = sparse_encode,
    .decode = sparse_decode,
};

// "blocks" (COMBINE): blocks of 3 fp32 values (the last one padded with zeros), combined by
// adding in the order the communicator gives
enum { BLOCK = 3 };
static size_t blocks_payload_bytes(const codec *cx, size_t count) {
    (void)cx;
    return (count + BLOCK - 1) / BLOCK * BLOCK * sizeof(float);
}
static ts_status blocks_encode(codec *cx, size_t first, const float *grad, size_t count,
                               void *payload, size_t *bytes) {
    (void)first;
    *bytes = blocks_payload_bytes(cx, count);
    memset(payload, 0, *bytes);
    memcpy(payload, grad, count * sizeof(float));
    return TS_OK;
}
static void blocks_combine(void *dst, const void *src, size_t n, int src_first, void *ctx) {
    (void)ctx;
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n * BLOCK; i++) {
        float a, b;
        memcpy(&a, d + 4 * i, 4);
        memcpy(&b, s + 4 * i, 4);
        float v = src_first ? b + a : a + b;
        memcpy(d + 4 * i, &v, 4);
    }
}
static ts_status blocks_decode(codec *cx, size_t first, const void *payload, size_t bytes,
                               float *grad, size_t count) {
    (void)cx, (void)first;
    if (bytes < count * sizeof(float)) return TS_ERR_INTERNAL;
    const unsigned char *p = payload;
    for (size_t i = 0; i < count; i++) {
        float v;
        memcpy(&v, p + 4 * i, 4);
        grad[i] += v;
    }
    return TS_OK;
}
static const codec_ops blocks_ops = {
    .name = "test_blocks",
    .help = "blocks of 3 values, added by the combine",
    .wire = CODEC_WIRE_COMBINE,
    .elem_bytes = BLOCK * sizeof(float),
    .combine = blocks_combine,
    .payload_bytes = blocks_payload_bytes,
    .encode = blocks_encode,
    .decode = blocks_decode,
};

// "state": none's wire, with a residual of n floats and a step counter as checkpointed state
typedef struct {
    float *residual;
    uint64_t steps;
} state_test;
static ts_status state_init(codec *cx) {
    state_test *s = ts_calloc(1, sizeof *s, "test codec state");
    s->residual = ts_calloc(cx->n ? cx->n : 1, sizeof(float), "test residual");
    cx->state = s;
    return TS_OK;
}
static void state_destroy(codec *cx) {
    state_test *s = cx->state;
    free(s->residual);
    free(s);
}
static ts_status state_save(const codec *cx, codec_state_io *io) {
    const state_test *s = cx->state;
    TS_CHECK(io->put(io, "residual", s->residual, cx->n * sizeof(float)));
    return io->put(io, "steps", &s->steps, sizeof s->steps);
}
static ts_status state_load(codec *cx, codec_state_io *io) {
    state_test *s = cx->state;
    TS_CHECK(io->get(io, "steps", &s->steps, sizeof s->steps)); // in another order than saved
    return io->get(io, "residual", s->residual, cx->n * sizeof(float));
}
static const codec_ops state_ops = {
    .name = "test_state",
    .help = "none with state",
    .wire = CODEC_WIRE_SUM_F32,
    .init = state_init,
    .destroy = state_destroy,
    .save = state_save,
    .load = state_load,
};

// ---------------------------------------------------------------------------------------------
// checks

static void test_registry(void) {
    char joined[256] = "";
    size_t used = 0;
    for (int i = 0; i < codec_count(); i++)
        used += (size_t)snprintf(joined + used, sizeof joined - used, "%s%s", i ? "|" : "",
                                 codec_at(i)->name);
    EXPECT(strcmp(joined, CODEC_CHOICES) == 0,
           "the registry holds %s, CODEC_CHOICES (the config key's choices) says %s", joined,
           CODEC_CHOICES);
    EXPECT(codec_count() >= 1 && strcmp(codec_at(0)->name, "none") == 0, "none is not first");
    EXPECT(codec_find("none") == codec_at(0) && codec_find("nonexistent") == NULL,
           "codec_find does not find by name");
    char names[256];
    codec_names(names, sizeof names);
    EXPECT(strncmp(names, "none", 4) == 0, "codec_names gives \"%s\"", names);
    codec *cx = NULL;
    log_set_quiet_errors(1);
    ts_status st = codec_create(&cx, "int3", 0, 1, 10);
    log_set_quiet_errors(0);
    EXPECT(st == TS_ERR_INPUT && cx == NULL, "an unknown codec returned %s", ts_status_name(st));
    EXPECT(codec_create(&cx, "none", 0, 1, 10) == TS_OK && cx && !codec_has_state(cx),
           "none: created with state, or not at all");
    unsigned char *blob = (unsigned char *)&blob;
    size_t len = 99;
    EXPECT(codec_state_pack(cx, &blob, &len) == TS_OK && blob == NULL && len == 0,
           "none packed %zu bytes of state", len);
    codec_destroy(cx);
}

// `none` through the codec layer against the plain float collective: the same bits, the same
// bytes on the wire
static void test_none(comm *c, size_t n, int scatter) {
    codec *cx = NULL;
    EXPECT(codec_create(&cx, "none", c->rank, c->size, n) == TS_OK, "none not created");
    float *a = malloc(n * sizeof(float) + 4), *b = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++) // all 24 bits of mantissa: the order of the sums shows
        a[i] = b[i] =
            exact(c->rank, i) * (1.0f + (float)((i * 2654435761u) % 8388608u) / 8388608.0f);
    comm_stats s0 = c->stats;
    codec_bucket cb;
    memset(&cb, 0, sizeof cb);
    ts_status st = codec_bucket_start(cx, c, &cb, 0, a, n, scatter);
    if (st == TS_OK) st = codec_bucket_wait(cx, c, &cb);
    EXPECT(st == TS_OK, "none n=%zu: %s", n, ts_status_name(st));
    comm_stats s1 = c->stats;
    st = scatter ? c->reduce_scatter_sum_f32(c, b, n) : c->all_reduce_sum_f32(c, b, n);
    EXPECT(st == TS_OK, "plain collective n=%zu: %s", n, ts_status_name(st));
    comm_stats s2 = c->stats;
    size_t first = 0, count = n;
    if (scatter) comm_chunk(n, c->size, c->rank, &first, &count);
    EXPECT(memcmp(a + first, b + first, count * sizeof(float)) == 0,
           "none n=%zu scatter %d: the result differs bitwise from the plain float collective", n,
           scatter);
    EXPECT(s1.bytes_sent - s0.bytes_sent == s2.bytes_sent - s1.bytes_sent &&
               s1.bytes_recv - s0.bytes_recv == s2.bytes_recv - s1.bytes_recv,
           "none n=%zu: %llu/%llu bytes sent/received, the plain collective %llu/%llu", n,
           (unsigned long long)(s1.bytes_sent - s0.bytes_sent),
           (unsigned long long)(s1.bytes_recv - s0.bytes_recv),
           (unsigned long long)(s2.bytes_sent - s1.bytes_sent),
           (unsigned long long)(s2.bytes_recv - s1.bytes_recv));
    EXPECT(cx->stats.raw_bytes == n * 4 && cx->stats.payload_bytes == n * 4 &&
               cx->stats.buckets == 1,
           "none n=%zu: raw %llu payload %llu bytes in %llu buckets", n,
           (unsigned long long)cx->stats.raw_bytes, (unsigned long long)cx->stats.payload_bytes,
           (unsigned long long)cx->stats.buckets);
    EXPECT(cb.payload == NULL && cb.gathered == NULL, "none allocated a payload buffer");
    codec_bucket_free(&cb);
    codec_destroy(cx);
    free(a), free(b);
}

// a test codec's wire: the exact sum of the sparse values on every rank, a bucket at an offset
static void test_wire(comm *c, const codec_ops *ops, size_t n, int scatter) {
    codec *cx = NULL;
    EXPECT(codec_create_with(&cx, ops, c->rank, c->size, n + 5) == TS_OK, "%s not created",
           ops->name);
    float *g = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++)
        g[i] = sparse(c->rank, c->size, i);
    codec_bucket cb;
    memset(&cb, 0, sizeof cb);
    for (int round = 0; round < 2; round++) { // the second reuses the bucket's buffers
        if (round == 1)
            for (size_t i = 0; i < n; i++)
                g[i] = sparse(c->rank, c->size, i);
        ts_status st = codec_bucket_start(cx, c, &cb, 5, g, n, scatter);
        int done = 0;
        for (int k = 0; st == TS_OK && !done && k < 3; k++) // test a few times, then wait
            st = codec_bucket_test(cx, c, &cb, &done);
        if (st == TS_OK && !done) st = codec_bucket_wait(cx, c, &cb);
        EXPECT(st == TS_OK, "%s n=%zu: %s", ops->name, n, ts_status_name(st));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += g[i] != sparse_sum(c->size, i);
        EXPECT(bad == 0, "%s n=%zu scatter %d round %d: %zu wrong values", ops->name, n, scatter,
               round, bad);
    }
    size_t nonzero = 0;
    for (size_t i = 0; i < n; i++)
        nonzero += sparse(c->rank, c->size, i) != 0.0f;
    uint64_t want =
        ops->wire == CODEC_WIRE_GATHER ? 2 * nonzero * 8 : 2 * ops->payload_bytes(cx, n);
    EXPECT(cx->stats.payload_bytes == want && cx->stats.raw_bytes == 2 * n * 4,
           "%s n=%zu: payload %llu bytes (want %llu), raw %llu", ops->name, n,
           (unsigned long long)cx->stats.payload_bytes, (unsigned long long)want,
           (unsigned long long)cx->stats.raw_bytes);
    codec_bucket_free(&cb);
    codec_destroy(cx);
    free(g);
}

// the reducer with a test codec: several buckets in flight at once, ZeRO-1 or not
static void test_reducer(comm *c, const codec_ops *ops, size_t n, int zero) {
    codec *cx = NULL;
    EXPECT(codec_create_with(&cx, ops, c->rank, c->size, n) == TS_OK, "%s not created", ops->name);
    float *g = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        g[i] = sparse(c->rank, c->size, i);
    reducer r;
    ts_status st = reducer_create(&r, c, cx, backend_cpu(), g, n, 0.01, zero, 1);
    EXPECT(st == TS_OK && r.n_buckets > 3, "reducer: %s, %d buckets", ts_status_name(st),
           r.n_buckets);
    reducer_begin(&r);
    if (st == TS_OK) st = reducer_grads_ready(&r, n / 2); // the second half is final
    if (st == TS_OK) st = reducer_finish(&r);
    EXPECT(st == TS_OK, "reducer with %s: %s", ops->name, ts_status_name(st));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += g[i] != sparse_sum(c->size, i);
    EXPECT(bad == 0, "reducer with %s, zero %d: %zu wrong values", ops->name, zero, bad);
    reducer_destroy(&r);
    codec_destroy(cx);
    free(g);
}

// state hooks: pack, unpack into a fresh codec, and the refusals
static void test_state(void) {
    const size_t n = 1000;
    codec *a = NULL, *b = NULL, *small = NULL;
    EXPECT(codec_create_with(&a, &state_ops, 0, 2, n) == TS_OK &&
               codec_create_with(&b, &state_ops, 0, 2, n) == TS_OK &&
               codec_create_with(&small, &state_ops, 0, 2, n - 1) == TS_OK,
           "test_state not created");
    if (g_failures) return;
    state_test *sa = a->state, *sb = b->state;
    for (size_t i = 0; i < n; i++)
        sa->residual[i] = exact(3, i);
    sa->steps = 0x0102030405060708ull;
    unsigned char *blob = NULL;
    size_t len = 0;
    EXPECT(codec_has_state(a) && codec_state_pack(a, &blob, &len) == TS_OK,
           "test_state: not packed");
    EXPECT(len == (2 + 8 + 8 + n * 4) + (2 + 5 + 8 + 8), "test_state packed %zu bytes", len);
    // the arrays, walked
    size_t pos = 0, bytes;
    char name[CODEC_STATE_NAME_MAX + 1];
    const unsigned char *data;
    int k1 = codec_state_next(blob, len, &pos, name, &data, &bytes, "blob");
    EXPECT(k1 == 1 && strcmp(name, "residual") == 0 && bytes == n * 4 &&
               memcmp(data, sa->residual, bytes) == 0,
           "first array: %d %s %zu bytes", k1, name, bytes);
    int k2 = codec_state_next(blob, len, &pos, name, &data, &bytes, "blob");
    EXPECT(k2 == 1 && strcmp(name, "steps") == 0 && bytes == 8, "second array: %d %s", k2, name);
    EXPECT(codec_state_next(blob, len, &pos, name, &data, &bytes, "blob") == 0, "no end");
    // unpacked into a fresh codec: the same state
    EXPECT(codec_state_unpack(b, blob, len, "blob") == TS_OK, "test_state: not unpacked");
    EXPECT(memcmp(sa->residual, sb->residual, n * sizeof(float)) == 0 && sb->steps == sa->steps,
           "test_state: unpacked state differs");
    // refused: a cut blob, a missing array, an array of another length
    log_set_quiet_errors(1);
    ts_status cut = codec_state_unpack(b, blob, len - 3, "cut");
    ts_status missing = codec_state_unpack(b, blob, 2 + 8 + 8 + n * 4, "missing");
    ts_status sized = codec_state_unpack(small, blob, len, "sized");
    log_set_quiet_errors(0);
    EXPECT(cut == TS_ERR_INPUT && missing == TS_ERR_INPUT && sized == TS_ERR_INPUT,
           "damaged state loaded: cut %s, missing %s, mis-sized %s", ts_status_name(cut),
           ts_status_name(missing), ts_status_name(sized));
    free(blob);
    codec_destroy(a), codec_destroy(b), codec_destroy(small);
}

// state between ranks: gathered for a checkpoint, restored on resume from a holder
static void test_state_ranks(comm *c) {
    const size_t n = 777;
    int p = c->size, holder = p - 1;
    codec *a = NULL, *b = NULL, *none = NULL;
    EXPECT(codec_create_with(&a, &state_ops, c->rank, p, n) == TS_OK &&
               codec_create_with(&b, &state_ops, c->rank, p, n) == TS_OK &&
               codec_create(&none, "none", c->rank, p, n) == TS_OK,
           "codecs not created");
    if (g_failures) return;
    state_test *sa = a->state, *sb = b->state;
    for (size_t i = 0; i < n; i++)
        sa->residual[i] = exact(c->rank, i);
    sa->steps = 100 + (uint64_t)c->rank;

    // none: nothing moves
    uint64_t before = c->stats.collectives;
    unsigned char *all = (unsigned char *)&all;
    size_t *lens = malloc((size_t)p * sizeof *lens);
    EXPECT(codec_state_gather(none, c, &all, lens) == TS_OK && all == NULL, "none: gathered state");
    log_set_level(LOG_ERROR); // the expected warnings
    EXPECT(codec_state_restore(none, c, holder, "test_state", p, NULL, lens, "ckpt") == TS_OK,
           "none: restore failed");
    log_set_level(LOG_INFO);
    EXPECT(c->stats.collectives == before, "none: %llu collectives for its state",
           (unsigned long long)(c->stats.collectives - before));

    EXPECT(codec_state_gather(a, c, &all, lens) == TS_OK && all != NULL, "state not gathered");
    if (g_failures) return;
    size_t at = 0;
    for (int r = 0; r < p; r++) { // every rank's blob, as that rank packed it
        size_t pos = 0, bytes;
        char name[CODEC_STATE_NAME_MAX + 1];
        const unsigned char *data;
        int k = codec_state_next(all + at, lens[r], &pos, name, &data, &bytes, "gathered");
        float first;
        if (k == 1) memcpy(&first, data, sizeof first);
        EXPECT(k == 1 && strcmp(name, "residual") == 0 && bytes == n * 4 && first == exact(r, 0),
               "rank %d's gathered blob: %d %s %zu bytes", r, k, name, bytes);
        at += lens[r];
    }
    // refused: another codec's state, another world size, no state (the codec starts afresh)
    const char *names[3] = {"test_other", "test_state", ""};
    int worlds[3] = {p, p + 1, 0};
    log_set_level(LOG_ERROR);
    for (int k = 0; k < 3; k++) {
        ts_status st = codec_state_restore(b, c, holder, names[k], worlds[k],
                                           c->rank == holder ? all : NULL, lens, "ckpt");
        EXPECT(st == TS_OK && sb->steps == 0 && sb->residual[1] == 0.0f,
               "restore of %s from %d ranks: %s, steps %llu", names[k], worlds[k],
               ts_status_name(st), (unsigned long long)sb->steps);
    }
    log_set_level(LOG_INFO);
    // the same codec and world: every rank its own state back
    ts_status st = codec_state_restore(b, c, holder, "test_state", p,
                                       c->rank == holder ? all : NULL, lens, "ckpt");
    EXPECT(st == TS_OK && sb->steps == sa->steps &&
               memcmp(sb->residual, sa->residual, n * sizeof(float)) == 0,
           "restored state differs from the saved one (%s, steps %llu)", ts_status_name(st),
           (unsigned long long)sb->steps);
    free(all), free(lens);
    codec_destroy(a), codec_destroy(b), codec_destroy(none);
}

int main(int argc, char **argv) {
    comm *c = NULL;
    ts_status st = comm_init(&c, &argc, &argv, 60);
    if (st != TS_OK) return ts_exit_code(st);
    g_expect_rank = c->rank;
    log_init(c->rank, c->size);
    if (argc != 3) {
        fprintf(stderr, "usage: test_codec BACKEND SIZE\n");
        c->finalize(c);
        return 2;
    }
    EXPECT(strcmp(c->name, argv[1]) == 0 && c->size == atoi(argv[2]),
           "backend %s with %d ranks, want %s with %s", c->name, c->size, argv[1], argv[2]);
    c->timeout_s = 20;
    if (g_failures == 0) {
        test_registry();
        const size_t sizes[] = {0, 1, 2, 7, 1000, 16411, 300007};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
            for (int scatter = 0; scatter < 2; scatter++) {
                test_none(c, sizes[k], scatter);
                test_wire(c, &sparse_ops, sizes[k], scatter);
                test_wire(c, &blocks_ops, sizes[k], scatter);
            }
        for (int zero = 0; zero < 2; zero++) {
            test_reducer(c, &sparse_ops, 20011, zero);
            test_reducer(c, &blocks_ops, 20011, zero);
        }
        test_state();
        test_state_ranks(c);
    }
    int rc = g_failures ? 1 : 0;
    if (rc == 0 && c->rank == 0)
        printf("test_codec: all checks passed (%s, %d ranks)\n", c->name, c->size);
    c->finalize(c);
    return rc;
}
