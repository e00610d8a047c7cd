// test_codec.c — the codec seam (collectives/codec.h), run as real processes like test_comm:
//
//   test_codec BACKEND SIZE   alone (self) or under mpirun; exits 0 when every check passes.
//
// Checks: the registry (names, CODEC_CHOICES, unknown names); `none` gives the bytes and the bits
// of the plain float all-reduce and reduce-scatter; the two other wires, through test codecs
// defined here (a sparse one over the all-gather of variable blocks, with empty payloads, and a
// block one over the combine), give exact sums on every rank, alone and through the reducer with
// several buckets in flight; small tensors (a tensor table) dense and exact beside the coded
// rest, on every wire, alone and through the reducer, and damaged payloads refused; state hooks: a
// stateful test codec packs and unpacks its arrays, damaged, missing or mis-sized arrays are
// refused, every rank's state is gathered for a checkpoint and each rank gets its own back on
// resume (another codec's or world's is not); bf16, int8, int4, int2 against every rank's
// payloads decoded in rank order, with and without zstd; powersgd exact on low-rank matrices,
// mass conserved by its error feedback, dense values exact, bytes by its formula, its state
// round trip, and through the reducer with buckets cut at tensor boundaries; topk (the k largest
// |x| against a brute force, ties, values that are not finite, both value modes, exact mass, zstd
// on the indices, and every kind of malformed payload refused with its error line).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "collectives/codec.h"
#include "collectives/comm.h"
#include "collectives/reducer.h"
#include "kernels/backend.h"
#include "tests/unit/capture.h"
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

// what a GATHER payload of `len` bytes at `body` becomes with comm.zstd: a byte, then the zstd
// frame (level 1) when it is smaller, else the body
static size_t zstd_payload(const void *body, size_t len) {
    size_t bound = ZSTD_compressBound(len);
    void *z = malloc(bound);
    size_t zlen = ZSTD_compress(z, bound, body, len, 1);
    free(z);
    return 1 + (ZSTD_isError(zlen) || zlen >= len ? len : zlen);
}

