// ckpt_state.c — the state file of a training checkpoint, state.h5: write, load, and its config
// alone (see ckpt_state.h and docs/checkpoint-format.md). The step directory around it is
// runtime/ckpt_dir.c's.
#define _GNU_SOURCE // open_memstream
#include "runtime/ckpt_state.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/fs.h"
#include "runtime/h5attr.h"
#include "runtime/h5read.h"
#include "runtime/h5zstd.h"
#include "runtime/model_config.h"

#define CKPT_STATE_FORMAT  "tessera-checkpoint"
#define CKPT_STATE_VERSION 1
#define CKPT_CHUNK_ELEMS   65536 // elements per chunk (256 KiB of fp32)

_Static_assert(sizeof(real) == sizeof(float), "checkpoints hold fp32 master weights and moments");

static const char *const ckpt_groups[3] = {"params", "adam_m", "adam_v"};

// ---------------------------------------------------------------------------------------------
// save

static int write_tensor(hid_t group, const model_tensor *t, const float *data) {
    hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)(t->ndim == 2 ? t->shape[1] : 1)};
    hsize_t chunk[2];
    if (t->ndim == 2) {
        hsize_t rows = CKPT_CHUNK_ELEMS / dims[1];
        chunk[0] = rows < 1 ? 1 : rows > dims[0] ? dims[0] : rows;
        chunk[1] = dims[1];
    } else {
        chunk[0] = dims[0] < CKPT_CHUNK_ELEMS ? dims[0] : CKPT_CHUNK_ELEMS;
    }
    hid_t space = H5Screate_simple(t->ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, t->ndim, chunk) >= 0 &&
             h5zstd_set(dcpl, H5ZSTD_LEVEL_DEFAULT) == 0;
    hid_t ds =
        ok ? H5Dcreate2(group, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    ok = ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    // each dataset carries the checksum of its values (what a reader must get back after
    // decompression) and its element type; bf16 tensors, once saved, are 16-bit integers
    // with dtype "bf16"
    uint64_t sum = XXH64(data, t->numel * sizeof(float), 0);
    ok = ok && h5attr_write(ds, "xxh64", H5T_NATIVE_UINT64, &sum) &&
         h5attr_write_str(ds, "dtype", "float32");
    if (ds >= 0) H5Dclose(ds);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return ok;
}

