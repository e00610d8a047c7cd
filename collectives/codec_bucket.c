// codec_bucket.c — a bucket's trip through codec and communicator: its split into dense and
// coded parts, its payload as it travels, its collectives, and the decode (see codec.h).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "collectives/codec.h"
#include "collectives/codec_ef.h" // little-endian stores and loads

// zstd level 1: the fastest of the regular levels (see docs/config.md, comm.zstd, for what it
// saves and costs per codec)
#define CODEC_ZSTD_LEVEL 1
enum { CODEC_FRAME_RAW = 0, CODEC_FRAME_ZSTD = 1 }; // a GATHER payload's first byte with comm.zstd

// the codec's zstd contexts and scratch (cx->zstd), made at the first use
typedef struct {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    unsigned char *buf; // a compressed body (encode) or a decompressed one (decode)
    size_t cap;
} codec_zstd;

static codec_zstd *codec_zstd_of(codec *cx) {
    if (cx->zstd) return cx->zstd;
    codec_zstd *z = ts_calloc(1, sizeof *z, "codec zstd contexts");
    z->cctx = ZSTD_createCCtx();
    z->dctx = ZSTD_createDCtx();
    if (!z->cctx || !z->dctx) ts_fatal(TS_ERR_SYSTEM, "out of memory creating zstd contexts");
    cx->zstd = z;
    return z;
}

void codec_zstd_free(codec *cx) {
    codec_zstd *z = cx->zstd;
    if (!z) return;
    ZSTD_freeCCtx(z->cctx);
    ZSTD_freeDCtx(z->dctx);
    free(z->buf);
    free(z);
    cx->zstd = NULL;
}

static void codec_grow(unsigned char **buf, size_t *cap, size_t need, const char *what) {
    if (need <= *cap && *buf) return;
    free(*buf);
    *buf = ts_malloc(need ? need : 1, what);
    *cap = need;
}

// ---------------------------------------------------------------------------------------------
// the split: dense and coded parts of [first, first + count), by the tensor table

// append a part, or grow the last one (coded parts of whole_tensors codecs stay apart)
static void split_add(codec_bucket *b, int *cap, size_t at, size_t count, int dense, int apart) {
    if (count == 0) return;
    codec_part *last = b->n_parts ? &b->parts[b->n_parts - 1] : NULL;
    if (last && last->dense == dense && (dense || !apart)) {
        last->count += count;
        return;
    }
    if (b->n_parts == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        codec_part *grown = realloc(b->parts, (size_t)*cap * sizeof *grown);
        if (!grown) ts_fatal(TS_ERR_SYSTEM, "out of memory splitting a codec bucket");
        b->parts = grown;
    }
    b->parts[b->n_parts++] = (codec_part){at, count, dense};
}

static void codec_bucket_split(const codec *cx, codec_bucket *b, size_t first, size_t count) {
    const codec_ops *ops = cx->ops;
    free(b->parts);
    free(b->dense);
    for (int k = 0; k < CODEC_MAX_ROUNDS; k++) {
        free(b->sums[k]);
        b->sums[k] = NULL;
        b->round_n[k] = 0;
    }
    b->parts = NULL;
    b->dense = NULL;
    b->n_parts = b->n_coded = 0;
    b->n_dense = b->most = 0;
    const codec_tensor *t = cx->params.tensors;
    int nt = cx->params.n_tensors, cap = 0, i = 0, whole = ops->whole_tensors;
    size_t pos = first, end = first + count;
    while (i < nt && t[i].offset + t[i].rows * t[i].cols <= first)
        i++;
    while (pos < end) {
        if (i < nt && t[i].offset <= pos) { // in tensor i
            size_t stop = t[i].offset + t[i].rows * t[i].cols;
            int cut = t[i].offset < first || stop > end; // only a piece of it in this bucket
            if (stop > end) stop = end;
            split_add(b, &cap, pos - first, stop - pos,
                      codec_tensor_dense(cx, &t[i]) || (whole && cut), whole);
            pos = stop;
            i++;
        } else { // before the next tensor: in none, coded (dense for whole_tensors codecs)
            size_t stop = i < nt && t[i].offset < end ? t[i].offset : end;
            split_add(b, &cap, pos - first, stop - pos, whole, whole);
            pos = stop;
        }
    }
    for (int k = 0; k < b->n_parts; k++) {
        const codec_part *q = &b->parts[k];
        if (q->dense) {
            b->n_dense += q->count;
            continue;
        }
        b->n_coded++;
        if (ops->wire == CODEC_WIRE_ROUNDS)
            for (int r = 0; r < ops->rounds; r++)
                b->round_n[r] += ops->round_floats(cx, first + q->at, q->count, r);
        else
            b->most += ops->payload_bytes(cx, q->count);
    }
    if (ops->wire == CODEC_WIRE_GATHER)
        b->most += (b->n_coded > 1 ? 8 * (size_t)b->n_coded : 0) + 4 * b->n_dense;
    if (ops->wire == CODEC_WIRE_ROUNDS) { // the dense values travel in the first round
        b->round_n[0] += b->n_dense;
        for (int r = 0; r < ops->rounds; r++)
            b->sums[r] = ts_malloc((b->round_n[r] ? b->round_n[r] : 1) * sizeof(float),
                                   "codec round buffer");
    }
    b->split = 1;
    b->split_first = first;
    b->split_count = count;
}