static codec_params params_zstd(int zstd) {
    codec_params p;
    codec_params_default(&p);
    p.zstd = zstd;
    return p;
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

// a test codec's wire: the exact sum of the sparse values on every rank, a bucket at an offset;
// with zstd (GATHER), each payload compressed where that makes it smaller
static void test_wire(comm *c, const codec_ops *ops, size_t n, int scatter, int zstd) {
    codec *cx = NULL;
    codec_params cp = params_zstd(zstd);
    EXPECT(codec_create_with_params(&cx, ops, c->rank, c->size, n + 5, &cp) == TS_OK,
           "%s not created", ops->name);
    float *g = malloc(n * sizeof(float) + 4);
    unsigned char *body = malloc(n * 8 + 1);
    size_t body_len = 0;
    for (size_t i = 0; i < n; i++)
        g[i] = sparse(c->rank, c->size, i);
    if (ops == &sparse_ops) sparse_encode(cx, 5, g, n, body, &body_len);
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
    uint64_t sent =
        ops->wire == CODEC_WIRE_GATHER && zstd ? 2 * zstd_payload(body, body_len) : want;
    EXPECT(cx->stats.encoded_bytes == want && cx->stats.payload_bytes == sent &&
               cx->stats.raw_bytes == 2 * n * 4,
           "%s n=%zu zstd %d: encoded %llu bytes (want %llu), payload %llu (want %llu), raw %llu",
           ops->name, n, zstd, (unsigned long long)cx->stats.encoded_bytes,
           (unsigned long long)want, (unsigned long long)cx->stats.payload_bytes,
           (unsigned long long)sent, (unsigned long long)cx->stats.raw_bytes);
    EXPECT(zstd || cx->stats.zstd_s == 0, "%s: zstd ran with comm.zstd off", ops->name);
    codec_bucket_free(&cb);
    codec_destroy(cx);
    free(g), free(body);
}

// the reducer with a test codec: several buckets in flight at once, ZeRO-1 or not; with params
// (a tensor table), buckets mix dense and coded parts
static void test_reducer(comm *c, const codec_ops *ops, size_t n, int zero,
                         const codec_params *params) {
    codec *cx = NULL;
    EXPECT(codec_create_with_params(&cx, ops, c->rank, c->size, n, params) == TS_OK,
           "%s not created", ops->name);
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
    EXPECT(bad == 0, "reducer with %s, zero %d, %d tensors: %zu wrong values", ops->name, zero,
           params ? params->n_tensors : 0, bad);
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

// ---------------------------------------------------------------------------------------------
// the compressing codecs (bf16, int8, int4, int2)

// a gradient of rank r at step k: values of all signs over 10 binary orders of magnitude, one
// block in seven all zero
static float quant_input(int rank, int step, size_t i) {
    if ((i / 64) % 7 == 3) return 0.0f;
    uint32_t h = (uint32_t)(i * 2654435761u) ^ (uint32_t)(rank * 40503 + step * 9973);
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    float u = (float)(h % 20001u) / 10000.0f - 1.0f;
    return u * ldexpf(1.0f, (int)((i / 64 + (size_t)step) % 10) - 5);
}

static size_t quant_formula(int bits, size_t n) {
    if (bits == 16) return 2 * n;
    return 4 * ((n + CODEC_BLOCKQ_BLOCK - 1) / CODEC_BLOCKQ_BLOCK) + (n * (size_t)bits + 7) / 8;
}

// half a quantization step at x[i]: bf16, half a unit in the last place of x; blocks, half the
// block's scale max|x| / qmax
static float quant_half_step(int bits, const float *x, size_t n, size_t i) {
    if (bits == 16) {
        int e;
        frexpf(x[i], &e);
        return x[i] == 0.0f ? 0.0f : ldexpf(1.0f, e - 9);
    }
    size_t lo = i / CODEC_BLOCKQ_BLOCK * CODEC_BLOCKQ_BLOCK;
    float amax = 0.0f;
    for (size_t j = lo; j < n && j < lo + CODEC_BLOCKQ_BLOCK; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    return amax / (float)((1 << (bits - 1)) - 1) / 2.0f;
}

// the codec's residual (its saved state), cx->n values
static void quant_residual(const codec *cx, float *res) {
    unsigned char *blob = NULL;
    size_t len = 0, pos = 0, bytes = 0;
    char name[CODEC_STATE_NAME_MAX + 1];
    const unsigned char *data = NULL;
    EXPECT(codec_state_pack(cx, &blob, &len) == TS_OK &&
               codec_state_next(blob, len, &pos, name, &data, &bytes, "state") == 1 &&
               strcmp(name, "residual") == 0 && bytes == cx->n * sizeof(float),
           "%s: no residual array in its state", cx->ops->name);
    if (!g_failures) memcpy(res, data, bytes);
    free(blob);
}

// Every rank simulates every rank's codec (same inputs, same rank order) and checks that the
// collective result equals that reference bit for bit, over several steps with error feedback;
// its own codec's error stays within half a step of what it encoded, the mass is conserved
// (sum of decoded = sum of inputs - final residual), the payload has the formula's length, and
// the state survives a save/load round trip. With zstd, the same bits, each payload compressed
// where that makes it smaller.
static void test_quant(comm *c, const char *name, int bits, size_t n, int zstd) {
    const int p = c->size, steps = 4;
    const size_t first = 3, total = n + first;
    codec_params cp = params_zstd(zstd);
    codec *cx = NULL, **loc = calloc((size_t)p, sizeof *loc);
    EXPECT(codec_create_params(&cx, name, c->rank, p, total, &cp) == TS_OK && codec_has_state(cx),
           "%s not created, or without state", name);
    for (int r = 0; r < p; r++)
        EXPECT(codec_create_params(&loc[r], name, r, p, total, &cp) == TS_OK, "%s not created",
               name);
    if (g_failures) return;
    const codec_ops *ops = cx->ops;
    EXPECT(ops->wire == CODEC_WIRE_GATHER && ops->payload_bytes(cx, n) == quant_formula(bits, n),
           "%s n=%zu: wire %d, payload_bytes %zu (formula %zu)", name, n, (int)ops->wire,
           ops->payload_bytes(cx, n), quant_formula(bits, n));
    size_t most = quant_formula(bits, n);
    unsigned char *pay = malloc((size_t)p * most + 1);
    float *g = malloc(n * sizeof(float) + 4), *x = malloc(n * sizeof(float) + 4);
    float *ref = malloc(n * sizeof(float) + 4), *dec = malloc(n * sizeof(float) + 4);
    float *res = malloc(total * sizeof(float)), *res2 = malloc(total * sizeof(float));
    double *sum_in = calloc(n + 1, sizeof(double)), *sum_dec = calloc(n + 1, sizeof(double));
    double *sum_abs = calloc(n + 1, sizeof(double));
    codec_bucket cb;
    memset(&cb, 0, sizeof cb);
    size_t far = 0, bad_bits = 0, bad_res = 0;
    uint64_t sent = 0;
    for (int k = 0; k < steps && !g_failures; k++) {
        memset(ref, 0, n * sizeof(float));
        for (int r = 0; r < p; r++) {
            for (size_t i = 0; i < n; i++)
                g[i] = quant_input(r, k, i);
            if (r == c->rank) {
                quant_residual(loc[r], res);
                for (size_t i = 0; i < n; i++)
                    x[i] = g[i] + res[first + i];
            }
            size_t len = 0;
            EXPECT(ops->encode(loc[r], first, g, n, pay + (size_t)r * most, &len) == TS_OK &&
                       len == most,
                   "%s n=%zu: encoded into %zu bytes, formula %zu", name, n, len, most);
            if (g_failures) break;
            EXPECT(ops->decode(loc[r], first, pay + (size_t)r * most, len, ref, n) == TS_OK,
                   "%s: decode failed", name);
            if (r != c->rank) continue;
            sent += !zstd          ? len
                    : ops->no_zstd ? 1 + len
                                   : zstd_payload(pay + (size_t)r * most, len);
            // this rank's own payload alone: within half a step of what was encoded
            memset(dec, 0, n * sizeof(float));
            ops->decode(loc[r], first, pay + (size_t)r * most, len, dec, n);
            quant_residual(loc[r], res2);
            for (size_t i = 0; i < n; i++) {
                float half = quant_half_step(bits, x, n, i);
                // at a tie (x / scale = k + 1/2 after rounding) the product q * scale is itself
                // rounded: allow two units in the last place of the decoded value beyond half
                float ulp = nextafterf(fabsf(dec[i]), INFINITY) - fabsf(dec[i]);
                far += fabsf(x[i] - dec[i]) > half + 2.0f * ulp;
                bad_res += res2[first + i] != x[i] - dec[i];
                sum_in[i] += g[i];
                sum_dec[i] += dec[i];
                sum_abs[i] += fabs(g[i]) + fabs(dec[i]) + fabs(x[i]);
            }
        }
        // the real collective: every rank's result is the reference, bit for bit
        for (size_t i = 0; i < n; i++)
            g[i] = quant_input(c->rank, k, i);
        ts_status st = codec_bucket_start(cx, c, &cb, first, g, n, k % 2);
        if (st == TS_OK) st = codec_bucket_wait(cx, c, &cb);
        EXPECT(st == TS_OK, "%s n=%zu step %d: %s", name, n, k, ts_status_name(st));
        bad_bits += memcmp(g, ref, n * sizeof(float)) != 0;
    }
    EXPECT(far == 0, "%s n=%zu: %zu values decoded more than half a step away", name, n, far);
    EXPECT(bad_res == 0, "%s n=%zu: %zu residuals are not what the encoding lost", name, n,
           bad_res);
    EXPECT(bad_bits == 0,
           "%s n=%zu on %d ranks: %zu steps differ bitwise from every rank's "
           "payloads decoded in rank order",
           name, n, p, bad_bits);
    // mass: what was decoded over the steps is what came in, less what is still held back
    quant_residual(loc[c->rank], res);
    size_t lost = 0;
    for (size_t i = 0; i < n; i++)
        lost += fabs(sum_dec[i] - (sum_in[i] - res[first + i])) > 1e-6 * sum_abs[i] + 1e-30;
    EXPECT(lost == 0, "%s n=%zu: %zu values where decoded != input - residual over %d steps", name,
           n, lost, steps);
    // the real codec holds the state of its simulation, and the payload bytes are the formula's
    quant_residual(cx, res2);
    EXPECT(memcmp(res, res2, total * sizeof(float)) == 0, "%s: the residuals differ", name);
    EXPECT(cx->stats.encoded_bytes == (uint64_t)steps * most && cx->stats.payload_bytes == sent &&
               cx->stats.raw_bytes == (uint64_t)steps * n * 4,
           "%s n=%zu zstd %d: encoded %llu bytes over %d steps, formula %zu each; payload %llu, "
           "expected %llu",
           name, n, zstd, (unsigned long long)cx->stats.encoded_bytes, steps, most,
           (unsigned long long)cx->stats.payload_bytes, (unsigned long long)sent);
    EXPECT(!ops->no_zstd || cx->stats.zstd_s == 0, "%s: zstd tried, although no_zstd", name);
    // save/load round trip: a fresh codec loaded from the state encodes as the original does
    codec *back = NULL;
    unsigned char *blob = NULL, *blob2 = NULL;
    size_t len = 0, len2 = 0, l1 = 0, l2 = 0;
    EXPECT(codec_create(&back, name, c->rank, p, total) == TS_OK &&
               codec_state_pack(cx, &blob, &len) == TS_OK &&
               codec_state_unpack(back, blob, len, "blob") == TS_OK &&
               codec_state_pack(back, &blob2, &len2) == TS_OK && len == len2 &&
               memcmp(blob, blob2, len) == 0,
           "%s: state not the same after save and load", name);
    if (!g_failures && n > 0) {
        for (size_t i = 0; i < n; i++)
            g[i] = quant_input(c->rank, steps, i);
        unsigned char *p1 = pay, *p2 = pay + most;
        if (p < 2) p2 = malloc(most);
        ops->encode(cx, first, g, n, p1, &l1);
        ops->encode(back, first, g, n, p2, &l2);
        EXPECT(l1 == l2 && memcmp(p1, p2, l1) == 0, "%s: the loaded codec encodes otherwise", name);
        codec *fresh = NULL;
        size_t l3 = 0;
        unsigned char *p3 = malloc(most);
        codec_create(&fresh, name, c->rank, p, total);
        ops->encode(fresh, first, g, n, p3, &l3);
        EXPECT(n < 64 || memcmp(p1, p3, l3) != 0, "%s n=%zu: error feedback changes nothing", name,
               n);
        codec_destroy(fresh);
        free(p3);
        if (p < 2) free(p2);
    }
    free(blob), free(blob2);
    codec_destroy(back);
    codec_bucket_free(&cb);
    for (int r = 0; r < p; r++)
        codec_destroy(loc[r]);
    codec_destroy(cx);
    free(loc), free(pay), free(g), free(x), free(ref), free(dec), free(res), free(res2);
    free(sum_in), free(sum_dec), free(sum_abs);
}

// ---------------------------------------------------------------------------------------------
// small tensors travel dense

// A table over DENSE_N values: tensors of fewer than 4096 values (dense), larger ones, 4096
// exactly (coded), 5 values in no tensor (coded) and 2 at the end in none.
#define DENSE_N 19278
static const codec_tensor dense_table[] = {
    {0, 7, 1},        // dense
    {7, 100, 50},     // coded
    {5007, 64, 1},    // dense; then 5071 .. 5076 in no tensor
    {5076, 30, 200},  // coded
    {11076, 3, 3},    // dense
    {11085, 64, 64},  // 4096: coded
    {15181, 4095, 1}, // dense; then 19276 .. 19278 in no tensor
};
static void dense_params(codec_params *p) {
    codec_params_default(p);
    p->dense_below = 4096;
    p->zstd = 0;
    p->tensors = dense_table;
    p->n_tensors = (int)(sizeof dense_table / sizeof dense_table[0]);
}

// whether value i of the flat buffer is dense: in a tensor of fewer than 4096 values (worked
// out value by value, apart from the codec layer's split)
static int dense_at(size_t i) {
    for (size_t k = 0; k < sizeof dense_table / sizeof dense_table[0]; k++) {
        const codec_tensor *t = &dense_table[k];
        if (i >= t->offset && i < t->offset + t->rows * t->cols) return t->rows * t->cols < 4096;
    }
    return 0;
}

// the runs of dense and of coded values in [first, end): run k is [at[k], at[k + 1])
static int dense_runs(size_t first, size_t end, size_t *at, int *dense) {
    int n = 0;
    for (size_t i = first; i < end; i++)
        if (i == first || dense_at(i) != dense_at(i - 1)) {
            at[n] = i;
            dense[n++] = dense_at(i);
        }
    at[n] = end;
    return n;
}

// A bucket of dense_table's buffer cut through its first and last tensors, over two steps: the
// dense values are the exact sum (rank order), the coded ones what every rank's codec made of
// its runs, decoded in rank order (simulated here with every rank's codec), bit for bit; the
// payload is lengths + coded payloads + 4 bytes per dense value.
static void test_dense(comm *c, const codec_ops *ops, int scatter) {
    const int p = c->size, steps = 2;
    const size_t first = 3, end = DENSE_N - 1, n = end - first;
    codec_params dp;
    dense_params(&dp);
    codec *cx = NULL, **loc = calloc((size_t)p, sizeof *loc);
    EXPECT(codec_create_with_params(&cx, ops, c->rank, p, DENSE_N, &dp) == TS_OK, "%s not created",
           ops->name);
    for (int r = 0; r < p; r++)
        codec_create_with_params(&loc[r], ops, r, p, DENSE_N, &dp);
    size_t at[16];
    int dense[16];
    int runs = dense_runs(first, end, at, dense), coded = 0;
    EXPECT(runs == 8, "%d runs", runs);
    size_t most = 0, n_dense = 0;
    for (int k = 0; k < runs; k++) {
        coded += !dense[k];
        n_dense += dense[k] ? at[k + 1] - at[k] : 0;
        most = most > at[k + 1] - at[k] ? most : at[k + 1] - at[k];
    }
    most = ops->payload_bytes(cx, most);
    float *g = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float)), *v = malloc(n * 4);
    unsigned char *pay = malloc(most);
    codec_bucket cb;
    memset(&cb, 0, sizeof cb);
    uint64_t want_bytes = 0;
    size_t bad_dense = 0, bad_coded = 0, lossy = 0;
    for (int s = 0; s < steps && !g_failures; s++) {
        memset(ref, 0, n * sizeof(float));
        for (int r = 0; r < p; r++) {
            for (size_t i = 0; i < n; i++)
                v[i] = s == 0 ? sparse(r, p, first + i) : quant_input(r, s, first + i);
            for (int k = 0; k < runs; k++) {
                size_t lo = at[k] - first, m = at[k + 1] - at[k], len = 0;
                if (dense[k]) {
                    for (size_t i = lo; i < lo + m; i++)
                        ref[i] += v[i];
                    want_bytes += r == c->rank ? 4 * m : 0;
                    continue;
                }
                if (ops->encode(loc[r], at[k], v + lo, m, pay, &len) != TS_OK ||
                    ops->decode(loc[r], at[k], pay, len, ref + lo, m) != TS_OK)
                    EXPECT(0, "%s: simulated run %d failed", ops->name, k);
                want_bytes += r == c->rank ? len : 0;
            }
        }
        if (ops->wire == CODEC_WIRE_GATHER && coded > 1) want_bytes += 8 * (uint64_t)coded;
        for (size_t i = 0; i < n; i++)
            g[i] = s == 0 ? sparse(c->rank, p, first + i) : quant_input(c->rank, s, first + i);
        ts_status st = codec_bucket_start(cx, c, &cb, first, g, n, scatter);
        if (st == TS_OK) st = codec_bucket_wait(cx, c, &cb);
        EXPECT(st == TS_OK, "%s step %d: %s", ops->name, s, ts_status_name(st));
        for (size_t i = 0; i < n; i++) {
            float exact_sum = 0;
            for (int r = 0; r < p; r++)
                exact_sum += s == 0 ? sparse(r, p, first + i) : quant_input(r, s, first + i);
            if (dense_at(first + i))
                bad_dense += memcmp(&g[i], &exact_sum, 4) != 0;
            else
                lossy += g[i] != exact_sum;
            bad_coded += memcmp(&g[i], &ref[i], 4) != 0;
        }
    }
    EXPECT(cb.split && cb.n_parts == runs && cb.n_coded == coded && cb.n_dense == n_dense,
           "%s: split into %d parts (%d coded, %zu dense values), expected %d (%d, %zu)", ops->name,
           cb.n_parts, cb.n_coded, cb.n_dense, runs, coded, n_dense);
    EXPECT(bad_dense == 0, "%s scatter %d: %zu dense values are not the exact sum", ops->name,
           scatter, bad_dense);
    EXPECT(bad_coded == 0,
           "%s scatter %d: %zu values differ bitwise from every rank's runs decoded in rank order",
           ops->name, scatter, bad_coded);
    int exact_codec = ops == &sparse_ops || ops == &blocks_ops;
    EXPECT(exact_codec ? lossy == 0 : lossy > 0, "%s: %zu coded values are not the exact sum",
           ops->name, lossy);
    EXPECT(cx->stats.payload_bytes == want_bytes && cx->stats.raw_bytes == steps * n * 4,
           "%s: payload %llu bytes, expected %llu", ops->name,
           (unsigned long long)cx->stats.payload_bytes, (unsigned long long)want_bytes);
    codec_bucket_free(&cb);
    for (int r = 0; r < p; r++)
        codec_destroy(loc[r]);
    codec_destroy(cx);
    free(loc), free(g), free(ref), free(v), free(pay);
}

// A communicator of two ranks in one process for the all-gather of payloads: rank 0 sends its
// own, "rank 1" a payload given by the test; everything else is missing.
typedef struct {
    const unsigned char *other;
    size_t other_len;
} fake_peer;
static ts_status fake_all_gather_v(comm *c, const void *block, size_t bytes, void *out, size_t cap,
                                   size_t *lens, comm_req **req) {
    fake_peer *f = c->impl;
    if (bytes + f->other_len > cap) return TS_ERR_INTERNAL;
    memcpy(out, block, bytes);
    memcpy((unsigned char *)out + bytes, f->other, f->other_len);
    lens[0] = bytes;
    lens[1] = f->other_len;
    *req = (comm_req *)f; // a token: test and wait say it is done
    return TS_OK;
}
static ts_status fake_test(comm *c, comm_req *req, int *done) {
    (void)c, (void)req;
    *done = 1;
    return TS_OK;
}
static ts_status fake_wait(comm *c, comm_req *req) { return (void)c, (void)req, TS_OK; }

// One bucket through the fake communicator, "rank 1" sending `other`: the status, and the error
// lines in *lines (free()).
static ts_status fake_trip(codec *cx, const unsigned char *other, size_t len, float *g, size_t n,
                           char **lines) {
    fake_peer f = {other, len};
    comm fc;
    memset(&fc, 0, sizeof fc);
    fc.name = "fake";
    fc.size = 2;
    fc.start_all_gather_v = fake_all_gather_v;
    fc.test = fake_test;
    fc.wait = fake_wait;
    fc.impl = &f;
    codec_bucket cb;
    memset(&cb, 0, sizeof cb);
    capture_begin();
    ts_status st = codec_bucket_start(cx, &fc, &cb, 3, g, n, 0);
    if (st == TS_OK) st = codec_bucket_wait(cx, &fc, &cb);
    *lines = capture_end();
    codec_bucket_free(&cb);
    return st;
}

// Payloads that do not fit the bucket's split are refused (TS_ERR_INPUT, one error line), never
// read past: with comm.zstd a bad first byte, no frame, a frame too large, cut or doubled; cut
// short, lengths that do not add up, a part longer than its codec
// allows.
static void test_damaged(comm *c) {
    if (c->rank != 0) return;
    const size_t first = 3, n = DENSE_N - 1 - first;
    codec_params dp;
    dense_params(&dp);
    codec *cx = NULL;
    EXPECT(codec_create_with_params(&cx, codec_find("int8"), 0, 2, DENSE_N, &dp) == TS_OK,
           "int8 not created");
    float *g = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        g[i] = sparse(0, 2, first + i);
    // a good payload: this rank's own, taken from a trip with an empty peer (refused: too short)
    fake_peer f = {NULL, 0};
    comm fc;
    memset(&fc, 0, sizeof fc);
    fc.size = 2;
    fc.start_all_gather_v = fake_all_gather_v;
    fc.impl = &f;
    codec_bucket cb;
    memset(&cb, 0, sizeof cb);
    EXPECT(codec_bucket_start(cx, &fc, &cb, first, g, n, 0) == TS_OK, "int8: not started");
    size_t len = cb.payload_len;
    unsigned char *good = malloc(len + 1), *bad = malloc(len + 1);
    memcpy(good, cb.payload, len);
    codec_bucket_free(&cb);
    char *lines = NULL;
    EXPECT(fake_trip(cx, good, len, g, n, &lines) == TS_OK && lines[0] == '\0',
           "a good payload refused: %s", lines);
    free(lines);
    // 8 * 3 bytes of lengths, then the first coded part's payload
    struct {
        const char *what;
        size_t len;
        int field; // -1: none; else the length field to add `delta` to
        int64_t delta;
        const char *line;
    } cases[] = {
        {"cut short", len - 1, -1, 0, "its parts' lengths"},
        {"a length one less", len, 0, -1, "its parts' lengths"},
        {"a length 2^60", len, 1, (int64_t)1 << 60, "a part's payload too long"},
        {"fewer bytes than the dense values", 20, -1, 0, "shorter than its lengths"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(bad, good, len);
        bad[len] = 0;
        if (cases[k].field >= 0) {
            unsigned char *fp = bad + 8 * cases[k].field;
            uint64_t v = 0;
            for (int b = 0; b < 8; b++)
                v |= (uint64_t)fp[b] << (8 * b);
            v += (uint64_t)cases[k].delta;
            for (int b = 0; b < 8; b++)
                fp[b] = (unsigned char)(v >> (8 * b));
        }
        ts_status st = fake_trip(cx, bad, cases[k].len, g, n, &lines);
        EXPECT(st == TS_ERR_INPUT && count_substr(lines, "error") == 1 &&
                   count_substr(lines, "the payload of rank 1 for values 3..19277 is damaged") ==
                       1 &&
                   strstr(lines, cases[k].line),
               "%s: %s, lines: %s", cases[k].what, ts_status_name(st), lines);
        free(lines);
    }
    // with comm.zstd: a first byte, then the body or a zstd frame of it
    codec *zx = NULL;
    dp.zstd = 1;
    EXPECT(codec_create_with_params(&zx, codec_find("int8"), 0, 2, DENSE_N, &dp) == TS_OK,
           "int8 not created");
    size_t bound = ZSTD_compressBound(len + 1);
    unsigned char *zeros = calloc(len + 1, 1), *frames = malloc(2 * bound + 1);
    memcpy(bad + 1, good, len); // [0][the good body, a length one less]
    bad[0] = 0;
    bad[1] -= 1;
    struct {
        const char *what;
        int kind;                  // the first byte
        const unsigned char *body; // compressed (kind 1) or not
        size_t len;
        int cut, split; // bytes cut off the frame; 1: two frames, of the body's halves
        const char *line;
    } zcases[] = {
        {"raw", 0, good, len, 0, 0, NULL},
        {"compressed", 1, good, len, 0, 0, NULL},
        {"empty", -1, NULL, 0, 0, 0, "empty"},
        {"first byte 2", 2, good, len, 0, 0, "its first byte is 2"},
        {"no frame", 1, NULL, 0, 0, 0, "not a zstd frame"},
        {"a frame too large", 1, zeros, len + 1, 0, 0, "more than the"},
        {"a cut frame", 1, good, len, 1, 0, "zstd: "},
        {"two frames", 1, good, len, 0, 1, "zstd frames of"},
        {"a raw body whose lengths do not add up", 0, bad + 1, len, 0, 0, "parts' lengths"},
        {"a frame of it", 1, bad + 1, len, 0, 0, "parts' lengths"},
    };
    for (size_t k = 0; k < sizeof zcases / sizeof zcases[0]; k++) {
        size_t flen = 0;
        if (zcases[k].kind >= 0) frames[flen++] = (unsigned char)zcases[k].kind;
        if (zcases[k].kind != 1) {
            if (zcases[k].len) memcpy(frames + flen, zcases[k].body, zcases[k].len);
            flen += zcases[k].len;
        } else if (!zcases[k].body) { // the good body, uncompressed, behind a 1
            memcpy(frames + flen, good, len);
            flen += len;
        } else {
            size_t half = zcases[k].split ? zcases[k].len / 2 : zcases[k].len;
            flen += ZSTD_compress(frames + flen, bound, zcases[k].body, half, 1);
            if (zcases[k].split)
                flen += ZSTD_compress(frames + flen, bound, zcases[k].body + half,
                                      zcases[k].len - half, 1);
            flen -= (size_t)zcases[k].cut;
        }
        ts_status st = fake_trip(zx, frames, flen, g, n, &lines);
        if (!zcases[k].line)
            EXPECT(st == TS_OK && lines[0] == '\0', "zstd, %s: %s, lines: %s", zcases[k].what,
                   ts_status_name(st), lines);
        else
            EXPECT(st == TS_ERR_INPUT && count_substr(lines, "error") == 1 &&
                       count_substr(lines,
                                    "the payload of rank 1 for values 3..19277 is damaged") == 1 &&
                       strstr(lines, zcases[k].line),
                   "zstd, %s: %s, lines: %s", zcases[k].what, ts_status_name(st), lines);
        free(lines);
    }
    free(zeros), free(frames);
    codec_destroy(zx);
    free(good), free(bad), free(g);
    codec_destroy(cx);
}

// ---------------------------------------------------------------------------------------------
// powersgd

// A table of PSGD_N values for rank 4 and dense_below 512: three matrices (coded), a vector, a
// matrix too thin for rank 4 and a small one (dense).
#define PSGD_N 3964
#define PSGD_R 4
static const codec_tensor psgd_table[] = {
    {0, 40, 30}, {1200, 64, 1}, {1264, 3, 200}, {1864, 10, 10}, {1964, 24, 50}, {3164, 50, 16},
};
#define PSGD_T ((int)(sizeof psgd_table / sizeof psgd_table[0]))
static int psgd_coded(int k) { return k == 0 || k == 4 || k == 5; }

static codec_params psgd_params(void) {
    codec_params p;
    codec_params_default(&p);
    p.dense_below = 512;
    p.powersgd_rank = PSGD_R;
    p.tensors = psgd_table;
    p.n_tensors = PSGD_T;
    return p;
}

// the tensor value i is in (-1: none)
static int psgd_tensor_of(size_t i) {
    for (int k = 0; k < PSGD_T; k++)
        if (i >= psgd_table[k].offset &&
            i < psgd_table[k].offset + psgd_table[k].rows * psgd_table[k].cols)
            return k;
    return -1;
}

// Rank `rank`'s gradient: in the coded matrices, (rank + 1) A B^T with A (rows x 4) and B
// (cols x 4) the same on every rank, so that the sum over ranks has rank 4 (lowrank 1); else
// values of all signs and scales; elsewhere exact values.
static float psgd_input(int rank, int step, size_t i, int lowrank) {
    int k = psgd_tensor_of(i);
    if (k < 0 || !psgd_coded(k)) return exact(rank, i);
    if (!lowrank) return quant_input(rank, step, i);
    const codec_tensor *t = &psgd_table[k];
    size_t row = (i - t->offset) / t->cols, col = (i - t->offset) % t->cols;
    double v = 0;
    for (int j = 0; j < PSGD_R; j++)
        v += (double)quant_input(7, j, t->offset + row) * quant_input(9, j, t->offset + col);
    return (float)((rank + 1) * v);
}

// the floats a bucket [first, end) sends: r (rows + cols) per whole coded matrix, 1 per other
// value
static size_t psgd_floats(size_t first, size_t end) {
    size_t floats = 0;
    for (size_t i = first; i < end; i++) {
        int k = psgd_tensor_of(i);
        const codec_tensor *t = k >= 0 ? &psgd_table[k] : NULL;
        int whole = t && t->offset >= first && t->offset + t->rows * t->cols <= end;
        if (!t || !psgd_coded(k) || !whole)
            floats++;
        else if (i == t->offset)
            floats += PSGD_R * (t->rows + t->cols);
    }
    return floats;
}

// whether every rank holds rank 0's n values, bit for bit
static int same_on_all_ranks(comm *c, const float *v, size_t n) {
    float *zero = malloc(n * sizeof(float) + 4);
    memcpy(zero, v, n * sizeof(float));
    int same = c->broadcast(c, zero, n * sizeof(float), 0) == TS_OK &&
               memcmp(zero, v, n * sizeof(float)) == 0;
    free(zero);
    int bad = !same;
    c->all_reduce_max_i32(c, &bad, 1);
    return !bad;
}

// the codec's error feedback (its "residual" array) summed over ranks
static void psgd_residual_sum(comm *c, const codec *cx, float *sum) {
    unsigned char *blob = NULL;
    size_t len = 0, pos = 0, bytes = 0;
    char name[CODEC_STATE_NAME_MAX + 1];
    const unsigned char *data = NULL;
    EXPECT(codec_state_pack(cx, &blob, &len) == TS_OK &&
               codec_state_next(blob, len, &pos, name, &data, &bytes, "state") == 1 &&
               strcmp(name, "residual") == 0 && bytes == cx->n * sizeof(float),
           "powersgd: no residual array first in its state");
    if (!g_failures) memcpy(sum, data, bytes);
    free(blob);
    c->all_reduce_sum_f32(c, sum, cx->n);
}

// One bucket [first, end) over `steps` steps: with low-rank inputs, the whole matrices come out
// exact (to rounding) and leave (next to) no error feedback; with any inputs, the sums of the
// results over the steps are the sums of the inputs less the ranks' error feedback; dense values
// (small tensors, thin ones, vectors, pieces of matrices the bucket cuts) are the exact sum;
// every rank holds the same bits; the bytes are the formula's; and the state survives a round
// trip (a codec loaded from it takes the next step as the original does).
static void test_powersgd(comm *c, size_t first, size_t end, int lowrank, int scatter) {
    const int p = c->size, steps = lowrank ? 1 : 4;
    const size_t n = end - first;
    codec_params pp = psgd_params();
    codec *cx = NULL, *back = NULL;
    EXPECT(codec_create_params(&cx, "powersgd", c->rank, p, PSGD_N, &pp) == TS_OK &&
               codec_has_state(cx) && cx->ops->wire == CODEC_WIRE_ROUNDS,
           "powersgd not created");
    if (g_failures) return;
    float *g = malloc(n * sizeof(float) + 4), *out = calloc(n + 1, sizeof(float));
    float *res = malloc(PSGD_N * sizeof(float));
    double *in = calloc(n + 1, sizeof(double)), *sum_abs = calloc(n + 1, sizeof(double));
    codec_bucket cb;
    memset(&cb, 0, sizeof cb);
    size_t far = 0, bad_dense = 0, differ = 0;
    double big = 0, worst = 0;
    for (int s = 0; s < steps; s++) {
        for (size_t i = 0; i < n; i++) {
            g[i] = psgd_input(c->rank, s, first + i, lowrank);
            for (int r = 0; r < p; r++) {
                float v = psgd_input(r, s, first + i, lowrank);
                in[i] += v;
                sum_abs[i] += fabs(v);
                big = fmax(big, fabs(v));
            }
        }
        ts_status st = codec_bucket_start(cx, c, &cb, first, g, n, scatter);
        int done = 0;
        for (int k = 0; st == TS_OK && !done && k < 3; k++) // test a few times, then wait
            st = codec_bucket_test(cx, c, &cb, &done);
        if (st == TS_OK && !done) st = codec_bucket_wait(cx, c, &cb);
        EXPECT(st == TS_OK, "powersgd [%zu, %zu) step %d: %s", first, end, s, ts_status_name(st));
        differ += !same_on_all_ranks(c, g, n);
        for (size_t i = 0; i < n; i++) {
            out[i] += g[i];
            sum_abs[i] += fabs(g[i]);
            int k = psgd_tensor_of(first + i);
            if (k < 0 || !psgd_coded(k) || psgd_floats(first, end) == n ||
                psgd_table[k].offset < first ||
                psgd_table[k].offset + psgd_table[k].rows * psgd_table[k].cols > end) {
                float want = 0;
                for (int r = 0; r < p; r++)
                    want += psgd_input(r, s, first + i, lowrank);
                bad_dense += g[i] != want;
            }
        }
    }
    psgd_residual_sum(c, cx, res);
    // a projection's rounding scales with its matrix, not with each value: the tolerance is the
    // largest magnitude in the value's tensor
    double *scale = calloc(PSGD_T + 1, sizeof(double));
    for (size_t i = 0; i < n; i++)
        scale[psgd_tensor_of(first + i) + 1] =
            fmax(scale[psgd_tensor_of(first + i) + 1], sum_abs[i]);
    for (size_t i = 0; i < n; i++) {
        double err = fabs(out[i] - (in[i] - res[first + i]));
        double tol =
            psgd_tensor_of(first + i) < 0 ? sum_abs[i] : scale[psgd_tensor_of(first + i) + 1];
        worst = fmax(worst, err / (tol + 1e-30));
        far += err > 1e-5 * tol + 1e-30;
        if (lowrank) far += fabs(res[first + i]) > 1e-4 * big;
    }
    EXPECT(far == 0,
           "powersgd [%zu, %zu) lowrank %d: %zu values where the results != inputs - error "
           "feedback (or, low rank, an error feedback left), worst %.3g",
           first, end, lowrank, far, worst);
    EXPECT(bad_dense == 0, "powersgd [%zu, %zu): %zu dense values are not the exact sum", first,
           end, bad_dense);
    EXPECT(differ == 0, "powersgd [%zu, %zu): the ranks hold different bits in %zu steps", first,
           end, differ);
    uint64_t floats = psgd_floats(first, end);
    EXPECT(cx->stats.payload_bytes == steps * 4 * floats && cx->stats.raw_bytes == steps * 4 * n,
           "powersgd [%zu, %zu): %llu bytes over %d steps, formula %llu each", first, end,
           (unsigned long long)cx->stats.payload_bytes, steps, (unsigned long long)(4 * floats));
    // state: packed, unpacked into a fresh codec, packed again the same; then one more step each
    unsigned char *blob = NULL, *blob2 = NULL;
    size_t len = 0, len2 = 0;
    EXPECT(codec_create_params(&back, "powersgd", c->rank, p, PSGD_N, &pp) == TS_OK &&
               codec_state_pack(cx, &blob, &len) == TS_OK &&
               codec_state_unpack(back, blob, len, "blob") == TS_OK &&
               codec_state_pack(back, &blob2, &len2) == TS_OK && len == len2 &&
               memcmp(blob, blob2, len) == 0,
           "powersgd: state not the same after save and load");
    codec_bucket cb2;
    memset(&cb2, 0, sizeof cb2);
    float *g2 = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++)
        g[i] = g2[i] = psgd_input(c->rank, steps, first + i, lowrank);
    ts_status st = codec_bucket_start(cx, c, &cb, first, g, n, scatter);
    if (st == TS_OK) st = codec_bucket_wait(cx, c, &cb);
    if (st == TS_OK) st = codec_bucket_start(back, c, &cb2, first, g2, n, scatter);
    if (st == TS_OK) st = codec_bucket_wait(back, c, &cb2);
    free(blob), free(blob2);
    blob = blob2 = NULL;
    EXPECT(st == TS_OK && memcmp(g, g2, n * sizeof(float)) == 0 &&
               codec_state_pack(cx, &blob, &len) == TS_OK &&
               codec_state_pack(back, &blob2, &len2) == TS_OK && len == len2 &&
               memcmp(blob, blob2, len) == 0,
           "powersgd: the loaded codec's next step differs from the original's (%s)",
           ts_status_name(st));
    free(blob), free(blob2);
    codec_bucket_free(&cb), codec_bucket_free(&cb2);
    codec_destroy(cx), codec_destroy(back);
    free(g), free(g2), free(out), free(res), free(in), free(sum_abs), free(scale);
}

// The reducer with powersgd: buckets cut at tensor boundaries (the layout of other codecs as it
// always was), several in flight while "backward" reports progress, each bucket's result the
// one the codec gives it alone, bit for bit, and low-rank matrices exact.
static void test_powersgd_reducer(comm *c, int zero) {
    codec_params pp = psgd_params();
    codec *cx = NULL, *alone = NULL, *sp = NULL;
    EXPECT(codec_create_params(&cx, "powersgd", c->rank, c->size, PSGD_N, &pp) == TS_OK &&
               codec_create_params(&alone, "powersgd", c->rank, c->size, PSGD_N, &pp) == TS_OK &&
               codec_create_with_params(&sp, &sparse_ops, c->rank, c->size, PSGD_N, &pp) == TS_OK,
           "codecs not created");
    if (g_failures) return;
    float *g = malloc(PSGD_N * sizeof(float)), *h = malloc(PSGD_N * sizeof(float));
    for (size_t i = 0; i < PSGD_N; i++)
        g[i] = h[i] = psgd_input(c->rank, 0, i, 1);
    reducer r, rs;
    const double mb = 1310 * 4 / 1048576.0; // 1310 values
    ts_status st = reducer_create(&r, c, cx, backend_cpu(), g, PSGD_N, mb, zero, 1);
    if (st == TS_OK) st = reducer_create(&rs, c, sp, backend_cpu(), h, PSGD_N, mb, zero, 1);
    // whole tensors, from the end: [3164, 3964), [1864, 3164), [1200, 1864), [0, 1200); for
    // another codec every 1310 values from the end, as always
    const size_t want[] = {3164, 1864, 1200, 0};
    EXPECT(st == TS_OK && r.n_buckets == 4 && rs.n_buckets == 4, "%s: %d and %d buckets",
           ts_status_name(st), r.n_buckets, rs.n_buckets);
    for (int b = 0; b < r.n_buckets && b < 4 && !g_failures; b++) {
        size_t per_first = PSGD_N > 1310 * (size_t)(b + 1) ? PSGD_N - 1310 * (size_t)(b + 1) : 0;
        EXPECT(r.buckets[b].first == want[b] && rs.buckets[b].first == per_first,
               "bucket %d starts at %zu (want %zu), another codec's at %zu (want %zu)", b,
               r.buckets[b].first, want[b], rs.buckets[b].first, per_first);
    }
    reducer_begin(&r);
    // backward: the last two buckets are ready, then polled twice more (their rounds advance),
    // then everything
    if (st == TS_OK) st = reducer_grads_ready(&r, 1864);
    if (st == TS_OK) st = reducer_grads_ready(&r, 1864);
    if (st == TS_OK) st = reducer_grads_ready(&r, 1200);
    if (st == TS_OK) st = reducer_grads_ready(&r, 1200);
    if (st == TS_OK) st = reducer_finish(&r);
    EXPECT(st == TS_OK, "reducer with powersgd: %s", ts_status_name(st));
    // each bucket alone through a second codec: the same bits
    float *a = malloc(PSGD_N * sizeof(float));
    size_t bad_alone = 0, far = 0;
    double big = 0;
    for (size_t i = 0; i < PSGD_N; i++) {
        a[i] = psgd_input(c->rank, 0, i, 1);
        big = fmax(big, fabs(psgd_input(c->size - 1, 0, i, 1)) * c->size);
    }
    for (int b = 0; b < 4 && st == TS_OK; b++) {
        codec_bucket cb;
        memset(&cb, 0, sizeof cb);
        st = codec_bucket_start(alone, c, &cb, want[b], a + want[b],
                                (b ? want[b - 1] : PSGD_N) - want[b], zero);
        if (st == TS_OK) st = codec_bucket_wait(alone, c, &cb);
        codec_bucket_free(&cb);
    }
    for (size_t i = 0; i < PSGD_N; i++) {
        float sum = 0;
        for (int k = 0; k < c->size; k++)
            sum += psgd_input(k, 0, i, 1);
        bad_alone += c->size > 1 && memcmp(&a[i], &g[i], 4) != 0; // 1 rank: no codec at all
        far += fabs(g[i] - sum) > 1e-4 * big;
    }
    EXPECT(st == TS_OK && bad_alone == 0,
           "reducer with powersgd, zero %d: %zu values differ from each bucket alone (%s)", zero,
           bad_alone, ts_status_name(st));
    EXPECT(far == 0, "reducer with powersgd, zero %d: %zu values far from the low-rank sum", zero,
           far);
    EXPECT(same_on_all_ranks(c, g, PSGD_N), "reducer with powersgd: ranks differ");
    reducer_destroy(&r), reducer_destroy(&rs);
    codec_destroy(cx), codec_destroy(alone), codec_destroy(sp);
    free(g), free(h), free(a);
}

// ---------------------------------------------------------------------------------------------
// topk (codec_topk.c), its payloads read here by a parser of their own from the layout in the
// codec's header comment

// a gradient with ties: the quant inputs at odd steps; at even steps three magnitudes only (at
// step 0, with no residual yet, ties at the cut of every bucket)
static float topk_input(int rank, int step, size_t i) {
    float v = quant_input(rank, step, i);
    if (step % 2 == 1 || v == 0.0f) return v;
    return copysignf(ldexpf(1.0f, (int)(i % 3)), v);
}

static size_t topk_want_k(double fraction, size_t n) {
    if (n == 0) return 0;
    size_t k = (size_t)ceil(fraction * (double)n);
    return k < 1 ? 1 : k > n ? n : k;
}

static size_t topk_values_formula(int bits, size_t k) {
    return bits == 2 ? 4 * ((k + 63) / 64) + (k + 3) / 4 : 4 * k;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void put_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static size_t leb128_put(unsigned char *p, uint64_t v) {
    size_t n = 0;
    for (; v >= 0x80; v >>= 7)
        p[n++] = (unsigned char)(0x80 | (v & 0x7f));
    p[n++] = (unsigned char)v;
    return n;
}
static size_t leb128_len(uint64_t v) {
    unsigned char b[10];
    return leb128_put(b, v);
}

// a payload taken apart
typedef struct {
    size_t k, len;     // values sent, bytes of the index stream as sent
    unsigned flags;    // 1: zstd, 2: int2 values
    size_t varint_len; // bytes of the varints (decompressed when zstd)
    size_t *idx;       // the k indices (free)
    const unsigned char *values;
} topk_view;

static int topk_view_of(const unsigned char *p, size_t bytes, topk_view *v) {
    memset(v, 0, sizeof *v);
    if (bytes < 9) return 0;
    v->k = le32(p);
    v->flags = p[4];
    v->len = le32(p + 5);
    if (v->len > bytes - 9) return 0;
    const unsigned char *s = p + 9;
    unsigned char *raw = NULL;
    size_t rlen = v->len;
    if (v->flags & 1) {
        unsigned long long size = ZSTD_getFrameContentSize(s, v->len);
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > 1u << 30)
            return 0;
        raw = malloc((size_t)size + 1);
        size_t got = ZSTD_decompress(raw, (size_t)size, s, v->len);
        if (ZSTD_isError(got) || got != size) {
            free(raw);
            return 0;
        }
        s = raw;
        rlen = (size_t)size;
    }
    v->varint_len = rlen;
    v->idx = malloc((v->k + 1) * sizeof *v->idx);
    size_t at = 0, index = 0;
    for (size_t j = 0; j < v->k; j++) {
        uint64_t d = 0;
        unsigned char b;
        int shift = 0;
        do {
            if (at >= rlen || shift > 28) {
                free(raw);
                return 0;
            }
            b = s[at++];
            d |= (uint64_t)(b & 0x7f) << shift;
            shift += 7;
        } while (b & 0x80);
        index = j ? index + (size_t)d : (size_t)d;
        v->idx[j] = index;
    }
    free(raw);
    v->values = p + 9 + v->len;
    return at == rlen;
}

// value j of a view: fp32, or a 2-bit code times its block's scale
static float topk_view_value(const topk_view *v, size_t j) {
    float f;
    uint32_t bits;
    if (!(v->flags & 2)) {
        bits = le32(v->values + 4 * j);
        memcpy(&f, &bits, 4);
        return f;
    }
    bits = le32(v->values + 4 * (j / 64));
    memcpy(&f, &bits, 4);
    int q = (v->values[4 * ((v->k + 63) / 64) + j / 4] >> (2 * (j % 4))) & 3;
    return isnan(f) ? NAN : (float)(q == 3 ? -1 : q) * f;
}

// the k largest |x| by brute force: every value sorted (not finite first, then by magnitude, ties
// to the lower index), the first k, in increasing index order
typedef struct {
    float x;
    size_t i;
} topk_ranked;
static int topk_ranked_cmp(const void *a, const void *b) {
    const topk_ranked *p = a, *q = b;
    int pn = !isfinite(p->x), qn = !isfinite(q->x);
    if (pn != qn) return pn ? -1 : 1;
    if (!pn && fabsf(p->x) != fabsf(q->x)) return fabsf(p->x) > fabsf(q->x) ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}
static int size_cmp(const void *a, const void *b) {
    size_t p = *(const size_t *)a, q = *(const size_t *)b;
    return p < q ? -1 : p > q;
}
static void topk_brute(const float *x, size_t n, size_t k, size_t *out) {
    topk_ranked *r = malloc((n + 1) * sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = (topk_ranked){x[i], i};
    qsort(r, n, sizeof *r, topk_ranked_cmp);
    for (size_t j = 0; j < k; j++)
        out[j] = r[j].i;
    qsort(out, k, sizeof *out, size_cmp);
    free(r);
}

static codec *topk_create(int rank, int size, size_t n, int bits, double fraction) {
    codec_params prm;
    codec_params_default(&prm);
    prm.topk_fraction = fraction;
    prm.topk_value_bits = bits;
    prm.zstd = 0; // topk's own layout on the wire (the layer's framing is tested with test_quant)
    codec *cx = NULL;
    EXPECT(codec_create_params(&cx, "topk", rank, size, n, &prm) == TS_OK && codec_has_state(cx),
           "topk not created, or without state");
    return cx;
}

// Like test_quant: every rank simulates every rank's codec and checks the collective against it
// bit for bit (and against rank 0's result); its own payload holds exactly the k largest |x| in
// the documented layout and length, decodes to x (fp32) or within half a block's scale of it
// (int2) at those places and nothing elsewhere, the residual is x less what was decoded, the mass
// is conserved over the steps, and the state survives a save/load round trip.
static void test_topk(comm *c, int bits, double fraction, size_t n) {
    const int p = c->size, steps = 4;
    const size_t first = 3, total = n + first, k = topk_want_k(fraction, n);
    codec *cx = topk_create(c->rank, p, total, bits, fraction),
          **loc = calloc((size_t)p, sizeof *loc);
    for (int r = 0; r < p; r++)
        loc[r] = topk_create(r, p, total, bits, fraction);
    if (g_failures) return;
    const codec_ops *ops = cx->ops;
    EXPECT(ops->wire == CODEC_WIRE_GATHER && codec_topk_k(fraction, n) == k,
           "topk n=%zu f=%g: wire %d, k %zu (want %zu)", n, fraction, (int)ops->wire,
           codec_topk_k(fraction, n), k);
    size_t most = ops->payload_bytes(cx, n);
    unsigned char *pay = malloc((size_t)p * most + 1);
    float *g = malloc(n * sizeof(float) + 4), *x = malloc(n * sizeof(float) + 4);
    float *ref = malloc(n * sizeof(float) + 4), *dec = malloc(n * sizeof(float) + 4);
    float *res = malloc(total * sizeof(float)), *res2 = malloc(total * sizeof(float));
    double *sum_in = calloc(n + 1, sizeof(double)), *sum_dec = calloc(n + 1, sizeof(double));
    double *sum_abs = calloc(n + 1, sizeof(double));
    size_t *want = malloc((k + 1) * sizeof *want);
    char *chosen = malloc(n + 1);
    codec_bucket cb;
    memset(&cb, 0, sizeof cb);
    size_t wrong_pick = 0, bad_layout = 0, far = 0, bad_res = 0, bad_bits = 0, unlike0 = 0;
    uint64_t sent = 0;
    for (int s = 0; s < steps && !g_failures; s++) {
        memset(ref, 0, n * sizeof(float));
        for (int r = 0; r < p; r++) {
            for (size_t i = 0; i < n; i++)
                g[i] = topk_input(r, s, i);
            if (r == c->rank) {
                quant_residual(loc[r], res);
                for (size_t i = 0; i < n; i++)
                    x[i] = g[i] + res[first + i];
            }
            unsigned char *mine = pay + (size_t)r * most;
            size_t len = 0;
            EXPECT(ops->encode(loc[r], first, g, n, mine, &len) == TS_OK && len <= most,
                   "topk n=%zu: encoded into %zu bytes, at most %zu", n, len, most);
            if (g_failures) break;
            EXPECT(ops->decode(loc[r], first, mine, len, ref, n) == TS_OK, "topk: decode failed");
            if (r != c->rank) continue;
            sent += n ? len : 0; // an empty bucket sends nothing: the codec is not called
            // the choice and the layout
            topk_view v;
            int ok = topk_view_of(mine, len, &v);
            topk_brute(x, n, k, want);
            size_t varints = 0;
            for (size_t j = 0; j < k; j++)
                varints += leb128_len(j ? want[j] - want[j - 1] : want[0]);
            wrong_pick += !ok || v.k != k || memcmp(v.idx, want, k * sizeof *want) != 0;
            bad_layout += !ok || (v.flags & ~1u) != (bits == 2 ? 2u : 0u) ||
                          v.varint_len != varints ||
                          (v.flags & 1 ? v.len >= varints : v.len != varints) ||
                          len != 9 + v.len + topk_values_formula(bits, k) ||
                          len != codec_topk_payload_bytes(bits, k, v.len);
            // this rank's payload alone: x (or near it) where chosen, nothing elsewhere
            memset(dec, 0, n * sizeof(float));
            ops->decode(loc[r], first, mine, len, dec, n);
            quant_residual(loc[r], res2);
            memset(chosen, 0, n + 1);
            for (size_t j = 0; j < k; j++) {
                chosen[want[j]] = 1;
                float amax = 0.0f;
                for (size_t b = j / 64 * 64; b < k && b < j / 64 * 64 + 64; b++)
                    amax = fmaxf(amax, fabsf(x[want[b]]));
                float d = dec[want[j]], ulp = nextafterf(fabsf(d), INFINITY) - fabsf(d);
                far += ok && d != topk_view_value(&v, j);
                far += bits == 32 ? d != x[want[j]] : fabsf(x[want[j]] - d) > amax / 2 + 2 * ulp;
            }
            for (size_t i = 0; i < n; i++) {
                far += !chosen[i] && dec[i] != 0.0f;
                bad_res += res2[first + i] != (chosen[i] ? x[i] - dec[i] : x[i]);
                sum_in[i] += g[i];
                sum_dec[i] += dec[i];
                sum_abs[i] += fabs(g[i]) + fabs(dec[i]) + fabs(x[i]);
            }
            free(v.idx);
        }
        // the real collective: the reference on every rank, and rank 0's bits
        for (size_t i = 0; i < n; i++)
            g[i] = topk_input(c->rank, s, i);
        ts_status st = codec_bucket_start(cx, c, &cb, first, g, n, s % 2);
        if (st == TS_OK) st = codec_bucket_wait(cx, c, &cb);
        EXPECT(st == TS_OK, "topk n=%zu step %d: %s", n, s, ts_status_name(st));
        bad_bits += memcmp(g, ref, n * sizeof(float)) != 0;
        memcpy(dec, g, n * sizeof(float));
        EXPECT(c->broadcast(c, dec, n * sizeof(float), 0) == TS_OK, "broadcast failed");
        unlike0 += memcmp(dec, g, n * sizeof(float)) != 0;
    }
    const char *what = bits == 2 ? "int2" : "fp32";
    EXPECT(wrong_pick == 0, "topk %s n=%zu f=%g: %zu steps chose other than the %zu largest |x|",
           what, n, fraction, wrong_pick, k);
    EXPECT(bad_layout == 0, "topk %s n=%zu f=%g: %zu payloads off the layout or its length", what,
           n, fraction, bad_layout);
    EXPECT(far == 0, "topk %s n=%zu f=%g: %zu values decoded otherwise", what, n, fraction, far);
    EXPECT(bad_res == 0, "topk %s n=%zu f=%g: %zu residuals are not what the encoding kept back",
           what, n, fraction, bad_res);
    EXPECT(bad_bits == 0 && unlike0 == 0,
           "topk %s n=%zu on %d ranks: %zu steps differ from the payloads decoded in rank order, "
           "%zu from rank 0's result",
           what, n, p, bad_bits, unlike0);
    // mass: what was decoded over the steps is what came in, less what is still held back
    quant_residual(loc[c->rank], res);
    size_t lost = 0;
    for (size_t i = 0; i < n; i++)
        lost += fabs(sum_dec[i] - (sum_in[i] - res[first + i])) > 1e-6 * sum_abs[i] + 1e-30;
    EXPECT(lost == 0, "topk %s n=%zu: %zu values where decoded != input - residual", what, n, lost);
    quant_residual(cx, res2);
    EXPECT(memcmp(res, res2, total * sizeof(float)) == 0, "topk %s: the residuals differ", what);
    EXPECT(cx->stats.payload_bytes == sent && cx->stats.raw_bytes == (uint64_t)steps * n * 4,
           "topk %s n=%zu: payload %llu bytes counted, %llu sent", what, n,
           (unsigned long long)cx->stats.payload_bytes, (unsigned long long)sent);
    // save/load round trip: a fresh codec loaded from the state encodes as the original does
    codec *back = topk_create(c->rank, p, total, bits, fraction);
    unsigned char *blob = NULL, *blob2 = NULL;
    size_t len = 0, len2 = 0, l1 = 0, l2 = 0, l3 = 0;
    EXPECT(back && codec_state_pack(cx, &blob, &len) == TS_OK &&
               codec_state_unpack(back, blob, len, "blob") == TS_OK &&
               codec_state_pack(back, &blob2, &len2) == TS_OK && len == len2 &&
               memcmp(blob, blob2, len) == 0,
           "topk %s: state not the same after save and load", what);
    if (!g_failures) {
        for (size_t i = 0; i < n; i++)
            g[i] = topk_input(c->rank, steps, i);
        unsigned char *p1 = malloc(3 * most + 1), *p2 = p1 + most, *p3 = p2 + most;
        codec *fresh = topk_create(c->rank, p, total, bits, fraction);
        ops->encode(cx, first, g, n, p1, &l1);
        ops->encode(back, first, g, n, p2, &l2);
        ops->encode(fresh, first, g, n, p3, &l3);
        EXPECT(l1 == l2 && memcmp(p1, p2, l1) == 0, "topk %s: the loaded codec encodes otherwise",
               what);
        // with something held back (k < n), the residual changes what is sent
        EXPECT(k == n || n < 64 || l1 != l3 || memcmp(p1, p3, l3) != 0,
               "topk %s n=%zu: error feedback changes nothing", what, n);
        codec_destroy(fresh);
        free(p1);
    }
    free(blob), free(blob2);
    codec_destroy(back);
    codec_bucket_free(&cb);
    for (int r = 0; r < p; r++)
        codec_destroy(loc[r]);
    codec_destroy(cx);
    free(loc), free(pay), free(g), free(x), free(ref), free(dec), free(res), free(res2);
    free(sum_in), free(sum_dec), free(sum_abs), free(want), free(chosen);
}

// Values built so every sum is exact (a few binary orders of magnitude, small multiples): over
// the steps, what was decoded plus what is held back is what came in, to the bit, in both modes.
static void test_topk_exact(int bits) {
    const size_t n = 1000;
    const int steps = 6;
    codec *cx = topk_create(0, 2, n, bits, 0.05);
    if (g_failures) return;
    unsigned char *pay = malloc(cx->ops->payload_bytes(cx, n));
    float *g = malloc(n * sizeof(float)), *dec = calloc(n, sizeof(float));
    float *res = malloc(n * sizeof(float));
    double *in = calloc(n, sizeof(double));
    for (int s = 0; s < steps; s++) {
        for (size_t i = 0; i < n; i++) {
            g[i] = exact(s % 3, i + (size_t)s);
            in[i] += g[i];
        }
        size_t len = 0;
        EXPECT(cx->ops->encode(cx, 0, g, n, pay, &len) == TS_OK &&
                   cx->ops->decode(cx, 0, pay, len, dec, n) == TS_OK,
               "topk: step %d not encoded and decoded", s);
    }
    quant_residual(cx, res);
    size_t off = 0;
    for (size_t i = 0; i < n; i++)
        off += (double)dec[i] + (double)res[i] != in[i];
    EXPECT(off == 0, "topk %d-bit values: %zu values where decoded + residual != input, exactly",
           bits, off);
    codec_destroy(cx);
    free(pay), free(g), free(dec), free(res), free(in);
}

// Ties at the cut go to the lower index: magnitudes 1, 2, 4 in turn (or all zero), cut at every
// fraction, against the brute force.
static void test_topk_ties(void) {
    const size_t n = 1000;
    const double fractions[] = {0.001, 0.1, 0.3, 0.5, 0.9, 0.9995};
    float g[1000];
    size_t want[1000];
    for (int zero = 0; zero < 2; zero++)
        for (int f = 0; f < 6; f++) {
            codec *cx = topk_create(0, 2, n, 32, fractions[f]);
            if (g_failures) return;
            for (size_t i = 0; i < n; i++)
                g[i] = zero ? 0.0f : (i % 2 ? -1.0f : 1.0f) * ldexpf(1.0f, (int)(i % 3));
            unsigned char *pay = malloc(cx->ops->payload_bytes(cx, n));
            size_t len = 0, k = topk_want_k(fractions[f], n);
            topk_view v;
            EXPECT(cx->ops->encode(cx, 0, g, n, pay, &len) == TS_OK && topk_view_of(pay, len, &v),
                   "topk with ties: not encoded");
            if (g_failures) return;
            topk_brute(g, n, k, want);
            EXPECT(v.k == k && memcmp(v.idx, want, k * sizeof *want) == 0,
                   "topk f=%g%s: the ties at the cut did not go to the lower indices", fractions[f],
                   zero ? " (all zero)" : "");
            free(v.idx);
            free(pay);
            codec_destroy(cx);
        }
}

// Values that are not finite rank above all others (ties to the lower index), travel as they are
// (int2: their block as NaN) and leave no residual, sent or not.
static void test_topk_nonfinite(int bits) {
    const size_t n = 200;
    const size_t bad[5] = {10, 100, 120, 150, 199};
    const float badv[5] = {INFINITY, NAN, NAN, NAN, -INFINITY};
    for (int more = 0; more < 2; more++) { // k = 4 (not all of them) or 6 (all, and 1e30)
        codec *cx = topk_create(0, 2, n, bits, more ? 0.03 : 0.02);
        if (g_failures) return;
        unsigned char *pay = malloc(cx->ops->payload_bytes(cx, n));
        float g[200], dec[200] = {0}, res[200];
        for (size_t i = 0; i < n; i++)
            g[i] = (float)(i % 7) * 0.001f;
        g[5] = 1e30f;
        for (int j = 0; j < 5; j++)
            g[bad[j]] = badv[j];
        size_t len = 0;
        topk_view v;
        EXPECT(cx->ops->encode(cx, 0, g, n, pay, &len) == TS_OK &&
                   cx->ops->decode(cx, 0, pay, len, dec, n) == TS_OK && topk_view_of(pay, len, &v),
               "topk with values that are not finite: not encoded and decoded");
        if (g_failures) return;
        quant_residual(cx, res);
        size_t k = more ? 6 : 4;
        const size_t want[6] = {
            more ? 5 : 10, more ? 10 : 100, more ? 100 : 120, more ? 120 : 150, 150, 199};
        EXPECT(v.k == k && memcmp(v.idx, want, k * sizeof *want) == 0,
               "topk %d-bit, k %zu: chose %zu values, not the ones that are not finite first", bits,
               k, v.k);
        size_t off = 0;
        for (size_t i = 0; i < n; i++)
            off += !isfinite(res[i]) || (!isfinite(g[i]) && res[i] != 0.0f);
        for (size_t j = 0; j < k; j++) {
            float d = dec[want[j]], x = g[want[j]];
            off += bits == 2 ? !isnan(d) : !(isnan(x) ? isnan(d) : d == x);
        }
        off += res[5] != (more ? 0.0f : 1e30f); // sent with k = 6
        EXPECT(off == 0, "topk %d-bit, k %zu: %zu values decoded or held back wrongly", bits, k,
               off);
        free(v.idx);
        free(pay);
        codec_destroy(cx);
    }
}

// zstd on the index stream: it pays on a dense pick; the ratios go to the test's log. Two
// gradients: noise (magnitudes without order, the pick spread evenly) and the quant inputs (each
// block of 64 of one magnitude, the pick gathered in the largest blocks).
static void test_topk_zstd(comm *c) {
    const size_t n = 100000;
    const double fractions[3] = {0.01, 0.25, 1.0};
    float *g = malloc(n * sizeof(float));
    for (int blocky = 0; blocky < 2; blocky++)
        for (int f = 0; f < 3; f++) {
            codec *cx = topk_create(0, 2, n, 32, fractions[f]);
            if (g_failures) return;
            unsigned char *pay = malloc(cx->ops->payload_bytes(cx, n));
            for (size_t i = 0; i < n; i++) {
                uint32_t h = (uint32_t)(i * 2654435761u);
                h ^= h >> 15, h *= 0x2c1b3c6du, h ^= h >> 12;
                g[i] = blocky ? quant_input(0, 1, i) + 1e-9f : (float)(h % 1000003u) + 1.0f;
            }
            size_t len = 0;
            topk_view v;
            EXPECT(cx->ops->encode(cx, 0, g, n, pay, &len) == TS_OK && topk_view_of(pay, len, &v),
                   "topk f=%g: not encoded", fractions[f]);
            if (g_failures) return;
            if (c->rank == 0)
                printf("test_codec: topk of %zu values (%s), f=%g: %zu indices in %zu bytes of "
                       "varints, sent in %zu (%s, ratio %.2f)\n",
                       n, blocky ? "blocks" : "noise", fractions[f], v.k, v.varint_len, v.len,
                       v.flags & 1 ? "zstd" : "raw", (double)v.varint_len / (double)v.len);
            if (fractions[f] > 0.1)
                EXPECT((v.flags & 1) && 4 * v.len < 3 * v.varint_len,
                       "topk f=%g: zstd took the index stream from %zu to %zu bytes only",
                       fractions[f], v.varint_len, v.len);
            free(v.idx);
            free(pay);
            codec_destroy(cx);
        }
    free(g);
}

// a payload laid out by hand: header, index stream, values
static size_t topk_craft(unsigned char *out, size_t k, unsigned flags, const unsigned char *s,
                         size_t len, const unsigned char *values, size_t vlen) {
    put_le32(out, (uint32_t)k);
    out[4] = (unsigned char)flags;
    put_le32(out + 5, (uint32_t)len);
    memcpy(out + 9, s, len);
    memcpy(out + 9 + len, values, vlen);
    return 9 + len + vlen;
}

// decoded into a bucket of n: TS_OK and 1.0 at 10j + 3 for j < k (and nothing elsewhere), or
// refused: TS_ERR_INPUT, one error line naming the codec and holding `why`, nothing added
static void topk_expect(codec *cx, const unsigned char *pay, size_t len, size_t n, size_t k,
                        const char *why, const char *what) {
    float *g = calloc(n, sizeof(float));
    capture_begin();
    ts_status st = cx->ops->decode(cx, 0, pay, len, g, n);
    char *text = capture_end();
    size_t off = 0;
    for (size_t i = 0; i < n; i++)
        off += g[i] != (!why && i % 10 == 3 && i / 10 < k ? 1.0f : 0.0f);
    if (!why)
        EXPECT(st == TS_OK && off == 0 && text[0] == 0, "topk, %s: %s, %zu values off, log: %s",
               what, ts_status_name(st), off, text);
    else
        EXPECT(st == TS_ERR_INPUT && off == 0 && count_substr(text, "\n") == 1 &&
                   count_substr(text, "error: codec topk: a payload of ") == 1 && strstr(text, why),
               "topk, %s: %s, %zu values changed, log (want \"%s\"): %s", what, ts_status_name(st),
               off, why, text);
    free(text);
    free(g);
}

// a payload from another rank is checked before anything is added
static void test_topk_refused(void) {
    const size_t n = 1000, k = 63; // f = 1/16
    codec *fp = topk_create(0, 2, n, 32, 0.0625), *q2 = topk_create(0, 2, n, 2, 0.0625);
    if (g_failures) return;
    EXPECT(codec_topk_k(0.0625, n) == k, "k = %zu", codec_topk_k(0.0625, n));
    // indices 10j + 3, values 1.0: as fp32, and as 2-bit codes (1) under a scale of 1
    unsigned char s[400], zs[800], bad[400], vals[4 * 64], q[32], pay[2000], big[20000] = {0};
    size_t len = 0, vlen = 4 * k, qlen = 4 + (k + 3) / 4;
    for (size_t j = 0; j < k; j++)
        len += leb128_put(s + len, j ? 10 : 3);
    float one = 1.0f;
    uint32_t onebits;
    memcpy(&onebits, &one, 4);
    for (size_t j = 0; j < k; j++)
        put_le32(vals + 4 * j, onebits);
    put_le32(q, onebits);
    memset(q + 4, 0x55, qlen - 4);
    q[qlen - 1] = 0x15; // codes 62, 61, 60 are 1; the two bits after the last are zero
    size_t zlen = ZSTD_compress(zs, sizeof zs, s, len, 1);
    EXPECT(!ZSTD_isError(zlen), "zstd failed");
    size_t m;
    // what an encoder makes: accepted
    m = topk_craft(pay, k, 0, s, len, vals, vlen);
    topk_expect(fp, pay, m, n, k, NULL, "raw indices");
    size_t whole = m;
    m = topk_craft(pay, k, 1, zs, zlen, vals, vlen);
    topk_expect(fp, pay, m, n, k, NULL, "zstd indices");
    m = topk_craft(pay, k, 2, s, len, q, qlen);
    topk_expect(q2, pay, m, n, k, NULL, "int2 values");
    // cut anywhere, or a byte more
    m = topk_craft(pay, k, 0, s, len, vals, vlen);
    for (size_t cut = 0; cut < whole; cut += cut < 40 ? 1 : 37)
        topk_expect(fp, pay, cut, n, k, cut < 9 ? "shorter than the 9-byte header" : "header says",
                    "cut short");
    topk_expect(fp, pay, whole + 1, n, k, "header says", "a byte more");
    // the header
    m = topk_craft(pay, k, 4, s, len, vals, vlen);
    topk_expect(fp, pay, m, n, k, "unknown flags 0x04", "flags");
    m = topk_craft(pay, k, 2, s, len, vals, vlen);
    topk_expect(fp, pay, m, n, k, "values of 2 bits, this rank's are 32", "value mode");
    m = topk_craft(pay, k - 1, 0, s, len - 1, vals, vlen - 4);
    topk_expect(fp, pay, m, n, k, "62 values of a bucket of 1000, expected 63", "k");
    m = topk_craft(pay, k, 0, s, len, vals, vlen);
    put_le32(pay + 5, 100000);
    topk_expect(fp, pay, m, n, k, "header says", "stream length past the end");
    // the indices
    memcpy(bad, s, len);
    bad[len - 1] = 100;                          // the last index 3 + 61 * 10 + 100 = 713: in range
    bad[len - 1] = 0x80 | 0x10, bad[len] = 0x03; // 3 + 610 + 0x190 = 1013: out of range
    m = topk_craft(pay, k, 0, bad, len + 1, vals, vlen);
    topk_expect(fp, pay, m, n, k, "index 62 of 63 is 1013, out of a bucket of 1000 values",
                "index out of range");
    memcpy(bad, s, len);
    bad[5] = 0;
    m = topk_craft(pay, k, 0, bad, len, vals, vlen);
    topk_expect(fp, pay, m, n, k, "index 5 of 63 is not above the one before (43)",
                "index not increasing");
    bad[0] = 0x83, bad[1] = 0x00; // 3 in two bytes
    memcpy(bad + 2, s + 1, len - 1);
    m = topk_craft(pay, k, 0, bad, len + 1, vals, vlen);
    topk_expect(fp, pay, m, n, k, "index 0 of 63: its varint is cut short or malformed",
                "overlong varint");
    memcpy(bad, s, len);
    bad[len - 1] = 0x8a; // the last varint goes on past the stream
    m = topk_craft(pay, k, 0, bad, len, vals, vlen);
    topk_expect(fp, pay, m, n, k, "index 62 of 63: its varint is cut short", "varint cut");
    memcpy(bad, s, len);
    bad[len] = 1;
    m = topk_craft(pay, k, 0, bad, len + 1, vals, vlen);
    topk_expect(fp, pay, m, n, k, "1 bytes of the index stream after its 63 indices",
                "a varint more");
    // zstd frames
    m = topk_craft(pay, k, 1, s, len, vals, vlen);
    topk_expect(fp, pay, m, n, k, "not a zstd frame", "not zstd");
    m = topk_craft(pay, k, 1, zs, zlen - 1, vals, vlen);
    topk_expect(fp, pay, m, n, k, "not a zstd frame", "zstd frame cut");
    memcpy(bad, zs, zlen);
    bad[zlen] = 0;
    m = topk_craft(pay, k, 1, bad, zlen + 1, vals, vlen);
    topk_expect(fp, pay, m, n, k, "the zstd frame takes", "a byte after the frame");
    memcpy(bad, s, len);
    bad[len] = 1;
    size_t zl = ZSTD_compress(zs, sizeof zs, bad, len + 1, 1);
    m = topk_craft(pay, k, 1, zs, zl, vals, vlen);
    topk_expect(fp, pay, m, n, k, "1 bytes of the index stream after its 63 indices",
                "a varint more in the frame");
    zl = ZSTD_compress(zs, sizeof zs, s, len - 1, 1);
    m = topk_craft(pay, k, 1, zs, zl, vals, vlen);
    topk_expect(fp, pay, m, n, k, "index 62 of 63: its varint is cut short", "a varint less");
    zl = ZSTD_compress(zs, sizeof zs, big, sizeof big, 1);
    m = topk_craft(pay, k, 1, zs, zl, vals, vlen);
    topk_expect(fp, pay, m, n, k, "the zstd frame holds 20000 bytes, at most", "frame too big");
    // 2-bit values
    memcpy(bad, q, qlen);
    bad[4 + 7 / 4] = (unsigned char)((bad[4 + 7 / 4] & ~(3 << 6)) | (2 << 6)); // code 7: -2
    m = topk_craft(pay, k, 2, s, len, bad, qlen);
    topk_expect(q2, pay, m, n, k, "value 7 has the 2-bit code -2", "code -2");
    memcpy(bad, q, qlen);
    bad[qlen - 1] |= 0x80;
    m = topk_craft(pay, k, 2, s, len, bad, qlen);
    topk_expect(q2, pay, m, n, k, "bits set after the last 2-bit code", "padding");
    const float scales[2] = {-1.0f, INFINITY};
    for (int i = 0; i < 2; i++) {
        memcpy(bad, q, qlen);
        uint32_t sb;
        memcpy(&sb, &scales[i], 4);
        put_le32(bad, sb);
        m = topk_craft(pay, k, 2, s, len, bad, qlen);
        topk_expect(q2, pay, m, n, k, i ? "has a scale of inf" : "has a scale of -1", "scale");
    }
    codec_destroy(fp), codec_destroy(q2);
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
                for (int zstd = 0; zstd < 2; zstd++) {
                    test_wire(c, &sparse_ops, sizes[k], scatter, zstd);
                    test_wire(c, &blocks_ops, sizes[k], scatter, zstd);
                }
            }
        codec_params dp;
        dense_params(&dp);
        for (int zero = 0; zero < 2; zero++) {
            test_reducer(c, &sparse_ops, 20011, zero, NULL);
            test_reducer(c, &blocks_ops, 20011, zero, NULL);
            test_reducer(c, &sparse_ops, DENSE_N, zero, &dp);
            test_reducer(c, &blocks_ops, DENSE_N, zero, &dp);
        }
        for (int zero = 0; zero < 2; zero++) {
            test_dense(c, &sparse_ops, zero);
            test_dense(c, &blocks_ops, zero);
            test_dense(c, codec_find("int2"), zero);
            test_dense(c, codec_find("bf16"), zero);
        }
        test_damaged(c);
        test_state();
        test_state_ranks(c);
        const char *quant[] = {"bf16", "int8", "int4", "int2"};
        const int quant_bits[] = {16, 8, 4, 2};
        const size_t quant_sizes[] = {0, 1, 63, 64, 65, 1000, 4099};
        for (int q = 0; q < 4; q++)
            for (size_t k = 0; k < sizeof quant_sizes / sizeof quant_sizes[0]; k++)
                for (int zstd = 0; zstd < 2; zstd++)
                    test_quant(c, quant[q], quant_bits[q], quant_sizes[k], zstd);
        const size_t topk_sizes[] = {0, 1, 2, 65, 1000, 4099, 30011};
        const double topk_fractions[] = {0.01, 0.1, 1.0};
        for (int bits = 32; bits >= 2; bits -= 30) {
            for (size_t k = 0; k < sizeof topk_sizes / sizeof topk_sizes[0]; k++)
                for (int f = 0; f < 3; f++)
                    test_topk(c, bits, topk_fractions[f], topk_sizes[k]);
            test_topk_exact(bits);
            test_topk_ties();
            test_topk_nonfinite(bits);
        }
        test_topk_zstd(c);
        test_topk_refused();
        for (int scatter = 0; scatter < 2; scatter++) {
            test_powersgd(c, 0, PSGD_N, 1, scatter);  // low rank: exact
            test_powersgd(c, 0, PSGD_N, 0, scatter);  // error feedback over steps
            test_powersgd(c, 600, 3500, 1, scatter);  // matrices cut by the bucket: dense
            test_powersgd(c, 1200, 1964, 0, scatter); // no matrix at all
            test_powersgd_reducer(c, scatter);
        }
    }
    int rc = g_failures ? 1 : 0;
    if (rc == 0 && c->rank == 0)
        printf("test_codec: all checks passed (%s, %d ranks)\n", c->name, c->size);
    c->finalize(c);
    return rc;
}
