// model_config.c — the model a config describes (see model_config.h).
#include "runtime/model_config.h"
#include "runtime/config_internal.h"

#include <stdio.h>
#include <string.h>

ts_status model_config_shape(const tessera_config *cfg, model_shape *out) {
    const model_arch *arch = model_arch_find(cfg->model.arch);
    if (!arch) {
        char known[256];
        model_arch_list(known, sizeof known);
        log_error("[model] arch: unknown architecture \"%s\" (known: %s)", cfg->model.arch, known);
        return TS_ERR_INPUT;
    }
    model_shape_init(out, arch);
    for (int i = 0; i < arch->n_dims; i++) {
        if (!arch->dims[i].from_config) continue;
        // the [model] key of the dim's name holds it; an architecture reading a key the table
        // lacks is a bug of that architecture (docs/architecture.md, "A new model")
        int k = cfg_find_key("model", arch->dims[i].name);
        TS_ASSERT(k >= 0 && cfg_keys[k].type == CFG_INT);
        out->dim[i] = *(const int *)((const char *)cfg + cfg_keys[k].offset);
    }
    char why[512];
    if (model_shape_complete(out, why, sizeof why) != TS_OK) {
        log_error("[model]: %s", why);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

void model_config_dim_bounds(const model_arch *arch, int i, int64_t *min, int64_t *max) {
    if (arch->dims[i].from_config) {
        config_key_bounds("model", arch->dims[i].name, min, max);
    } else {
        *min = arch->dims[i].min;
        *max = arch->dims[i].max;
    }
}
