// codec_none.c — the codec `none`: gradients travel as they are, fp32, summed by the
// communicator's float all-reduce (reduce-scatter with ZeRO-1) in place. No state, no copy, no
// conversion: the bytes on the wire and the order of every sum are those of the reducer without
// a codec, so results are bit-identical to it.
#include "collectives/codec.h"

const codec_ops codec_none_ops = {
    .name = "none",
    .help = "fp32 gradients, summed exactly as without a codec",
    .wire = CODEC_WIRE_SUM_F32,
};
