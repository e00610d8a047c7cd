// ckpt.c — saved weights as an HDF5 file (see ckpt.h for the layout).
#include "runtime/ckpt.h"
#include "base/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/h5attr.h"

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

static ts_status open_weights(const char *path, hid_t *file) {
    h5attr_quiet();
    if (access(path, R_OK) != 0) {
        log_error("%s: cannot read weights file: %s", path, strerror(errno));
        return TS_ERR_INPUT;
    }
    if (H5Fis_hdf5(path) <= 0) {
        log_error("%s: not an HDF5 file (expected tessera weights written by `tessera train`)",
                  path);
        return TS_ERR_INPUT;
    }
    *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*file < 0) {
        log_error("%s: cannot open HDF5 file", path);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

ts_status ckpt_read_config(const char *path, gpt2_config *cfg, int *step) {
    hid_t file;
    TS_CHECK(open_weights(path, &file));
    int v[CKPT_N_INT_ATTRS];
    ts_status st = TS_OK;
    for (int i = 0; i < CKPT_N_INT_ATTRS && st == TS_OK; i++)
        st = h5attr_read_int(file, path, "tessera weights file", ckpt_int_attrs[i], H5T_NATIVE_INT,
                             &v[i]);
    H5Fclose(file);
    if (st != TS_OK) return st;
    if (v[0] != CKPT_VERSION) {
        log_error("%s: weights format version %d, expected %d", path, v[0], CKPT_VERSION);
        return TS_ERR_INPUT;
    }
    cfg->layers = v[1];
    cfg->heads = v[2];
    cfg->width = v[3];
    cfg->seq_len = v[4];
    cfg->vocab = v[5];
    cfg->padded_vocab = v[6];
    if (step) *step = v[7];
    // bounds as in the config table, so a damaged file cannot ask for absurd allocations
    if (cfg->layers < 1 || cfg->layers > 4096 || cfg->heads < 1 || cfg->width < 1 ||
        cfg->width > 65536 || cfg->seq_len < 2 || cfg->seq_len > 1048576 || cfg->vocab < 2 ||
        cfg->vocab > 2147483520 || cfg->padded_vocab != gpt2_padded_vocab(cfg->vocab) ||
        cfg->width % cfg->heads != 0) {
        log_error("%s: inconsistent model shape in attributes (layers %d heads %d width %d "
                  "seq_len %d vocab %d padded_vocab %d)",
                  path, v[1], v[2], v[3], v[4], v[5], v[6]);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

ts_status ckpt_read_weights(const char *path, gpt2 *m) {
    hid_t file;
    TS_CHECK(open_weights(path, &file));
    ts_status st = TS_OK;
    float *host = ts_malloc(m->n_params * sizeof(float), "weights for loading");
    for (int i = 0; i < m->n_tensors && st == TS_OK; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        char name[GPT2_MAX_NAME + 16];
        snprintf(name, sizeof name, "params/%s", t->name);
        if (H5Lexists(file, "params", H5P_DEFAULT) <= 0 ||
            H5Lexists(file, name, H5P_DEFAULT) <= 0) {
            log_error("%s: dataset '/%s' is missing", path, name);
            st = TS_ERR_INPUT;
            break;
        }
        hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
        hid_t space = H5Dget_space(ds);
        hsize_t dims[2] = {0, 1};
        int nd = H5Sget_simple_extent_ndims(space);
        if (nd == t->ndim) H5Sget_simple_extent_dims(space, dims, NULL);
        if (nd != t->ndim || dims[0] != (hsize_t)t->shape[0] ||
            (t->ndim == 2 && dims[1] != (hsize_t)t->shape[1])) {
            log_error("%s: dataset '/%s' has the wrong shape (expected %d x %d)", path, name,
                      t->shape[0], t->shape[1]);
            st = TS_ERR_INPUT;
        } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host + t->offset) <
                   0) {
            log_error("%s: reading dataset '/%s' failed (file damaged?)", path, name);
            st = TS_ERR_INPUT;
        }
        H5Sclose(space);
        H5Dclose(ds);
    }
    H5Fclose(file);
    if (st == TS_OK) {
        m->be->to_device(m->be, m->master, host, m->n_params * sizeof(float));
        gpt2_sync_params(m);
    }
    free(host);
    return st;
}
