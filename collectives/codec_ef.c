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

ts_status codec_state_put_f32(codec_state_io *io, const char *name, const float *v, size_t n) {
    unsigned char *le = ts_malloc(n ? 4 * n : 1, "codec state (saved)");
    for (size_t i = 0; i < n; i++)
        codec_put_f32(le + 4 * i, v[i]);
    ts_status st = io->put(io, name, le, 4 * n);
    free(le);
    return st;
}

ts_status codec_state_get_f32(codec_state_io *io, const char *name, float *v, size_t n) {
    unsigned char *le = ts_malloc(n ? 4 * n : 1, "codec state (loaded)");
    ts_status st = io->get(io, name, le, 4 * n);
    if (st == TS_OK)
        for (size_t i = 0; i < n; i++)
            v[i] = codec_get_f32(le + 4 * i);
    free(le);
    return st;
}

ts_status codec_ef_save(const codec *cx, codec_state_io *io) {
    return codec_state_put_f32(io, "residual", cx->state, cx->n);
}

ts_status codec_ef_load(codec *cx, codec_state_io *io) {
    return codec_state_get_f32(io, "residual", cx->state, cx->n);
}
