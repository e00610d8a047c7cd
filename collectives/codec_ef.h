// codec_ef.h — error feedback shared by the compressing codecs (codec_bf16.c, codec_blockq.c),
// and the little-endian stores and loads of payloads and state.
//
// The state is one fp32 residual per value of the flat gradient buffer: what this rank's
// encoding lost at the last step, added to the gradient before the next encode. It is
// checkpointed as one array "residual" of n little-endian fp32 values.
#ifndef TESSERA_CODEC_EF_H
#define TESSERA_CODEC_EF_H

#include <string.h>

#include "collectives/codec.h"

// cx->state: float[cx->n], zero
ts_status codec_ef_init(codec *cx);
void codec_ef_destroy(codec *cx);
ts_status codec_ef_save(const codec *cx, codec_state_io *io);
ts_status codec_ef_load(codec *cx, codec_state_io *io);
// an array of n floats in a codec's state, as little-endian fp32 (what save and load use)
ts_status codec_state_put_f32(codec_state_io *io, const char *name, const float *v, size_t n);
ts_status codec_state_get_f32(codec_state_io *io, const char *name, float *v, size_t n);
// the residual of the value at `first` of the flat buffer
static inline float *codec_ef_residual(codec *cx, size_t first) {
    return (float *)cx->state + first;
}

// little-endian stores and loads of payload fields
static inline void codec_put_u16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline uint16_t codec_get_u16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline void codec_put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint32_t codec_get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void codec_put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint64_t codec_get_u64(const unsigned char *p) {
    return (uint64_t)codec_get_u32(p) | (uint64_t)codec_get_u32(p + 4) << 32;
}
static inline void codec_put_f32(unsigned char *p, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    codec_put_u32(p, bits);
}
static inline float codec_get_f32(const unsigned char *p) {
    uint32_t bits = codec_get_u32(p);
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

#endif
