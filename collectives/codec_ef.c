// codec_ef.c — error-feedback state of the compressing codecs (see codec_ef.h).
#include "collectives/codec_ef.h"

#include <stdlib.h>
#include <string.h>

ts_status codec_ef_init(codec *cx) {
    cx->state = ts_calloc(cx->n ? cx->n : 1, sizeof(float), "codec error feedback");
    return TS_OK;
}

void codec_ef_destroy(codec *cx) {
    free(cx->state);
    cx->state = NULL;
}

ts_status codec_ef_save(const codec *cx, codec_state_io *io) {
    const float *res = cx->state;
    size_t bytes = cx->n * sizeof(float);
    unsigned char *le = ts_malloc(bytes ? bytes : 1, "codec error feedback (saved)");
    for (size_t i = 0; i < cx->n; i++) {
        uint32_t bits;
        memcpy(&bits, &res[i], 4);
        codec_put_u32(le + 4 * i, bits);
    }
    ts_status st = io->put(io, "residual", le, bytes);
    free(le);
    return st;
}

ts_status codec_ef_load(codec *cx, codec_state_io *io) {
    float *res = cx->state;
    size_t bytes = cx->n * sizeof(float);
    unsigned char *le = ts_malloc(bytes ? bytes : 1, "codec error feedback (loaded)");
    ts_status st = io->get(io, "residual", le, bytes);
    if (st == TS_OK)
        for (size_t i = 0; i < cx->n; i++) {
            uint32_t bits = codec_get_u32(le + 4 * i);
            memcpy(&res[i], &bits, 4);
        }
    free(le);
    return st;
}
