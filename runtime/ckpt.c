// ckpt.c — saved weights as an HDF5 file (see ckpt.h for the layout).
#include "runtime/ckpt.h"
#include "base/fs.h"

#include <hdf5.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/config.h"
#include "runtime/h5attr.h"
#include "runtime/h5read.h"

#define CKPT_FORMAT  "tessera-weights"
#define CKPT_VERSION 1

static const char *const ckpt_int_attrs[] = {"version", "layers", "heads",        "width",
                                             "seq_len", "vocab",  "padded_vocab", "step"};
#define CKPT_N_INT_ATTRS 8

ts_status ckpt_write_weights(const char *path, const gpt2 *m, int step) {
    h5attr_quiet();
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        log_error("%s: cannot create HDF5 file", tmp);
        return TS_ERR_SYSTEM;
    }
    const gpt2_config *c = &m->cfg;
    int values[CKPT_N_INT_ATTRS] = {CKPT_VERSION, c->layers, c->heads,        c->width,
                                    c->seq_len,   c->vocab,  c->padded_vocab, step};
    int ok = h5attr_write_str(file, "format", CKPT_FORMAT);
    for (int i = 0; i < CKPT_N_INT_ATTRS; i++)
        ok = ok && h5attr_write(file, ckpt_int_attrs[i], H5T_NATIVE_INT, &values[i]);
    hid_t group = H5Gcreate2(file, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float *host = ts_malloc(m->n_params * sizeof(float), "weights for saving");
    m->be->to_host(m->be, host, m->master, m->n_params * sizeof(float));
    for (int i = 0; ok && group >= 0 && i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
        hid_t space = H5Screate_simple(t->ndim, dims, NULL);
        hid_t ds = H5Dcreate2(group, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT);
        ok = ds >= 0 &&
             H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host + t->offset) >= 0;
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(space);
    }
    free(host);
    if (group >= 0) H5Gclose(group);
    ok = ok && group >= 0 && H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0;
    if (H5Fclose(file) < 0) ok = 0;
    if (!ok) {
        log_error("%s: writing the HDF5 weights failed (disk full?)", tmp);
        unlink(tmp);
        return TS_ERR_SYSTEM;
    }
    return fs_commit_file(tmp, path);
}

// ---------------------------------------------------------------------------------------------
// reading: every attribute checked by one table, every dataset by h5read_tensor

#define WEIGHTS_WHAT     "weights file"
#define WEIGHTS_EXPECTED "tessera weights written by `tessera train`"

typedef struct {
    int version;
    gpt2_config cfg;
    int step;
} weights_attrs;

static ts_status read_weights_attrs(hid_t file, const char *path, weights_attrs *a) {
#define W_INT(name, field) {name, H5ATTR_INT, offsetof(weights_attrs, field), 0, 0, NULL, 0}
    h5attr_spec spec[] = {
        {"format", H5ATTR_STRING, 0, 0, 64, CKPT_FORMAT, 0},
        {"version", H5ATTR_INT, offsetof(weights_attrs, version), CKPT_VERSION, CKPT_VERSION, NULL,
         0},
        W_INT("layers", cfg.layers),
        W_INT("heads", cfg.heads),
        W_INT("width", cfg.width),
        W_INT("seq_len", cfg.seq_len),
        W_INT("vocab", cfg.vocab),
        {"padded_vocab", H5ATTR_INT, offsetof(weights_attrs, cfg.padded_vocab), 2, INT_MAX, NULL,
         0},
        W_INT("step", step),
    };
#undef W_INT
    // the model's bounds are the config table's ([model] keys of the same names)
    for (size_t i = 2; i < 7; i++)
        config_key_bounds("model", spec[i].name, &spec[i].min, &spec[i].max);
    config_key_bounds("train", "steps", &spec[8].min, &spec[8].max);
    spec[8].min = 0;
    memset(a, 0, sizeof *a);
    return h5attr_read_table(file, path, NULL, spec, (int)(sizeof spec / sizeof spec[0]), a);
}

ts_status ckpt_read_config(const char *path, gpt2_config *cfg, int *step) {
    hid_t file;
    TS_CHECK(h5read_open(path, WEIGHTS_WHAT, WEIGHTS_EXPECTED, &file));
    weights_attrs a;
    ts_status st = read_weights_attrs(file, path, &a);
    H5Fclose(file);
    if (st != TS_OK) return st;
    *cfg = a.cfg;
    if (step) *step = a.step;
    if (cfg->padded_vocab != gpt2_padded_vocab(cfg->vocab) || cfg->width % cfg->heads != 0) {
        log_error("%s: inconsistent model shape in attributes (heads %d width %d vocab %d "
                  "padded_vocab %d): expected heads dividing width and padded_vocab %d",
                  path, cfg->heads, cfg->width, cfg->vocab, cfg->padded_vocab,
                  gpt2_padded_vocab(cfg->vocab));
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

ts_status ckpt_read_weights(const char *path, gpt2 *m) {
    hid_t file;
    TS_CHECK(h5read_open(path, WEIGHTS_WHAT, WEIGHTS_EXPECTED, &file));
    ts_status st = TS_OK;
    float *host = ts_malloc(m->n_params * sizeof(float), "weights for loading");
    for (int i = 0; i < m->n_tensors && st == TS_OK; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        char name[GPT2_MAX_NAME + 16];
        snprintf(name, sizeof name, "params/%s", t->name);
        const hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
        st = h5read_tensor(file, path, name, t->ndim, dims, H5READ_CONTIGUOUS, host + t->offset,
                           NULL);
    }
    H5Fclose(file);
    if (st == TS_OK) {
        m->be->to_device(m->be, m->master, host, m->n_params * sizeof(float));
        gpt2_sync_params(m);
    }
    free(host);
    return st;
}
