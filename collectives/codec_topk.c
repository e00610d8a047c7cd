// codec_topk.c — the codec `topk`: of each bucket only the k values of largest magnitude travel,
// with their indices; what stays behind is kept as error feedback and added back at the next step.
//
// x = this rank's gradient + its residual. Of a bucket of `count` values, k = max(1, ceil(f *
// count)), at most count (f: comm.topk_fraction; an empty bucket sends none): codec_topk_k. The k
// chosen are those of largest |x|, ties to the lower index. A value that is not finite ranks above
// every finite one (ties among them again to the lower index), so it travels and the trainer's
// non-finite check sees it in the sum; it leaves no residual behind, sent or not, to poison the
// steps after a skipped one. The choice is a radix select on the bits of |x| (three histogram
// passes, O(count), no sort), then one more pass collects the chosen indices in increasing order.
//
// Payload, little-endian (CODEC_TOPK_HEADER = 9 bytes of header):
//   u32 k | u8 flags | u32 L | the index stream, L bytes | the values
//   flags  bit 0: the index stream is a zstd frame of the varints (else the varints themselves);
//          bit 1: the values are 2-bit codes (else fp32); the other bits are zero.
//   varints  the chosen indices i_0 < i_1 < ... as i_0, i_1 - i_0, i_2 - i_1, ..., each LEB128 (7
//          bits a byte, least significant first, the high bit set on every byte but the last, no
//          byte more than needed). Compressed with zstd when the frame is shorter, else as they
//          are.
//   values the chosen x in index order: fp32 (4k bytes), or comm.topk_values = int2: int2's
//          payload for those k values (codec_blockq.c: an fp32 scale max|x| per block of 64, then
//          2-bit codes in {-1, 0, 1}; 4 ceil(k/64) + ceil(k/4) bytes).
// Its length is codec_topk_payload_bytes(bits, k, L) = 9 + L + the values' bytes. L is at most
// the varints' length, which is at most min(5k, k + (count - 1) / 128) (a gap d takes at most
// 1 + d/128 bytes and the gaps add up to the last index, below count): with it, payload_bytes'
// bound.
//
// Error feedback: a sent value leaves x - what the decoder makes of it (0 with fp32 values, what
// the code lost with int2, product and difference rounded apart: -ffp-contract=off), an unsent one
// all of x, so what was decoded plus what is held back is what came in.
//
// Wire: CODEC_WIRE_GATHER. Each rank's payload has its own length (the index stream's); every rank
// decodes all of them in rank order, summing in fp32, so all ranks hold the same bits. A payload
// comes from another rank: decode checks all of it (lengths, flags, k, every index in range and
// increasing, the zstd frame and its size, the 2-bit codes and scales) before it adds anything,
// and refuses a bad one with one error line (TS_ERR_INPUT).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "collectives/codec_ef.h"

#define TOPK_ZSTD       0x01u
#define TOPK_INT2       0x02u
#define TOPK_ZSTD_LEVEL 1
// the most values of a bucket: indices and the index stream's length fit the header's u32
#define TOPK_MAX_COUNT ((size_t)1 << 31)

size_t codec_topk_k(double fraction, size_t count) {
    if (count == 0) return 0;
    double want = ceil(fraction * (double)count);
    return want >= (double)count ? count : want >= 1.0 ? (size_t)want : 1;
}

// the values' bytes for k chosen values of `bits` bits
static size_t topk_values_bytes(int bits, size_t k) {
    return bits == 2 ? codec_blockq_payload_bytes(2, k) : 4 * k;
}

size_t codec_topk_payload_bytes(int value_bits, size_t k, size_t index_bytes) {
    return CODEC_TOPK_HEADER + index_bytes + topk_values_bytes(value_bits, k);
}

// the most bytes of the varints of k increasing indices below count
static size_t topk_index_bound(size_t k, size_t count) {
    if (count == 0) return 0;
    size_t by_gaps = k + (count - 1) / 128;
    return by_gaps < 5 * k ? by_gaps : 5 * k;
}

static size_t topk_payload_bound(const codec *cx, size_t count) {
    size_t k = codec_topk_k(cx->params.topk_fraction, count);
    return codec_topk_payload_bytes(cx->params.topk_value_bits, k, topk_index_bound(k, count));
}

