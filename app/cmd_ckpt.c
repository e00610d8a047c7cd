// cmd_ckpt.c — `tessera ckpt verify|info`: check and describe checkpoints from the command line.
//
// verify runs the same check a resume uses (manifest_verify) and says in one line why a copy is
// not whole. info only describes: for a directory it prints what the manifest lists without
// hashing anything, and the state file's attributes (checked as a resume checks them); for a
// weights file it prints the model shape, the step and every tensor with its shape, each checked
// to be stored in the file as tessera writes it (no link or storage outside the file). A file
// that fails a check is one error line and exit 2.

#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/commands.h"
#include "base/common.h"
#include "models/model.h"
#include "runtime/ckpt.h"
#include "runtime/ckpt_identity.h"
#include "runtime/ckpt_state.h"
#include "runtime/h5read.h"
#include "runtime/manifest.h"

static void ckpt_usage(FILE *out) {
    fprintf(out,
            "usage: tessera ckpt verify DIR\n"
            "       tessera ckpt info PATH\n"
            "\n"
            "  verify DIR   check a checkpoint directory against its MANIFEST: every listed file\n"
            "               present with its size and XXH64 hash, no other file, the manifest's\n"
            "               own checksum intact. Exit 0 intact, 1 damaged (one line says what),\n"
            "               2 DIR is not a readable directory.\n"
            "  info PATH    for a checkpoint directory: the files its MANIFEST lists, with sizes\n"
            "               (nothing is hashed: use verify); for a weights file written by\n"
            "               `tessera train` (model.h5): model shape, step, tensors and sizes.\n"
            "               Exit 0, or 2 when PATH cannot be read.\n");
}

// PATH must be a directory we can list and enter; else one error line and exit 2
static int check_readable_dir(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        log_error("%s: cannot read checkpoint directory: %s", path, strerror(errno));
        return 0;
    }
    if (!S_ISDIR(sb.st_mode)) {
        log_error("%s: not a directory (expected a checkpoint directory holding a MANIFEST)", path);
        return 0;
    }
    if (access(path, R_OK | X_OK) != 0) {
        log_error("%s: cannot read checkpoint directory: %s", path, strerror(errno));
        return 0;
    }
    return 1;
}

static int ckpt_verify_cmd(const char *path) {
    if (!check_readable_dir(path)) return TS_EXIT_INPUT;
    manifest m;
    char why[1024];
    ts_status st = manifest_verify_into(path, &m, why, sizeof why);
    if (st != TS_OK) {
        log_error("%s: not intact: %s", path, why);
        return 1;
    }
    printf("%s: intact (%d files, %" PRIu64 " bytes)\n", path, m.n_files, m.total_bytes);
    manifest_free(&m);
    return TS_EXIT_OK;
}

// sums over the datasets of one group: logical bytes and bytes stored (compressed)
typedef struct {
    int datasets;
    unsigned long long logical, stored;
} ckpt_sizes;

static herr_t ckpt_size_visit(hid_t obj, const char *name, const H5O_info_t *info, void *ctx) {
    ckpt_sizes *z = ctx;
    if (info->type != H5O_TYPE_DATASET) return 0;
    hid_t ds = H5Dopen2(obj, name, H5P_DEFAULT);
    if (ds < 0) return 0;
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : 0;
    size_t es = type >= 0 ? H5Tget_size(type) : 0;
    z->datasets++;
    z->logical += (unsigned long long)(n > 0 ? n : 0) * es;
    z->stored += (unsigned long long)H5Dget_storage_size(ds);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return 0;
}

// what a checkpoint's state.h5 holds: step and run attributes, datasets, compression ratio.
// Nothing when there is no state.h5; exit 2 when it is not a sound one (attributes checked).
static int ckpt_info_state(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_STATE_FILE);
    struct stat sb;
    if (lstat(path, &sb) != 0 && errno == ENOENT) return TS_EXIT_OK;
    ckpt_state_meta meta;
    char *config = NULL;
    if (ckpt_state_read_meta(path, &meta, &config) != TS_OK) return TS_EXIT_INPUT; // logged
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        free(config);
        log_error("%s: cannot open HDF5 file", path);
        return TS_EXIT_INPUT;
    }
    printf("state.h5:\n");
    printf("  %-14s %d\n", "step", meta.step);
    printf("  %-14s %d\n", "world_size", meta.world);
    printf("  %-14s %d\n", "global_batch", meta.global_batch);
    printf("  %-14s %lld\n", "seed", (long long)meta.seed);
    printf("  %-14s %d\n", "optimizer_t", meta.opt_t);
    printf("  %-14s %llu\n", "next_sample", (unsigned long long)meta.next_sample);
    static const char *groups[] = {"params", "adam_m", "adam_v"};
    ckpt_sizes all = {0, 0, 0};
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        if (H5Lexists(file, groups[g], H5P_DEFAULT) <= 0) continue;
        hid_t grp = H5Gopen2(file, groups[g], H5P_DEFAULT);
        ckpt_sizes z = {0, 0, 0};
        // H5Ovisit follows hard links only: nothing outside the file is looked at
        if (grp >= 0) H5Ovisit(grp, H5_INDEX_NAME, H5_ITER_NATIVE, ckpt_size_visit, &z);
        if (grp >= 0) H5Gclose(grp);
        printf("  /%-13s %d datasets, %llu bytes, stored in %llu (compression %.2fx)\n", groups[g],
               z.datasets, z.logical, z.stored,
               z.stored ? (double)z.logical / (double)z.stored : 0.0);
        all.datasets += z.datasets;
        all.logical += z.logical;
        all.stored += z.stored;
    }
    printf("  total          %d datasets, %llu bytes, stored in %llu (compression %.2fx)\n",
           all.datasets, all.logical, all.stored,
           all.stored ? (double)all.logical / (double)all.stored : 0.0);
    printf("config:\n%s", config); // the resolved config, as saved
    free(config);
    H5Fclose(file);
    return TS_EXIT_OK;
}

