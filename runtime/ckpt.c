// ckpt.c — saved weights as an HDF5 file (see ckpt.h for the layout).
#include "runtime/ckpt.h"
#include "base/fs.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/config.h"
#include "runtime/h5attr.h"
#include "runtime/h5read.h"
#include "runtime/model_config.h"

#define CKPT_FORMAT  "tessera-weights"
#define CKPT_VERSION 1

#define CKPT_DEFAULT_ARCH "gpt2" // a file without the arch attribute holds a GPT-2

ts_status ckpt_write_weights(const char *path, const model *m, int step) {
    h5attr_quiet();
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        log_error("%s: cannot create HDF5 file", tmp);
        return TS_ERR_SYSTEM;
    }
    // attributes in this order (a GPT-2 file is the same as before architectures had names)
    const int version = CKPT_VERSION;
    int ok = h5attr_write_str(file, "format", CKPT_FORMAT);
    if (strcmp(m->arch->name, CKPT_DEFAULT_ARCH) != 0)
        ok = ok && h5attr_write_str(file, "arch", m->arch->name);
    ok = ok && h5attr_write(file, "version", H5T_NATIVE_INT, &version);
    for (int i = 0; i < m->arch->n_dims; i++)
        ok = ok && h5attr_write(file, m->arch->dims[i].name, H5T_NATIVE_INT, &m->shape.dim[i]);
    ok = ok && h5attr_write(file, "step", H5T_NATIVE_INT, &step);
    hid_t group = H5Gcreate2(file, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float *host = ts_malloc(m->n_params * sizeof(float), "weights for saving");
    m->be->to_host(m->be, host, m->master, m->n_params * sizeof(float));
    for (int i = 0; ok && group >= 0 && i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
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
    char *arch;
    int version;
    int dim[MODEL_MAX_DIMS];
    int step;
} weights_attrs;

static ts_status read_weights_attrs(hid_t file, const char *path, model_shape *shape, int *step) {
    weights_attrs a;
    memset(&a, 0, sizeof a);
    // first the architecture (absent: GPT-2), which says which dims follow
    const h5attr_spec arch_spec[2] = {
        {"format", H5ATTR_STRING, 0, 0, 64, CKPT_FORMAT, 0},
        {"arch", H5ATTR_STRING, offsetof(weights_attrs, arch), 0, 64, NULL, 1},
    };
    TS_CHECK(h5attr_read_table(file, path, NULL, arch_spec, 2, &a));
    const model_arch *arch = model_arch_find(a.arch ? a.arch : CKPT_DEFAULT_ARCH);
    if (!arch) {
        char known[256];
        model_arch_list(known, sizeof known);
        log_error("%s: attribute 'arch' is \"%s\", an architecture this tessera does not know "
                  "(known: %s)",
                  path, a.arch, known);
        free(a.arch);
        return TS_ERR_INPUT;
    }
    free(a.arch);
    a.arch = NULL;
    h5attr_spec spec[MODEL_MAX_DIMS + 2];
    int n = 0;
    spec[n++] = (h5attr_spec){
        "version", H5ATTR_INT, offsetof(weights_attrs, version), CKPT_VERSION, CKPT_VERSION,
        NULL,      0};
    // a config dim's bounds are the config table's ([model] key of the same name)
    for (int i = 0; i < arch->n_dims; i++) {
        spec[n] = (h5attr_spec){arch->dims[i].name,
                                H5ATTR_INT,
                                offsetof(weights_attrs, dim) + (size_t)i * sizeof(int),
                                0,
                                0,
                                NULL,
                                0};
        model_config_dim_bounds(arch, i, &spec[n].min, &spec[n].max);
        n++;
    }
    spec[n] = (h5attr_spec){"step", H5ATTR_INT, offsetof(weights_attrs, step), 0, 0, NULL, 0};
    config_key_bounds("train", "steps", &spec[n].min, &spec[n].max);
    spec[n++].min = 0;
    TS_CHECK(h5attr_read_table(file, path, NULL, spec, n, &a));
    model_shape_init(shape, arch);
    memcpy(shape->dim, a.dim, sizeof shape->dim);
    *step = a.step;
    return TS_OK;
}

ts_status ckpt_read_shape(const char *path, model_shape *shape, int *step) {
    hid_t file;
    TS_CHECK(h5read_open(path, WEIGHTS_WHAT, WEIGHTS_EXPECTED, &file));
    int file_step = 0;
    ts_status st = read_weights_attrs(file, path, shape, &file_step);
    H5Fclose(file);
    if (st != TS_OK) return st;
    if (step) *step = file_step;
    // the derived dims must be what the architecture derives from the others
    model_shape derived = *shape;
    for (int i = 0; i < shape->arch->n_dims; i++)
        if (!shape->arch->dims[i].from_config) derived.dim[i] = 0;
    char why[512], dims[256];
    st = model_shape_complete(&derived, why, sizeof why);
    if (st == TS_OK && memcmp(derived.dim, shape->dim, sizeof derived.dim) != 0) {
        snprintf(why, sizeof why, "the derived dims do not follow from the others");
        st = TS_ERR_INPUT;
    }
    if (st != TS_OK) {
        model_shape_format(shape, 0, dims, sizeof dims);
        log_error("%s: inconsistent model shape in attributes (%s %s): %s", path, shape->arch->name,
                  dims, why);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

ts_status ckpt_read_weights(const char *path, model *m) {
    hid_t file;
    TS_CHECK(h5read_open(path, WEIGHTS_WHAT, WEIGHTS_EXPECTED, &file));
    ts_status st = TS_OK;
    float *host = ts_malloc(m->n_params * sizeof(float), "weights for loading");
    for (int i = 0; i < m->n_tensors && st == TS_OK; i++) {
        const model_tensor *t = &m->tensors[i];
        char name[MODEL_MAX_NAME + 16];
        snprintf(name, sizeof name, "params/%s", t->name);
        const hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
        st = h5read_tensor(file, path, name, t->ndim, dims, H5READ_CONTIGUOUS, host + t->offset,
                           NULL);
    }
    H5Fclose(file);
    if (st == TS_OK) {
        m->be->to_device(m->be, m->master, host, m->n_params * sizeof(float));
        model_sync_params(m);
    }
    free(host);
    return st;
}