static ts_status topk_init(codec *cx) {
    const codec_params *p = &cx->params;
    if ((p->topk_value_bits != 32 && p->topk_value_bits != 2) || !(p->topk_fraction > 0.0) ||
        !(p->topk_fraction <= 1.0)) {
        log_error("codec topk: values of %d bits, a fraction of %g (expected 32 or 2 bits, a "
                  "fraction in (0, 1])",
                  p->topk_value_bits, p->topk_fraction);
        return TS_ERR_INPUT;
    }
    return codec_ef_init(cx);
}

// ---------------------------------------------------------------------------------------------
// the choice

// |x| as an integer of the same order (the bits of a non-negative float); every value that is not
// finite gets the same key, above all finite ones
static inline uint32_t topk_key(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    bits &= 0x7fffffffu;
    return bits < 0x7f800000u ? bits : 0x7f800000u;
}

// The key of the k-th largest of x[0 .. count) (1 <= k <= count), one digit of it per pass (bits
// 30..20, 19..9, 8..0), counting only the values whose key agrees with the digits found so far;
// *take: how many of the values with exactly that key are among the k (the lowest indices).
static uint32_t topk_threshold(const float *x, size_t count, size_t k, size_t *take) {
    static const int shift[3] = {20, 9, 0}, width[3] = {11, 11, 9};
    size_t hist[1 << 11];
    uint32_t prefix = 0;
    size_t want = k; // of the values agreeing with prefix so far, how many are still to choose
    for (int p = 0; p < 3; p++) {
        const int above = shift[p] + width[p];
        const size_t bins = (size_t)1 << width[p];
        memset(hist, 0, bins * sizeof hist[0]);
        for (size_t i = 0; i < count; i++) {
            uint32_t key = topk_key(x[i]);
            if ((key >> above) == (prefix >> above))
                hist[(key >> shift[p]) & (uint32_t)(bins - 1)]++;
        }
        size_t d = bins - 1;
        while (d > 0 && hist[d] < want)
            want -= hist[d--];
        prefix |= (uint32_t)d << shift[p];
    }
    *take = want;
    return prefix;
}

// ---------------------------------------------------------------------------------------------
// encode

