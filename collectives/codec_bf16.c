// codec_bf16.c — the codec `bf16`: every value rounded to bfloat16 (round to nearest, ties to
// even) with error feedback: what the rounding lost on this rank, per value, is added back before
// the next encode.
//
// Payload: the bucket's values as little-endian bf16, 2 bytes per value (exactly 2 * count).
//
// Wire: CODEC_WIRE_GATHER. Every rank all-gathers every rank's payload and decodes them in rank
// order, summing in fp32, so all ranks hold the same bits and the sum is rounded only once per
// rank (at the encode). An all-reduce combining bf16 payloads would have to round the partial
// sum back to bf16 at every hop of the ring, so the error would grow with the world size and no
// rank's error feedback could account for it. The price: each rank receives (size - 1) * 2 bytes
// per value, against 2 * (size - 1) / size * 4 for the fp32 ring all-reduce, which is less up to
// 4 ranks and the same at 4.
#include <math.h>
#include <string.h>

#include "collectives/codec_ef.h"

// fp32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN
static uint16_t bf16_round(float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    if (isnan(v)) return (uint16_t)((bits >> 16) | 0x0040u);
    uint32_t lsb = (bits >> 16) & 1u;
    bits += 0x7fffu + lsb;
    return (uint16_t)(bits >> 16);
}

static float bf16_value(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

static size_t bf16_payload_bytes(const codec *cx, size_t count) {
    (void)cx;
    return 2 * count;
}

static ts_status bf16_encode(codec *cx, size_t first, const float *grad, size_t count,
                             void *payload, size_t *bytes) {
    float *res = codec_ef_residual(cx, first);
    unsigned char *p = payload;
    for (size_t i = 0; i < count; i++) {
        float v = grad[i] + res[i];
        uint16_t h = bf16_round(v);
        float lost = v - bf16_value(h);
        // a value that is not finite (or rounds to infinity) travels as it is; it leaves no
        // residual behind to poison the steps after it
        res[i] = isfinite(lost) ? lost : 0.0f;
        codec_put_u16(p + 2 * i, h);
    }
    *bytes = 2 * count;
    return TS_OK;
}

static ts_status bf16_decode(codec *cx, size_t first, const void *payload, size_t bytes,
                             float *grad, size_t count) {
    (void)cx, (void)first;
    if (bytes != 2 * count) {
        log_error("codec bf16: a payload of %zu bytes for %zu values (expected %zu)", bytes, count,
                  2 * count);
        return TS_ERR_INPUT;
    }
    const unsigned char *p = payload;
    for (size_t i = 0; i < count; i++)
        grad[i] += bf16_value(codec_get_u16(p + 2 * i));
    return TS_OK;
}

const codec_ops codec_bf16_ops = {
    .name = "bf16",
    .help = "bf16 values with error feedback, all-gathered and summed in fp32 in rank order",
    .wire = CODEC_WIRE_GATHER,
    .init = codec_ef_init,
    .destroy = codec_ef_destroy,
    .payload_bytes = bf16_payload_bytes,
    .encode = bf16_encode,
    .decode = bf16_decode,
    .save = codec_ef_save,
    .load = codec_ef_load,
};