// ---------------------------------------------------------------------------------------------
// encode and start

// encode coded part q of the bucket at `out`; *len its payload's length, checked against the
// codec's bound (COMBINE: exactly the bound, in whole elements)
static ts_status encode_part(codec *cx, codec_bucket *b, const codec_part *q, unsigned char *out,
                             size_t *len) {
    const codec_ops *ops = cx->ops;
    size_t most = ops->payload_bytes(cx, q->count);
    *len = 0;
    TS_CHECK(ops->encode(cx, b->first + q->at, b->grad + q->at, q->count, out, len));
    if (*len > most ||
        (ops->wire == CODEC_WIRE_COMBINE && (*len != most || *len % ops->elem_bytes != 0))) {
        log_error("codec %s: encoded %zu values into %zu bytes (expected %s%zu, in elements of "
                  "%zu bytes)",
                  ops->name, q->count, *len,
                  ops->wire == CODEC_WIRE_COMBINE ? "exactly " : "at most ", most,
                  ops->wire == CODEC_WIRE_COMBINE ? ops->elem_bytes : (size_t)1);
        return TS_ERR_INTERNAL;
    }
    return TS_OK;
}

// comm.zstd: the body (body_len bytes at payload + 1) compressed when that makes it smaller;
// the payload's length
static size_t zstd_wrap(codec *cx, unsigned char *payload, size_t body_len) {
    codec_zstd *z = codec_zstd_of(cx);
    size_t bound = ZSTD_compressBound(body_len);
    codec_grow(&z->buf, &z->cap, bound, "codec zstd buffer");
    double t0 = ts_now();
    size_t zlen =
        ZSTD_compressCCtx(z->cctx, z->buf, bound, payload + 1, body_len, CODEC_ZSTD_LEVEL);
    cx->stats.zstd_s += ts_now() - t0;
    if (ZSTD_isError(zlen) || zlen >= body_len) {
        payload[0] = CODEC_FRAME_RAW;
        return 1 + body_len;
    }
    payload[0] = CODEC_FRAME_ZSTD;
    memcpy(payload + 1, z->buf, zlen);
    return 1 + zlen;
}

// GATHER: this rank's payload (codec.h: lengths, coded parts, dense values; with comm.zstd
// behind a byte saying whether it is compressed), all-gathered
static ts_status gather_start(codec *cx, comm *c, codec_bucket *b) {
    size_t head = cx->params.zstd ? 1 : 0;
    codec_grow(&b->payload, &b->payload_cap, head + b->most, "codec payload");
    unsigned char *p = b->payload + head;
    size_t at = b->n_coded > 1 ? 8 * (size_t)b->n_coded : 0;
    int k = 0;
    for (int i = 0; i < b->n_parts; i++) {
        const codec_part *q = &b->parts[i];
        if (q->dense) continue;
        size_t len;
        TS_CHECK(encode_part(cx, b, q, p + at, &len));
        if (b->n_coded > 1) codec_put_u64(p + 8 * (size_t)k, len);
        k++;
        at += len;
    }
    for (int i = 0; i < b->n_parts; i++) {
        const codec_part *q = &b->parts[i];
        for (size_t j = 0; q->dense && j < q->count; j++, at += 4)
            codec_put_f32(p + at, b->grad[q->at + j]);
    }
    cx->stats.encoded_bytes += at;
    b->payload_len = !head ? at : !cx->ops->no_zstd ? zstd_wrap(cx, b->payload, at) : 1 + at;
    if (head && cx->ops->no_zstd) b->payload[0] = CODEC_FRAME_RAW;
    cx->stats.payload_bytes += b->payload_len;
    // room for every rank's payload at its most
    size_t room = (head + b->most) * (size_t)c->size;
    codec_grow(&b->gathered, &b->gathered_cap, room, "codec gathered payloads");
    if (!b->lens) b->lens = ts_calloc((size_t)c->size, sizeof(size_t), "codec payload lengths");
    return c->start_all_gather_v(c, b->payload, b->payload_len, b->gathered, room, b->lens,
                                 &b->req);
}

