// model_table.c — the parameter table's helpers, shared by every architecture
// (precision-independent).
#include "models/model.h"

#include <stdio.h>
#include <string.h>

void model_table_add(model_tensor *out, int cap, int *n, size_t *off, const char *name, int layer,
                     int d0, int d1) {
    size_t numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    if (out && *n < cap) {
        model_tensor *t = &out[*n];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", name);
        t->ndim = d1 > 0 ? 2 : 1;
        t->shape[0] = d0;
        t->shape[1] = d1 > 0 ? d1 : 1;
        t->offset = *off;
        t->numel = numel;
        t->layer = layer;
        t->decay = t->ndim == 2;
    }
    (*n)++;
    *off += numel;
}

const model_tensor *model_find_tensor(const model_tensor *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0) return &t[i];
    return NULL;
}
