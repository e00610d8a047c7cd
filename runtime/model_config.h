// model_config.h — the model a config describes: the architecture named by model.arch and its
// shape from the [model] keys (models/model.h says which keys an architecture reads).
#ifndef TESSERA_MODEL_CONFIG_H
#define TESSERA_MODEL_CONFIG_H

#include <stdint.h>

#include "base/common.h"
#include "models/model.h"
#include "runtime/config.h"

// The complete, checked shape of cfg's model. Errors (one line, TS_ERR_INPUT): an architecture
// the registry does not know (the known ones listed), a shape the architecture refuses ("[model]:
// width 30 is not a multiple of heads 4").
ts_status model_config_shape(const tessera_config *cfg, model_shape *out);

// The bounds a file's value of dim i of arch must lie in: a config dim's key's bounds, a derived
// dim's own.
void model_config_dim_bounds(const model_arch *arch, int i, int64_t *min, int64_t *max);

#endif
