// ckpt_state.c — training checkpoints: atomic save, pruning, choice of the newest intact step
// directory, load (see ckpt_state.h and docs/checkpoint-format.md).
#define _GNU_SOURCE // open_memstream
#include "runtime/ckpt_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "base/fs.h"
#include "runtime/fault.h"
#include "runtime/h5attr.h"
#include "runtime/h5zstd.h"
#include "runtime/manifest.h"

#define CKPT_STATE_FORMAT  "tessera-checkpoint"
#define CKPT_STATE_VERSION 1
#define CKPT_CHUNK_ELEMS   65536 // elements per chunk (256 KiB of fp32)

_Static_assert(sizeof(real) == sizeof(float), "checkpoints hold fp32 master weights and moments");

static const char *const ckpt_groups[3] = {"params", "adam_m", "adam_v"};

// ---------------------------------------------------------------------------------------------
// small file-system helpers

// remove the step-*.tmp, step-*.old and step-*.del directories of ckpt_dir: left by a save (or
// a pruning) that was interrupted (process killed), never part of a checkpoint (only a renamed step
// directory with a verifying manifest is one). Only the writer of ckpt_dir calls this, between
// saves.
static void remove_stale(const char *ckpt_dir) {
    DIR *d = opendir(ckpt_dir);
    if (!d) return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "step-", 5) != 0 || len < 9 ||
            (strcmp(e->d_name + len - 4, ".tmp") != 0 && strcmp(e->d_name + len - 4, ".old") != 0 &&
             strcmp(e->d_name + len - 4, ".del") != 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", ckpt_dir, e->d_name);
        log_warn("%s: removing the leftover of an interrupted save", path);
        fs_remove_tree(path);
    }
    closedir(d);
}

static int cmp_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

// step numbers of ckpt_dir's "step-NNNNNNNN" directories, newest first; *n = how many
static int *list_steps(const char *ckpt_dir, int *n) {
    *n = 0;
    DIR *d = opendir(ckpt_dir);
    if (!d) return NULL;
    int cap = 16, *steps = ts_malloc(cap * sizeof(int), "checkpoint list");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int step, len = 0;
        if (strlen(e->d_name) != 13 || sscanf(e->d_name, "step-%8d%n", &step, &len) != 1 ||
            len != 13 || step < 0)
            continue;
        if (*n == cap) {
            cap *= 2;
            int *grown = realloc(steps, cap * sizeof(int));
            if (!grown) ts_panic(__FILE__, __LINE__, "out of memory listing checkpoints");
            steps = grown;
        }
        steps[(*n)++] = step;
    }
    closedir(d);
    qsort(steps, (size_t)*n, sizeof(int), cmp_desc);
    return steps;
}

// ---------------------------------------------------------------------------------------------
// HDF5 attributes

// a string attribute, malloc'ed (NULL with one error line when missing or not a string)
static char *read_str_attr(hid_t file, const char *path, const char *name) {
    char *out = NULL;
    hid_t attr = H5Aexists(file, name) > 0 ? H5Aopen(file, name, H5P_DEFAULT) : -1;
    hid_t type = attr >= 0 ? H5Aget_type(attr) : -1;
    if (type >= 0 && H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
        size_t n = H5Tget_size(type);
        out = ts_calloc(n + 1, 1, "checkpoint attribute");
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, n);
        if (H5Aread(attr, mem, out) < 0) {
            free(out);
            out = NULL;
        }
        H5Tclose(mem);
    }
    if (type >= 0) H5Tclose(type);
    if (attr >= 0) H5Aclose(attr);
    if (!out) log_error("%s: attribute '%s' is missing or not a string", path, name);
    return out;
}

// ---------------------------------------------------------------------------------------------
// save