// COMBINE: the coded parts' payloads back to back, combined; the dense values all-reduced
static ts_status combine_start(codec *cx, comm *c, codec_bucket *b) {
    const codec_ops *ops = cx->ops;
    codec_grow(&b->payload, &b->payload_cap, b->most, "codec payload");
    size_t at = 0;
    for (int i = 0; i < b->n_parts; i++) {
        const codec_part *q = &b->parts[i];
        if (q->dense) continue;
        size_t len;
        TS_CHECK(encode_part(cx, b, q, b->payload + at, &len));
        at += len;
    }
    b->payload_len = at;
    cx->stats.encoded_bytes += at + 4 * b->n_dense;
    cx->stats.payload_bytes += at + 4 * b->n_dense;
    if (b->n_coded) {
        comm_combine cb = {ops->combine, ops->elem_bytes, cx};
        TS_CHECK(c->start_combine(c, COMM_ALL_REDUCE_COMBINE, b->payload, at / ops->elem_bytes, &cb,
                                  &b->req));
    }
    if (!b->n_dense) return TS_OK;
    if (!b->dense) b->dense = ts_malloc(b->n_dense * sizeof(float), "codec dense values");
    size_t d = 0;
    for (int i = 0; i < b->n_parts; i++) {
        const codec_part *q = &b->parts[i];
        if (!q->dense) continue;
        memcpy(b->dense + d, b->grad + q->at, q->count * sizeof(float));
        d += q->count;
    }
    return c->start(c, COMM_ALL_REDUCE_SUM, b->dense, b->n_dense, COMM_F32, 0, &b->dense_req);
}

// ROUNDS: step k of every coded part (codec.h, `round`), each part's floats at its place in each
// round's buffer (the parts' in bucket order); at k = 0 the dense values follow the codec's floats
static ts_status rounds_step(codec *cx, codec_bucket *b, int k) {
    const codec_ops *ops = cx->ops;
    size_t at[CODEC_MAX_ROUNDS] = {0};
    for (int i = 0; i < b->n_parts; i++) {
        const codec_part *q = &b->parts[i];
        if (q->dense) continue;
        float *sums[CODEC_MAX_ROUNDS + 1] = {NULL};
        for (int r = 0; r < ops->rounds && r <= k; r++)
            sums[r] = b->sums[r] + at[r];
        TS_CHECK(ops->round(cx, b->first + q->at, b->grad + q->at, q->count, k, sums));
        for (int r = 0; r < ops->rounds; r++)
            at[r] += ops->round_floats(cx, b->first + q->at, q->count, r);
    }
    for (int i = 0; i < b->n_parts; i++) { // at[0]: where the dense values are
        const codec_part *q = &b->parts[i];
        if (!q->dense) continue;
        if (k == 0)
            memcpy(b->sums[0] + at[0], b->grad + q->at, q->count * sizeof(float));
        else if (k == ops->rounds)
            memcpy(b->grad + q->at, b->sums[0] + at[0], q->count * sizeof(float));
        at[0] += q->count;
    }
    return TS_OK;
}

// ROUNDS: the floats of round b->round, made, counted and all-reduced
static ts_status rounds_start(codec *cx, comm *c, codec_bucket *b) {
    int k = b->round;
    TS_CHECK(rounds_step(cx, b, k));
    b->polls = 0;
    cx->stats.encoded_bytes += b->round_n[k] * sizeof(float);
    cx->stats.payload_bytes += b->round_n[k] * sizeof(float);
    if (!b->round_n[k]) return TS_OK;
    return c->start(c, COMM_ALL_REDUCE_SUM, b->sums[k], b->round_n[k], COMM_F32, 0, &b->req);
}