ts_status ckpt_state_write(const char *path, const model *m, const tessera_config *cfg,
                           const ckpt_state_meta *meta, const float *master, const float *adam_m,
                           const float *adam_v) {
    h5attr_quiet();
    const float *const bufs[3] = {master, adam_m, adam_v};
    char *text = NULL;
    size_t text_len = 0;
    FILE *mem = open_memstream(&text, &text_len);
    if (!mem) ts_panic(__FILE__, __LINE__, "open_memstream failed");
    config_write(cfg, mem);
    fclose(mem);

    // built in memory (core driver, no backing store), then written with plain write(2): an I/O
    // error (disk full, EFBIG) inside HDF5 leaves a file it cannot close, and the library's exit
    // handler crashes on it; outside HDF5 it is an ordinary failed write
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t file = fapl >= 0 && H5Pset_fapl_core(fapl, (size_t)16 << 20, 0) >= 0
                     ? H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)
                     : -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (file < 0) {
        free(text);
        log_error("%s: cannot create HDF5 file", path);
        return TS_ERR_SYSTEM;
    }
    int version = CKPT_STATE_VERSION;
    int ok = h5attr_write_str(file, "format", CKPT_STATE_FORMAT) &&
             h5attr_write(file, "version", H5T_NATIVE_INT, &version) &&
             h5attr_write(file, "step", H5T_NATIVE_INT, &meta->step) &&
             h5attr_write(file, "world_size", H5T_NATIVE_INT, &meta->world) &&
             h5attr_write(file, "global_batch", H5T_NATIVE_INT, &meta->global_batch) &&
             h5attr_write(file, "seed", H5T_NATIVE_INT64, &meta->seed) &&
             h5attr_write(file, "optimizer_t", H5T_NATIVE_INT, &meta->opt_t) &&
             h5attr_write(file, "next_sample", H5T_NATIVE_UINT64, &meta->next_sample) &&
             h5attr_write_str(file, "config", text);
    free(text);
    for (int g = 0; ok && g < 3; g++) {
        hid_t group = H5Gcreate2(file, ckpt_groups[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = group >= 0;
        for (int i = 0; ok && i < m->n_tensors; i++)
            ok = write_tensor(group, &m->tensors[i], bufs[g] + m->tensors[i].offset);
        if (group >= 0) H5Gclose(group);
    }
    // gradient codecs' state (error feedback; empty without), and local SGD's per-rank state
    // (empty without)
    // (empty without), and the balancing state
    static const char *const reserved[3] = {"codec", "outer", "balance"};
    const ckpt_codec_state *states[3] = {meta->codec, meta->outer, meta->balance};
    for (int g = 0; ok && g < 3; g++) {
        hid_t group = H5Gcreate2(file, reserved[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = group >= 0 && ckpt_codec_write(group, states[g]);
        if (group >= 0) H5Gclose(group);
    }
    ok = ok && H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0;
    ssize_t size = ok ? H5Fget_file_image(file, NULL, 0) : -1;
    char *image = size > 0 ? malloc((size_t)size) : NULL;
    ok = image && H5Fget_file_image(file, image, (size_t)size) == size;
    if (H5Fclose(file) < 0) ok = 0;
    if (!ok) {
        free(image);
        log_error("%s: building the checkpoint in memory failed (out of memory?)", path);
        return TS_ERR_SYSTEM;
    }
    ts_status st = fs_write_new_file(path, image, (size_t)size);
    free(image);
    return st;
}

// ---------------------------------------------------------------------------------------------
// load

// ---------------------------------------------------------------------------------------------
// reading: every attribute checked by a table (h5attr_read_table), every dataset's links,
// layout, type and shape before its values are read (h5read_tensor)

typedef struct {
    uint64_t xxh64;
    int has_xxh64;
} tensor_attrs;

static ts_status read_group(hid_t file, const char *path, const model *m, const char *group,
                            float *buf) {
    const h5attr_spec spec[2] = {
        {"xxh64", H5ATTR_HASH, offsetof(tensor_attrs, xxh64), 0, 0, NULL, 1},
        {"dtype", H5ATTR_STRING, 0, 0, 64, "float32", 1},
    };
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        char name[MODEL_MAX_NAME + 16];
        snprintf(name, sizeof name, "%s/%s", group, t->name);
        const hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
        hid_t ds;
        TS_CHECK(h5read_tensor(file, path, name, t->ndim, dims, H5READ_ZSTD, buf + t->offset, &ds));
        // the checksum of the values as written, when the file has one (every tessera checkpoint)
        tensor_attrs a = {0, 0};
        a.has_xxh64 = H5Aexists(ds, "xxh64") > 0;
        ts_status st = h5attr_read_table(ds, path, name, spec, 2, &a);
        uint64_t got = XXH64(buf + t->offset, t->numel * sizeof(float), 0);
        if (st == TS_OK && a.has_xxh64 && a.xxh64 != got) {
            log_error("%s: dataset '/%s': values hash to %016llx, the dataset's xxh64 "
                      "attribute says %016llx (damaged)",
                      path, name, (unsigned long long)got, (unsigned long long)a.xxh64);
            st = TS_ERR_INPUT;
        }
        H5Dclose(ds);
        TS_CHECK(st);
    }
    return TS_OK;
}

// the checkpoint's resolved config must describe the same model (architecture and shape) as the
// current one
static ts_status check_shape(const char *path, const char *text, const tessera_config *cfg) {
    tessera_config saved;
    config_defaults(&saved);
    if (config_parse_text(&saved, text, strlen(text), path) != TS_OK) return TS_ERR_INPUT;
    model_shape a, b;
    TS_CHECK(model_config_shape(&saved, &a));
    TS_CHECK(model_config_shape(cfg, &b));
    if (a.arch != b.arch || memcmp(a.dim, b.dim, sizeof a.dim) != 0) {
        // the architecture is named only when it is not the same
        char da[256], db[256], aa[40] = "", ab[40] = "";
        model_shape_format(&a, 1, da, sizeof da);
        model_shape_format(&b, 1, db, sizeof db);
        if (a.arch != b.arch) {
            snprintf(aa, sizeof aa, "%s ", a.arch->name);
            snprintf(ab, sizeof ab, "%s ", b.arch->name);
        }
        log_error("%s: the checkpoint's model (%s%s) differs from the config's (%s%s); resume "
                  "needs the same [model]",
                  path, aa, da, ab, db);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

typedef struct {
    int version;
    ckpt_state_meta meta;
    char *config;
} state_attrs;

// the attributes on "/" of an open state file, each checked (type, scalar, bounds), then against
// each other
static ts_status read_state_attrs(hid_t file, const char *path, ckpt_state_meta *meta,
                                  char **config) {
    h5attr_spec spec[] = {
        {"format", H5ATTR_STRING, 0, 0, 64, CKPT_STATE_FORMAT, 0},
        {"version", H5ATTR_INT, offsetof(state_attrs, version), CKPT_STATE_VERSION,
         CKPT_STATE_VERSION, NULL, 0},
        {"step", H5ATTR_INT, offsetof(state_attrs, meta.step), 0, 0, NULL, 0},
        {"world_size", H5ATTR_INT, offsetof(state_attrs, meta.world), 1, 0, NULL, 0},
        {"global_batch", H5ATTR_INT, offsetof(state_attrs, meta.global_batch), 0, 0, NULL, 0},
        {"seed", H5ATTR_INT64, offsetof(state_attrs, meta.seed), 0, 0, NULL, 0},
        {"optimizer_t", H5ATTR_INT, offsetof(state_attrs, meta.opt_t), 0, 0, NULL, 0},
        {"next_sample", H5ATTR_UINT64, offsetof(state_attrs, meta.next_sample), 0, 0, NULL, 0},
        // the resolved config: a config file's text, at most as long as a config file can be
        {"config", H5ATTR_STRING, offsetof(state_attrs, config), 0, CONFIG_MAX_BYTES, NULL, 0},
    };
    // bounds from the config table: a step of train.steps, a batch of train.global_batch, ...
    int64_t lo, steps, batch;
    config_key_bounds("train", "steps", &lo, &steps);
    config_key_bounds("train", "global_batch", &spec[4].min, &batch);
    spec[2].max = spec[6].max = steps;
    spec[3].max = spec[4].max = batch; // every rank of a run takes at least one sequence
    config_key_bounds("run", "seed", &spec[5].min, &spec[5].max);
    spec[7].max = steps * batch;
    state_attrs a;
    memset(&a, 0, sizeof a);
    TS_CHECK(h5attr_read_table(file, path, NULL, spec, (int)(sizeof spec / sizeof spec[0]), &a));
    const ckpt_state_meta *m = &a.meta;
    if (m->opt_t > m->step || m->world > m->global_batch ||
        m->next_sample > (uint64_t)m->step * (uint64_t)m->global_batch) {
        log_error("%s: inconsistent attributes (step %d, optimizer_t %d, world_size %d, "
                  "global_batch %d, next_sample %llu): expected optimizer_t <= step, world_size "
                  "<= global_batch and next_sample <= step * global_batch",
                  path, m->step, m->opt_t, m->world, m->global_batch,
                  (unsigned long long)m->next_sample);
        free(a.config);
        return TS_ERR_INPUT;
    }
    ckpt_codec_state *codec = meta->codec; // where the caller wants the /codec state, if at all
    ckpt_codec_state *outer = meta->outer; // and the /outer state
    ckpt_codec_state *balance = meta->balance;
    *meta = a.meta;
    meta->codec = codec;
    meta->outer = outer;
    meta->balance = balance;
    *config = a.config;
    return TS_OK;
}

#define STATE_WHAT     "checkpoint state file"
#define STATE_EXPECTED "a checkpoint written by `tessera train`"

ts_status ckpt_state_read_meta(const char *path, ckpt_state_meta *meta, char **config) {
    meta->codec = NULL; // the attributes only
    meta->outer = NULL;
    meta->balance = NULL;
    hid_t file;
    TS_CHECK(h5read_open(path, STATE_WHAT, STATE_EXPECTED, &file));
    ts_status st = read_state_attrs(file, path, meta, config);
    H5Fclose(file);
    return st;
}

ts_status ckpt_state_load(const char *step_dir, const model *m, const tessera_config *cfg,
                          ckpt_state_meta *meta, float *master, float *adam_m, float *adam_v) {
    TS_CHECK(h5zstd_register());
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", step_dir, CKPT_STATE_FILE);
    hid_t file;
    TS_CHECK(h5read_open(path, STATE_WHAT, STATE_EXPECTED, &file));
    char *text = NULL;
    ts_status st = read_state_attrs(file, path, meta, &text);
    if (st == TS_OK) st = check_shape(path, text, cfg);
    free(text);
    float *bufs[3] = {master, adam_m, adam_v};
    for (int g = 0; g < 3 && st == TS_OK; g++)
        st = read_group(file, path, m, ckpt_groups[g], bufs[g]);
    // per-rank state arrays hold at most a few values per parameter (error feedback, inner
    // moments, the rank's parameters), the balancing state a sample index per sequence of a step
    // (or a value per rank, and every rank has at least one sequence): bounds checked before
    // anything is allocated
    size_t per_rank = 8 * m->n_params + 65536;
    if (st == TS_OK && meta->codec)
        st = ckpt_codec_read_capped(file, path, "codec", meta->world, per_rank, meta->codec);
    if (st == TS_OK && meta->outer)
        st = ckpt_codec_read_capped(file, path, "outer", meta->world, per_rank, meta->outer);
    if (meta->balance) {
        // checkpoints written before balancing have no /balance: nothing given back then
        memset(meta->balance, 0, sizeof *meta->balance);
        if (st == TS_OK && H5Lexists(file, "balance", H5P_DEFAULT) > 0)
            st = ckpt_codec_read_capped(file, path, "balance", 1, 8 * (size_t)meta->global_batch,
                                        meta->balance);
    }
    H5Fclose(file);
    return st;
}

char *ckpt_state_read_config(const char *step_dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", step_dir, CKPT_STATE_FILE);
    ckpt_state_meta meta;
    char *text = NULL;
    if (ckpt_state_read_meta(path, &meta, &text) != TS_OK) return NULL;
    return text;
}