static int ckpt_info_dir(const char *path) {
    if (!check_readable_dir(path)) return TS_EXIT_INPUT;
    manifest m;
    char why[1024];
    if (manifest_load(path, &m, why, sizeof why) != TS_OK) {
        log_error("%s: %s", path, why);
        return TS_EXIT_INPUT;
    }
    printf("%s: checkpoint directory, MANIFEST lists %d files, %" PRIu64
           " bytes (not verified: see tessera ckpt verify)\n",
           path, m.n_files, m.total_bytes);
    for (int i = 0; i < m.n_files; i++)
        printf("  %14" PRIu64 "  %016" PRIx64 "  %s\n", m.files[i].size, m.files[i].xxh64,
               m.files[i].name);
    manifest_free(&m);
    // the run that wrote it (runtime/ckpt_identity.h): what pruning and --resume auto compare
    ckpt_identity id;
    int present = 0;
    if (ckpt_identity_read(path, &id, &present, why, sizeof why) != TS_OK)
        printf("identity: unreadable (%s)\n", why);
    else if (!present)
        printf("identity: none (written before run identities: lineage 0, any run)\n");
    else
        printf("identity: lineage %016" PRIx64 ", seed %" PRId64 ", config %016" PRIx64 "\n",
               id.lineage, id.seed, id.config_hash);
    return ckpt_info_state(path);
}

static int ckpt_info_weights(const char *path) {
    model_shape shape;
    int step;
    if (ckpt_read_shape(path, &shape, &step) != TS_OK) return TS_EXIT_INPUT; // logged
    size_t n_params = 0;
    int n = model_param_table(&shape, NULL, 0, &n_params);
    model_tensor *t = ts_malloc((size_t)n * sizeof *t, "tensor table");
    model_param_table(&shape, t, n, &n_params);

    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        log_error("%s: cannot open HDF5 file", path);
        free(t);
        return TS_EXIT_INPUT;
    }
    struct stat sb;
    long long file_bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    printf("%s: tessera weights, step %d\n", path, step);
    // the config dims by name, the derived ones in parentheses ("vocab 256 (padded 256)"); an
    // architecture other than GPT-2 (the default) named first
    printf("model: ");
    if (strcmp(shape.arch->name, "gpt2") != 0) printf("%s, ", shape.arch->name);
    for (int i = 0; i < shape.arch->n_dims; i++) {
        const model_dim *d = &shape.arch->dims[i];
        printf(d->from_config ? "%s%s %d" : "%s(%s %d)",
               i == 0           ? ""
               : d->from_config ? ", "
                                : " ",
               d->label ? d->label : d->name, shape.dim[i]);
    }
    printf("\n");
    printf("tensors: %d, %zu parameters, %zu bytes as float32; file %lld bytes\n", n, n_params,
           n_params * sizeof(float), file_bytes);
    int rc = TS_EXIT_OK;
    for (int i = 0; i < n; i++) {
        // stored in this file, as tessera writes it, with the model's shape (nothing is read)
        char name[MODEL_MAX_NAME + 16];
        snprintf(name, sizeof name, "params/%s", t[i].name);
        const hsize_t dims[2] = {(hsize_t)t[i].shape[0], (hsize_t)t[i].shape[1]};
        if (h5read_tensor(file, path, name, t[i].ndim, dims, H5READ_CONTIGUOUS, NULL, NULL) !=
            TS_OK) {
            rc = TS_EXIT_INPUT; // logged
            break;
        }
        char shape[64];
        if (t[i].ndim == 1)
            snprintf(shape, sizeof shape, "(%d)", t[i].shape[0]);
        else
            snprintf(shape, sizeof shape, "(%d, %d)", t[i].shape[0], t[i].shape[1]);
        printf("  %-24s %s\n", t[i].name, shape);
    }
    H5Fclose(file);
    free(t);
    return rc;
}

static int ckpt_info_cmd(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        log_error("%s: cannot read: %s", path, strerror(errno));
        return TS_EXIT_INPUT;
    }
    if (S_ISDIR(sb.st_mode)) return ckpt_info_dir(path);
    return ckpt_info_weights(path);
}

int cmd_ckpt(int argc, char **argv) {
    log_init(0, 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        ckpt_usage(stdout);
        return TS_EXIT_OK;
    }
    if (argc < 2) {
        log_error("ckpt: expected a subcommand, verify or info (see tessera ckpt --help)");
        return TS_EXIT_INPUT;
    }
    const char *sub = argv[1];
    int is_verify = strcmp(sub, "verify") == 0, is_info = strcmp(sub, "info") == 0;
    if (!is_verify && !is_info) {
        log_error("ckpt: unknown subcommand '%s' (expected verify or info)", sub);
        return TS_EXIT_INPUT;
    }
    if (argc != 3 || argv[2][0] == '-') {
        log_error("ckpt %s: expected exactly one PATH (see tessera ckpt --help)", sub);
        return TS_EXIT_INPUT;
    }
    return is_verify ? ckpt_verify_cmd(argv[2]) : ckpt_info_cmd(argv[2]);
}