ts_status codec_bucket_start(codec *cx, comm *c, codec_bucket *b, size_t first, float *grad,
                             size_t count, int scatter) {
    const codec_ops *ops = cx->ops;
    b->first = first;
    b->count = count;
    b->grad = grad;
    b->scatter = scatter;
    b->req = b->dense_req = NULL;
    cx->stats.buckets++;
    cx->stats.raw_bytes += count * sizeof(float);
    if (ops->wire == CODEC_WIRE_SUM_F32) {
        cx->stats.encoded_bytes += count * sizeof(float);
        cx->stats.payload_bytes += count * sizeof(float);
        comm_op op = scatter ? COMM_REDUCE_SCATTER_SUM : COMM_ALL_REDUCE_SUM;
        return c->start(c, op, grad, count, COMM_F32, 0, &b->req);
    }
    if (!b->split || b->split_first != first || b->split_count != count)
        codec_bucket_split(cx, b, first, count);
    if (ops->wire == CODEC_WIRE_ROUNDS) {
        b->round = 0;
        return rounds_start(cx, c, b);
    }
    return ops->wire == CODEC_WIRE_COMBINE ? combine_start(cx, c, b) : gather_start(cx, c, b);
}

// ---------------------------------------------------------------------------------------------
// decode

// a payload from another rank that does not fit the split: damaged, or from a rank configured
// otherwise
static ts_status bad_payload(const codec *cx, const codec_bucket *b, int rank, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static ts_status bad_payload(const codec *cx, const codec_bucket *b, int rank, const char *fmt,
                             ...) {
    char why[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    log_error("codec %s: the payload of rank %d for values %zu..%zu is damaged: %s", cx->ops->name,
              rank, b->first, b->first + b->count, why);
    return TS_ERR_INPUT;
}

// comm.zstd: the body of rank `rank`'s payload (len bytes at p), decompressed when it is, into
// at most b->most bytes
static ts_status zstd_unwrap(codec *cx, const codec_bucket *b, int rank, const unsigned char *p,
                             size_t len, const unsigned char **body, size_t *body_len) {
    if (len == 0) return bad_payload(cx, b, rank, "empty (not even its first byte)");
    if (p[0] == CODEC_FRAME_RAW) {
        *body = p + 1;
        *body_len = len - 1;
        return TS_OK;
    }
    if (p[0] != CODEC_FRAME_ZSTD)
        return bad_payload(cx, b, rank, "its first byte is %u (0: raw, 1: zstd)", p[0]);
    unsigned long long size = ZSTD_getFrameContentSize(p + 1, len - 1);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
        return bad_payload(cx, b, rank, "not a zstd frame of known size (%zu bytes)", len - 1);
    if (size > b->most)
        return bad_payload(cx, b, rank, "a zstd frame of %llu bytes, more than the %zu at most",
                           size, b->most);
    codec_zstd *z = codec_zstd_of(cx);
    codec_grow(&z->buf, &z->cap, b->most, "codec zstd buffer");
    double t0 = ts_now();
    size_t got = ZSTD_decompressDCtx(z->dctx, z->buf, b->most, p + 1, len - 1);
    cx->stats.zstd_s += ts_now() - t0;
    if (ZSTD_isError(got)) return bad_payload(cx, b, rank, "zstd: %s", ZSTD_getErrorName(got));
    if (got != size)
        return bad_payload(cx, b, rank, "zstd frames of %zu bytes, the first said %llu", got, size);
    *body = z->buf;
    *body_len = got;
    return TS_OK;
}

// GATHER: add rank `rank`'s payload (len bytes at p) into the bucket
static ts_status gather_decode(codec *cx, codec_bucket *b, int rank, const unsigned char *p,
                               size_t len) {
    const codec_ops *ops = cx->ops;
    if (cx->params.zstd) TS_CHECK(zstd_unwrap(cx, b, rank, p, len, &p, &len));
    size_t table = b->n_coded > 1 ? 8 * (size_t)b->n_coded : 0, dense = 4 * b->n_dense;
    if (len < table + dense)
        return bad_payload(cx, b, rank,
                           "shorter than its lengths and dense values (%zu bytes, expected %zu "
                           "at least)",
                           len, table + dense);
    size_t coded = len - table - dense, sum = 0;
    for (int i = 0, k = 0; i < b->n_parts; i++) {
        const codec_part *q = &b->parts[i];
        if (q->dense) continue;
        uint64_t l = table ? codec_get_u64(p + 8 * (size_t)k++) : coded;
        size_t most = ops->payload_bytes(cx, q->count);
        if (l > most)
            return bad_payload(cx, b, rank, "a part's payload too long (%llu bytes, %zu at most)",
                               (unsigned long long)l, most);
        sum += (size_t)l;
    }
    if (sum != coded)
        return bad_payload(cx, b, rank, "its parts' lengths add up to %zu bytes, not %zu", sum,
                           coded);
    size_t at = table, dat = table + coded;
    for (int i = 0, k = 0; i < b->n_parts; i++) {
        const codec_part *q = &b->parts[i];
        if (q->dense) {
            for (size_t j = 0; j < q->count; j++, dat += 4)
                b->grad[q->at + j] += codec_get_f32(p + dat);
            continue;
        }
        size_t l = table ? (size_t)codec_get_u64(p + 8 * (size_t)k++) : coded;
        TS_CHECK(ops->decode(cx, b->first + q->at, p + at, l, b->grad + q->at, q->count));
        at += l;
    }
    return TS_OK;
}

// the collectives have completed: decode into the bucket
static ts_status codec_bucket_decode(codec *cx, comm *c, codec_bucket *b) {
    const codec_ops *ops = cx->ops;
    b->req = b->dense_req = NULL;
    if (ops->wire == CODEC_WIRE_SUM_F32) return TS_OK; // summed in place
    memset(b->grad, 0, b->count * sizeof(float));
    if (ops->wire == CODEC_WIRE_GATHER) {
        size_t at = 0;
        for (int r = 0; r < c->size; r++) {
            TS_CHECK(gather_decode(cx, b, r, b->gathered + at, b->lens[r]));
            at += b->lens[r];
        }
        return TS_OK;
    }
    size_t at = 0, d = 0;
    for (int i = 0; i < b->n_parts; i++) {
        const codec_part *q = &b->parts[i];
        if (q->dense) {
            memcpy(b->grad + q->at, b->dense + d, q->count * sizeof(float));
            d += q->count;
            continue;
        }
        size_t len = ops->payload_bytes(cx, q->count);
        TS_CHECK(
            ops->decode(cx, b->first + q->at, b->payload + at, len, b->grad + q->at, q->count));
        at += len;
    }
    return TS_OK;
}

// the collectives have completed: the next round (ROUNDS), or decode (*done = 1)
static ts_status codec_bucket_next(codec *cx, comm *c, codec_bucket *b, int *done) {
    *done = 0;
    if (cx->ops->wire == CODEC_WIRE_ROUNDS && ++b->round < cx->ops->rounds)
        return rounds_start(cx, c, b);
    *done = 1;
    if (cx->ops->wire == CODEC_WIRE_ROUNDS) return rounds_step(cx, b, cx->ops->rounds);
    return codec_bucket_decode(cx, c, b);
}

ts_status codec_bucket_test(codec *cx, comm *c, codec_bucket *b, int *done) {
    *done = 0;
    comm_req **reqs[2] = {&b->req, &b->dense_req};
    for (int k = 0; k < 2; k++) {
        int d = 0;
        if (!*reqs[k]) continue;
        TS_CHECK(c->test(c, *reqs[k], &d));
        if (d) *reqs[k] = NULL; // released by the communicator
    }
    if (cx->ops->wire == CODEC_WIRE_ROUNDS) // a round is due at its second test (codec.h)
        return ++b->polls < 2 ? TS_OK : codec_bucket_advance(cx, c, b, done);
    if (b->req || b->dense_req) return TS_OK;
    return codec_bucket_next(cx, c, b, done);
}

ts_status codec_bucket_advance(codec *cx, comm *c, codec_bucket *b, int *done) {
    comm_req **reqs[2] = {&b->req, &b->dense_req};
    for (int k = 0; k < 2; k++) {
        if (!*reqs[k]) continue;
        comm_req *q = *reqs[k];
        *reqs[k] = NULL;
        TS_CHECK(c->wait(c, q));
    }
    return codec_bucket_next(cx, c, b, done);
}

ts_status codec_bucket_wait(codec *cx, comm *c, codec_bucket *b) {
    int done = 0;
    while (!done)
        TS_CHECK(codec_bucket_advance(cx, c, b, &done));
    return TS_OK;
}

void codec_bucket_free(codec_bucket *b) {
    for (int k = 0; k < CODEC_MAX_ROUNDS; k++)
        free(b->sums[k]);
    free(b->parts);
    free(b->dense);
    free(b->payload);
    free(b->gathered);
    free(b->lens);
    memset(b, 0, sizeof *b);
}
