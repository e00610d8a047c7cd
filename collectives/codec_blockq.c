// codec_blockq.c — the block-quantizing codecs `int8`, `int4` and `int2`.
//
// A bucket is cut into blocks of CODEC_BLOCKQ_BLOCK values (the last one may be shorter). Each
// block has one fp32 scale, max|x| / qmax over the block (qmax = 2^(bits-1) - 1: 127, 7, 1), and
// each value the code q = round(x / scale) (to nearest, halves away from zero, so symmetric in
// sign) in [-qmax, qmax], which decodes to q * scale: at most half a step (scale / 2) from x.
// Error feedback: x is this rank's gradient plus what the quantization lost on this rank at the
// step before (its residual, per value), and the new residual is x - q * scale.
//
// Payload, little-endian: the fp32 scales of the blocks, then the codes of all values, packed
// `bits` to a byte-aligned stream (value i in bits (i * bits) % 8 and up of byte i * bits / 8,
// two's complement). Its length for `count` values, exactly:
//     4 * ceil(count / CODEC_BLOCKQ_BLOCK) + ceil(count * bits / 8)
// A block holding a value that is not finite travels with a NaN scale (every value of it decodes
// to NaN, which the trainer's non-finite check sees) and leaves no residual.
//
// Wire: CODEC_WIRE_GATHER. Every rank all-gathers every rank's payload and decodes them in rank
// order, summing in fp32, so all ranks hold the same bits. (Quantized blocks cannot be added on
// the way along a ring without requantizing the partial sums, with an error that grows with the
// world size and that no rank's error feedback sees.)
#include <math.h>
#include <string.h>

#include "collectives/codec_ef.h"

static int blockq_bits(const codec *cx) {
    const char *name = cx->ops->name;
    return name[3] == '8' ? 8 : name[3] == '4' ? 4 : 2;
}

size_t codec_blockq_payload_bytes(int bits, size_t count) {
    size_t blocks = (count + CODEC_BLOCKQ_BLOCK - 1) / CODEC_BLOCKQ_BLOCK;
    return 4 * blocks + (count * (size_t)bits + 7) / 8;
}

static size_t blockq_payload_bytes(const codec *cx, size_t count) {
    return codec_blockq_payload_bytes(blockq_bits(cx), count);
}

void codec_blockq_quantize(int bits, const float *x, size_t m, unsigned char *payload,
                           float *lost) {
    const int qmax = (1 << (bits - 1)) - 1;
    const unsigned mask = (1u << bits) - 1u;
    size_t blocks = (m + CODEC_BLOCKQ_BLOCK - 1) / CODEC_BLOCKQ_BLOCK;
    unsigned char *scales = payload, *codes = scales + 4 * blocks;
    memset(codes, 0, codec_blockq_payload_bytes(bits, m) - 4 * blocks);
    for (size_t b = 0; b < blocks; b++) {
        size_t lo = b * CODEC_BLOCKQ_BLOCK;
        size_t hi = m - lo < CODEC_BLOCKQ_BLOCK ? m : lo + CODEC_BLOCKQ_BLOCK;
        float amax = 0.0f;
        int finite = 1;
        for (size_t i = lo; i < hi; i++) {
            if (!isfinite(x[i]))
                finite = 0;
            else if (fabsf(x[i]) > amax)
                amax = fabsf(x[i]);
        }
        float scale = finite ? amax / (float)qmax : NAN;
        uint32_t sbits;
        memcpy(&sbits, &scale, 4);
        codec_put_u32(scales + 4 * b, sbits);
        for (size_t i = lo; i < hi; i++) {
            int q = 0;
            if (finite && scale > 0.0f) {
                float r = roundf(x[i] / scale);
                q = r > (float)qmax ? qmax : r < (float)-qmax ? -qmax : (int)r;
            }
            lost[i] = finite ? x[i] - (float)q * scale : 0.0f;
            size_t bit = i * (size_t)bits;
            codes[bit / 8] |= (unsigned char)(((unsigned)q & mask) << (bit % 8));
        }
    }
}

float codec_blockq_value(int bits, const unsigned char *payload, size_t m, size_t i, int *code) {
    const unsigned mask = (1u << bits) - 1u;
    size_t blocks = (m + CODEC_BLOCKQ_BLOCK - 1) / CODEC_BLOCKQ_BLOCK;
    uint32_t sbits = codec_get_u32(payload + 4 * (i / CODEC_BLOCKQ_BLOCK));
    float scale;
    memcpy(&scale, &sbits, 4);
    size_t bit = i * (size_t)bits;
    int q = (int)((payload[4 * blocks + bit / 8] >> (bit % 8)) & mask);
    if (q >= 1 << (bits - 1)) q -= 1 << bits;
    if (code) *code = q;
    return isnan(scale) ? NAN : (float)q * scale;
}

// x = grad + residual, in the residual's place; quantized, it leaves there what the codes lost
static ts_status blockq_encode(codec *cx, size_t first, const float *grad, size_t count,
                               void *payload, size_t *bytes) {
    const int bits = blockq_bits(cx);
    float *res = codec_ef_residual(cx, first);
    for (size_t i = 0; i < count; i++)
        res[i] = grad[i] + res[i];
    codec_blockq_quantize(bits, res, count, payload, res);
    *bytes = codec_blockq_payload_bytes(bits, count);
    return TS_OK;
}

static ts_status blockq_decode(codec *cx, size_t first, const void *payload, size_t bytes,
                               float *grad, size_t count) {
    (void)first;
    const int bits = blockq_bits(cx);
    if (bytes != codec_blockq_payload_bytes(bits, count)) {
        log_error("codec %s: a payload of %zu bytes for %zu values (expected %zu)", cx->ops->name,
                  bytes, count, codec_blockq_payload_bytes(bits, count));
        return TS_ERR_INPUT;
    }
    for (size_t i = 0; i < count; i++)
        grad[i] += codec_blockq_value(bits, payload, count, i, NULL);
    return TS_OK;
}

// zstd (level 1, comm.zstd) on the payloads of 2 ranks training a 4-block model of width 128
// (docs/config.md): int2 to 72%, int4 to 87%, but int8 only to 95%, for 3 to 5 ms of CPU per MB
// compressed and 1 to 2 ms per MB decompressed (one payload from each rank). A 5% cut pays for
// that only on links slower than about 70 Mbit/s: int8 does not try.
#define BLOCKQ_OPS(id, label, skip_zstd)                                                           \
    const codec_ops codec_##id##_ops = {                                                           \
        .name = #id,                                                                               \
        .help = label " codes in blocks of 64 with an fp32 scale, error feedback, all-gathered",   \
        .wire = CODEC_WIRE_GATHER,                                                                 \
        .no_zstd = skip_zstd,                                                                      \
        .init = codec_ef_init,                                                                     \
        .destroy = codec_ef_destroy,                                                               \
        .payload_bytes = blockq_payload_bytes,                                                     \
        .encode = blockq_encode,                                                                   \
        .decode = blockq_decode,                                                                   \
        .save = codec_ef_save,                                                                     \
        .load = codec_ef_load,                                                                     \
    };

BLOCKQ_OPS(int8, "8-bit", 1)
BLOCKQ_OPS(int4, "4-bit", 0)
BLOCKQ_OPS(int2, "2-bit", 0)