static size_t topk_put_varint(unsigned char *p, uint32_t v) {
    size_t n = 0;
    while (v >= 0x80u) {
        p[n++] = (unsigned char)(v | 0x80u);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static ts_status topk_encode(codec *cx, size_t first, const float *grad, size_t count,
                             void *payload, size_t *bytes) {
    const int bits = cx->params.topk_value_bits;
    const size_t k = codec_topk_k(cx->params.topk_fraction, count);
    if (count > TOPK_MAX_COUNT) { // (comm.bucket_mb allows 2^30 values)
        log_error("codec topk: a bucket of %zu values (at most %zu)", count, TOPK_MAX_COUNT);
        return TS_ERR_INPUT;
    }
    unsigned char *out = payload;
    float *x = codec_ef_residual(cx, first); // x in the residual's place, until it is sent
    for (size_t i = 0; i < count; i++)
        x[i] = grad[i] + x[i];

    // the k chosen, in increasing order; an unsent value that is not finite leaves no residual
    uint32_t *idx = ts_malloc((k ? k : 1) * sizeof *idx, "topk chosen indices");
    size_t take = 0, n = 0;
    uint32_t cut = k ? topk_threshold(x, count, k, &take) : UINT32_MAX;
    for (size_t i = 0; i < count; i++) {
        uint32_t key = topk_key(x[i]);
        int chosen = n < k && (key > cut || (key == cut && take > 0));
        if (chosen && key == cut) take--;
        if (chosen)
            idx[n++] = (uint32_t)i;
        else if (!isfinite(x[i]))
            x[i] = 0.0f;
    }
    TS_ASSERT(n == k);
    // the varints, and the zstd frame of them in the payload when it is shorter
    unsigned char *raw = ts_malloc(topk_index_bound(k, count) + 1, "topk index varints");
    size_t len = 0;
    for (size_t j = 0; j < n; j++)
        len += topk_put_varint(raw + len, j ? idx[j] - idx[j - 1] : idx[0]);
    unsigned flags = bits == 2 ? TOPK_INT2 : 0u;
    unsigned char *stream = out + CODEC_TOPK_HEADER;
    size_t packed = len > 1 ? ZSTD_compress(stream, len - 1, raw, len, TOPK_ZSTD_LEVEL) : 0;
    if (len > 1 && !ZSTD_isError(packed)) {
        flags |= TOPK_ZSTD;
        len = packed;
    } else {
        memcpy(stream, raw, len);
    }
    free(raw);
    codec_put_u32(out, (uint32_t)k);
    out[4] = (unsigned char)flags;
    codec_put_u32(out + 5, (uint32_t)len);

    // the values: the chosen x; a sent value leaves what its decoding lost (fp32: nothing; int2: a
    // block with a value that is not finite travels as NaN and leaves nothing)
    unsigned char *values = stream + len;
    if (bits == 2) {
        float *v = ts_malloc((k ? k : 1) * sizeof *v, "topk chosen values");
        for (size_t j = 0; j < k; j++)
            v[j] = x[idx[j]];
        codec_blockq_quantize(2, v, k, values, v);
        for (size_t j = 0; j < k; j++)
            x[idx[j]] = v[j];
        free(v);
    } else {
        for (size_t j = 0; j < k; j++) {
            uint32_t vbits;
            memcpy(&vbits, &x[idx[j]], 4);
            codec_put_u32(values + 4 * j, vbits);
            x[idx[j]] = 0.0f;
        }
    }
    free(idx);
    *bytes = codec_topk_payload_bytes(bits, k, len);
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// decode

// one varint at p[*at .. len): 0 when it runs past the end, takes more than 5 bytes or more bytes
// than its value needs
static int topk_get_varint(const unsigned char *p, size_t len, size_t *at, uint64_t *v) {
    uint64_t r = 0;
    for (int s = 0; s < 5 && *at < len; s++) {
        unsigned char b = p[(*at)++];
        r |= (uint64_t)(b & 0x7fu) << (7 * s);
        if (!(b & 0x80u)) {
            *v = r;
            return s == 0 || b != 0;
        }
    }
    return 0;
}

// Walk the k indices of a varint stream, checking them (in range, increasing, the stream used
// up), and when grad is not NULL add each one's value at it. NULL when all is well, else what is
// wrong (in why).
static const char *topk_walk(const unsigned char *s, size_t len, size_t k, size_t count, int bits,
                             const unsigned char *values, float *grad, char *why, size_t why_len) {
    size_t at = 0;
    uint64_t index = 0;
    for (size_t j = 0; j < k; j++) {
        uint64_t d;
        if (!topk_get_varint(s, len, &at, &d)) {
            snprintf(why, why_len, "index %zu of %zu: its varint is cut short or malformed", j, k);
            return why;
        }
        if (j > 0 && d == 0) {
            snprintf(why, why_len, "index %zu of %zu is not above the one before (%llu)", j, k,
                     (unsigned long long)index);
            return why;
        }
        index += d;
        if (index >= count) {
            snprintf(why, why_len, "index %zu of %zu is %llu, out of a bucket of %zu values", j, k,
                     (unsigned long long)index, count);
            return why;
        }
        if (!grad) continue;
        float v;
        if (bits == 2) {
            v = codec_blockq_value(2, values, k, j, NULL);
        } else {
            uint32_t vbits = codec_get_u32(values + 4 * j);
            memcpy(&v, &vbits, 4);
        }
        grad[index] += v;
    }
    if (at != len) {
        snprintf(why, why_len, "%zu bytes of the index stream after its %zu indices", len - at, k);
        return why;
    }
    return NULL;
}

// int2 values: scales that an encoder makes (not negative, not infinite; NaN marks a block with a
// value that is not finite), codes in {-1, 0, 1}, zero bits after the last code
static const char *topk_check_int2(const unsigned char *values, size_t k, char *why,
                                   size_t why_len) {
    size_t blocks = (k + CODEC_BLOCKQ_BLOCK - 1) / CODEC_BLOCKQ_BLOCK;
    for (size_t b = 0; b < blocks; b++) {
        uint32_t sbits = codec_get_u32(values + 4 * b);
        float scale;
        memcpy(&scale, &sbits, 4);
        if (scale < 0.0f || isinf(scale)) {
            snprintf(why, why_len, "block %zu of the 2-bit values has a scale of %g", b,
                     (double)scale);
            return why;
        }
    }
    for (size_t j = 0; j < k; j++) {
        int q;
        codec_blockq_value(2, values, k, j, &q);
        if (q < -1) {
            snprintf(why, why_len, "value %zu has the 2-bit code %d", j, q);
            return why;
        }
    }
    if (k % 4 && values[4 * blocks + k / 4] >> (2 * (k % 4))) {
        snprintf(why, why_len, "bits set after the last 2-bit code");
        return why;
    }
    return NULL;
}

static ts_status topk_decode(codec *cx, size_t first, const void *payload, size_t bytes,
                             float *grad, size_t count) {
    (void)first;
    const unsigned char *p = payload;
    const int bits = cx->params.topk_value_bits;
    const size_t want_k = codec_topk_k(cx->params.topk_fraction, count);
    char why[160];
    const char *bad = NULL;
    unsigned char *raw = NULL;
    if (bytes < CODEC_TOPK_HEADER) {
        snprintf(why, sizeof why, "%zu bytes, shorter than the %d-byte header", bytes,
                 CODEC_TOPK_HEADER);
        bad = why;
        goto fail;
    }
    size_t k = codec_get_u32(p), len = codec_get_u32(p + 5);
    unsigned flags = p[4];
    if (flags & ~(TOPK_ZSTD | TOPK_INT2)) {
        snprintf(why, sizeof why, "unknown flags 0x%02x", flags);
        bad = why;
    } else if (((flags & TOPK_INT2) != 0) != (bits == 2)) {
        snprintf(why, sizeof why, "values of %d bits, this rank's are %d (comm.topk_values)",
                 flags & TOPK_INT2 ? 2 : 32, bits);
        bad = why;
    } else if (k != want_k) {
        snprintf(why, sizeof why,
                 "%zu values of a bucket of %zu, expected %zu (comm.topk_fraction)", k, count,
                 want_k);
        bad = why;
    } else if (len > bytes - CODEC_TOPK_HEADER || bytes != codec_topk_payload_bytes(bits, k, len)) {
        snprintf(why, sizeof why, "%zu bytes, its header says %zu", bytes,
                 codec_topk_payload_bytes(bits, k, len));
        bad = why;
    }
    if (bad) goto fail;
    const unsigned char *stream = p + CODEC_TOPK_HEADER, *values = stream + len;
    if (flags & TOPK_ZSTD) {
        size_t most = topk_index_bound(k, count);
        unsigned long long size = ZSTD_getFrameContentSize(stream, len);
        size_t frame = ZSTD_findFrameCompressedSize(stream, len);
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN ||
            ZSTD_isError(frame)) {
            snprintf(why, sizeof why, "the index stream is not a zstd frame that states its size");
            bad = why;
        } else if (frame != len) {
            snprintf(why, sizeof why, "the zstd frame takes %zu of the index stream's %zu bytes",
                     frame, len);
            bad = why;
        } else if (size > most) {
            snprintf(why, sizeof why, "the zstd frame holds %llu bytes, at most %zu expected", size,
                     most);
            bad = why;
        }
        if (bad) goto fail;
        raw = ts_malloc(size ? (size_t)size : 1, "topk index varints");
        size_t got = ZSTD_decompress(raw, (size_t)size, stream, len);
        if (ZSTD_isError(got) || got != size) {
            snprintf(why, sizeof why, "the zstd frame does not decompress to its %llu bytes (%s)",
                     size, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "fewer");
            bad = why;
            goto fail;
        }
        stream = raw;
        len = (size_t)size;
    }
    // all of it checked before anything is added
    if (bits == 2) bad = topk_check_int2(values, k, why, sizeof why);
    if (!bad) bad = topk_walk(stream, len, k, count, bits, values, NULL, why, sizeof why);
    if (!bad) topk_walk(stream, len, k, count, bits, values, grad, why, sizeof why);
fail:
    free(raw);
    if (!bad) return TS_OK;
    log_error("codec topk: a payload of %zu bytes for %zu values refused: %s", bytes, count, bad);
    return TS_ERR_INPUT;
}

const codec_ops codec_topk_ops = {
    .name = "topk",
    .help = "the largest values with their indices (zstd), error feedback, all-gathered",
    .wire = CODEC_WIRE_GATHER,
    .init = topk_init,
    .destroy = codec_ef_destroy,
    .payload_bytes = topk_payload_bound,
    .encode = topk_encode,
    .decode = topk_decode,
    .save = codec_ef_save,
    .load = codec_ef_load,
};