static int write_tensor(hid_t group, const gpt2_tensor *t, const float *data) {
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

static ts_status write_state_file(const char *path, const gpt2 *m, const tessera_config *cfg,
                                  const ckpt_state_meta *meta, const float *const bufs[3]) {
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
    // gradient codecs' state (error feedback; empty without), and room for the outer optimizer
    // (an empty group now, so readers can rely on where it will be)
    static const char *const reserved[2] = {"codec", "outer"};
    for (int g = 0; ok && g < 2; g++) {
        hid_t group = H5Gcreate2(file, reserved[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = group >= 0 && ckpt_codec_write(group, g == 0 ? meta->codec : NULL);
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

static void prune(const char *ckpt_dir, int keep) {
    int n, *steps = list_steps(ckpt_dir, &n);
    char dir[4096];
    for (int i = keep; i < n; i++) {
        // renamed first: a process killed while deleting leaves a .del directory (removed by the
        // next save), never a step directory with part of its files
        char del[4104];
        snprintf(dir, sizeof dir, "%s/step-%08d", ckpt_dir, steps[i]);
        snprintf(del, sizeof del, "%.4090s.del", dir);
        fs_remove_tree(del);
        fs_remove_tree(rename(dir, del) == 0 ? del : dir);
    }
    free(steps);
}

ts_status ckpt_state_save(const char *ckpt_dir, const gpt2 *m, const tessera_config *cfg,
                          const ckpt_state_meta *meta, const float *master, const float *adam_m,
                          const float *adam_v, int keep) {
    h5attr_quiet();
    if (mkdir(ckpt_dir, 0755) != 0 && errno != EEXIST) {
        log_error("%s: cannot create the checkpoint directory: %s", ckpt_dir, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    char final[4096], tmp[4104], file[4200];
    snprintf(final, sizeof final, "%s/step-%08d", ckpt_dir, meta->step);
    snprintf(tmp, sizeof tmp, "%.4090s.tmp", final);
    remove_stale(ckpt_dir); // left by an interrupted save
    if (mkdir(tmp, 0755) != 0) {
        log_error("%s: cannot create directory: %s", tmp, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    snprintf(file, sizeof file, "%s/%s", tmp, CKPT_STATE_FILE);
    const float *bufs[3] = {master, adam_m, adam_v};
    ts_status st = write_state_file(file, m, cfg, meta, bufs);
    if (st == TS_OK) fault_point("ckpt", meta->step); // tests: die between state and manifest
    if (st == TS_OK) st = manifest_write(tmp);
    if (st != TS_OK) {
        fs_remove_tree(tmp);
        return st;
    }
    // a directory of the same step (a resumed run redoing steps) is replaced
    st = fs_commit_dir(tmp, final);
    if (st == TS_OK) prune(ckpt_dir, keep);
    return st;
}

// ---------------------------------------------------------------------------------------------
// resume

ts_status ckpt_state_pick(const char *ckpt_dir, const char *spec, char *out, size_t out_len) {
    char why[512];
    out[0] = '\0';
    if (strcmp(spec, "auto") != 0) {
        if (manifest_verify(spec, why, sizeof why) != TS_OK) {
            log_error("[run] resume: %s is not an intact checkpoint: %s", spec, why);
            return TS_ERR_INPUT;
        }
        snprintf(out, out_len, "%s", spec);
        return TS_OK;
    }
    int n, *steps = list_steps(ckpt_dir, &n);
    char dir[4096];
    for (int i = 0; i < n && !out[0]; i++) {
        snprintf(dir, sizeof dir, "%s/step-%08d", ckpt_dir, steps[i]);
        if (manifest_verify(dir, why, sizeof why) == TS_OK)
            snprintf(out, out_len, "%s", dir);
        else
            log_warn("skipping step-%08d: %s", steps[i], why);
    }
    free(steps);
    return TS_OK;
}

static ts_status read_group(hid_t file, const char *path, const gpt2 *m, const char *group,
                            float *buf) {
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        char name[GPT2_MAX_NAME + 16];
        snprintf(name, sizeof name, "%s/%s", group, t->name);
        if (H5Lexists(file, group, H5P_DEFAULT) <= 0 || H5Lexists(file, name, H5P_DEFAULT) <= 0) {
            log_error("%s: dataset '/%s' is missing", path, name);
            return TS_ERR_INPUT;
        }
        hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
        hid_t space = H5Dget_space(ds);
        hsize_t dims[2] = {0, 1};
        int nd = H5Sget_simple_extent_ndims(space);
        if (nd == t->ndim) H5Sget_simple_extent_dims(space, dims, NULL);
        ts_status st = TS_OK;
        if (nd != t->ndim || dims[0] != (hsize_t)t->shape[0] ||
            (t->ndim == 2 && dims[1] != (hsize_t)t->shape[1])) {
            log_error("%s: dataset '/%s' has the wrong shape (expected %d x %d)", path, name,
                      t->shape[0], t->ndim == 2 ? t->shape[1] : 1);
            st = TS_ERR_INPUT;
        } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + t->offset) <
                   0) {
            log_error("%s: reading dataset '/%s' failed (file damaged?)", path, name);
            st = TS_ERR_INPUT;
        } else if (H5Aexists(ds, "xxh64") > 0) {
            uint64_t want = 0, got = XXH64(buf + t->offset, t->numel * sizeof(float), 0);
            hid_t a = H5Aopen(ds, "xxh64", H5P_DEFAULT);
            if (a < 0 || H5Aread(a, H5T_NATIVE_UINT64, &want) < 0 || want != got) {
                log_error("%s: dataset '/%s': values hash to %016llx, the dataset's xxh64 "
                          "attribute says %016llx (damaged)",
                          path, name, (unsigned long long)got, (unsigned long long)want);
                st = TS_ERR_INPUT;
            }
            if (a >= 0) H5Aclose(a);
        }
        H5Sclose(space);
        H5Dclose(ds);
        if (st != TS_OK) return st;
    }
    return TS_OK;
}

// the checkpoint's resolved config must describe the same model as the current one
static ts_status check_shape(const char *path, const char *text, const tessera_config *cfg) {
    tessera_config saved;
    config_defaults(&saved);
    if (config_parse_text(&saved, text, strlen(text), path) != TS_OK) return TS_ERR_INPUT;
    const int a_v[5] = {saved.model.layers, saved.model.heads, saved.model.width,
                        saved.model.seq_len, saved.model.vocab};
    const int b_v[5] = {cfg->model.layers, cfg->model.heads, cfg->model.width, cfg->model.seq_len,
                        cfg->model.vocab};
    if (memcmp(a_v, b_v, sizeof a_v) != 0) {
        log_error("%s: the checkpoint's model (layers %d heads %d width %d seq_len %d vocab %d) "
                  "differs from the config's (layers %d heads %d width %d seq_len %d vocab %d); "
                  "resume needs the same [model]",
                  path, a_v[0], a_v[1], a_v[2], a_v[3], a_v[4], b_v[0], b_v[1], b_v[2], b_v[3],
                  b_v[4]);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

ts_status ckpt_state_load(const char *step_dir, const gpt2 *m, const tessera_config *cfg,
                          ckpt_state_meta *meta, float *master, float *adam_m, float *adam_v) {
    h5attr_quiet();
    TS_CHECK(h5zstd_register());
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", step_dir, CKPT_STATE_FILE);
    hid_t file = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (file < 0) {
        log_error("%s: cannot open the checkpoint (not an HDF5 file?)", path);
        return TS_ERR_INPUT;
    }
    ts_status st = TS_OK;
    char *format = read_str_attr(file, path, "format");
    if (!format)
        st = TS_ERR_INPUT;
    else if (strcmp(format, CKPT_STATE_FORMAT) != 0) {
        log_error("%s: attribute 'format' is \"%s\", expected \"%s\"", path, format,
                  CKPT_STATE_FORMAT);
        st = TS_ERR_INPUT;
    }
    free(format);
    int version = 0;
    if (st == TS_OK)
        st = h5attr_read_int(file, path, "tessera checkpoint", "version", H5T_NATIVE_INT, &version);
    if (st == TS_OK && version != CKPT_STATE_VERSION) {
        log_error("%s: checkpoint format version %d, expected %d", path, version,
                  CKPT_STATE_VERSION);
        st = TS_ERR_INPUT;
    }
    if (st == TS_OK)
        st = h5attr_read_int(file, path, "tessera checkpoint", "step", H5T_NATIVE_INT, &meta->step);
    if (st == TS_OK)
        st = h5attr_read_int(file, path, "tessera checkpoint", "world_size", H5T_NATIVE_INT,
                             &meta->world);
    if (st == TS_OK)
        st = h5attr_read_int(file, path, "tessera checkpoint", "global_batch", H5T_NATIVE_INT,
                             &meta->global_batch);
    if (st == TS_OK)
        st = h5attr_read_int(file, path, "tessera checkpoint", "seed", H5T_NATIVE_INT64,
                             &meta->seed);
    if (st == TS_OK)
        st = h5attr_read_int(file, path, "tessera checkpoint", "optimizer_t", H5T_NATIVE_INT,
                             &meta->opt_t);
    if (st == TS_OK)
        st = h5attr_read_int(file, path, "tessera checkpoint", "next_sample", H5T_NATIVE_UINT64,
                             &meta->next_sample);
    if (st == TS_OK) {
        char *text = read_str_attr(file, path, "config");
        st = text ? check_shape(path, text, cfg) : TS_ERR_INPUT;
        free(text);
    }
    if (st == TS_OK && (meta->step < 0 || meta->opt_t < 0 || meta->opt_t > meta->step)) {
        log_error("%s: inconsistent attributes (step %d, optimizer_t %d)", path, meta->step,
                  meta->opt_t);
        st = TS_ERR_INPUT;
    }
    float *bufs[3] = {master, adam_m, adam_v};
    for (int g = 0; g < 3 && st == TS_OK; g++)
        st = read_group(file, path, m, ckpt_groups[g], bufs[g]);
    if (st == TS_OK && meta->codec) st = ckpt_codec_read(file, path, meta->codec);
    H5Fclose(file);
    return st;
}
