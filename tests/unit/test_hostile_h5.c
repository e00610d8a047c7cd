// test_hostile_h5.c — weights files and checkpoints that someone else wrote: every attribute of
// the wrong class, shape or range, links out of the file, external storage, virtual datasets,
// other layouts and filters, and zstd chunks that decode to another size. Each case is a real
// HDF5 file: a good one written by tessera, copied and changed with the HDF5 C API. The reader
// (ckpt_read_config + ckpt_read_weights, ckpt_state_load) must refuse it with TS_ERR_INPUT and
// exactly one error line naming the file and what was expected; the good files, and a
// checkpoint written before the zstd filter recorded its chunk size, must still load.
//
// usage: test_hostile_h5 CONFIG DIR   (CONFIG: configs/tiny.ini, the model of every file)
// Leaves DIR/weights/<case>.h5 and DIR/state/<case>/step-00000010 (with a MANIFEST that
// verifies, so a resume reaches the state file) for the command-line tests in
// tests/cmake/hostile.cmake.
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <hdf5.h>

#include "base/fs.h"
#include "runtime/ckpt.h"
#include "runtime/ckpt_dir.h"
#include "runtime/ckpt_identity.h"
#include "runtime/ckpt_state.h"
#include "runtime/config.h"
#include "runtime/h5zstd.h"
#include "runtime/manifest.h"
#include "runtime/model_config.h"

#include "tests/unit/capture.h"
#include "tests/unit/expect.h"

static char g_dir[2048];
static tessera_config g_cfg;
static model g_model;

#define STEP     10
#define WTE_ROWS 256 // tiny.ini: vocab 256, width 32
#define WTE_COLS 32

// ---------------------------------------------------------------------------------------------
// helpers: files, log capture

static const char *path_of(const char *fmt, const char *a) {
    static char buf[4][4096];
    static int k;
    k = (k + 1) % 4;
    char rel[2048];
    snprintf(rel, sizeof rel, fmt, a);
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, rel);
    return buf[k];
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out) {
        fprintf(stderr, "copy %s -> %s: %s\n", from, to, strerror(errno));
        exit(1);
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    fclose(out);
}

// ---------------------------------------------------------------------------------------------
// HDF5 edits

static hid_t open_rw(const char *path) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    EXPECT(f >= 0, "open %s for writing", path);
    return f;
}

// replace attribute `name` of loc by one of `type` over `space` holding data
static void put_attr(hid_t loc, const char *name, hid_t type, hid_t space, const void *data) {
    if (H5Aexists(loc, name) > 0) H5Adelete(loc, name);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT(a >= 0 && H5Awrite(a, type, data) >= 0, "attribute %s", name);
    if (a >= 0) H5Aclose(a);
}

static void put_scalar(hid_t loc, const char *name, hid_t type, const void *data) {
    hid_t s = H5Screate(H5S_SCALAR);
    put_attr(loc, name, type, s, data);
    H5Sclose(s);
}

static void put_int_array(hid_t loc, const char *name, int n) {
    int v[64];
    for (int i = 0; i < 64; i++)
        v[i] = 2;
    hsize_t d = (hsize_t)n;
    hid_t s = H5Screate_simple(1, &d, NULL);
    put_attr(loc, name, H5T_NATIVE_INT, s, v);
    H5Sclose(s);
}

// a fixed-length string attribute holding n copies of text (n = 0: a scalar)
static void put_string(hid_t loc, const char *name, const char *text, int n) {
    size_t len = strlen(text) + 1;
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len);
    hsize_t d = (hsize_t)(n > 0 ? n : 1);
    hid_t s = n > 0 ? H5Screate_simple(1, &d, NULL) : H5Screate(H5S_SCALAR);
    char *buf = calloc(d, len);
    for (hsize_t i = 0; i < d; i++)
        memcpy(buf + i * len, text, len);
    put_attr(loc, name, t, s, buf);
    free(buf);
    H5Sclose(s);
    H5Tclose(t);
}

static void put_vlen_string(hid_t loc, const char *name, const char *text) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    put_scalar(loc, name, t, &text);
    H5Tclose(t);
}

// the values of a float dataset of the file (wte: WTE_ROWS x WTE_COLS)
static void read_floats(hid_t file, const char *name, float *out) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    EXPECT(ds >= 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0,
           "read %s", name);
    if (ds >= 0) H5Dclose(ds);
}

// replace dataset name by a new one of `type`, shape dims, creation properties dcpl (written
// with data unless data is NULL); returns it open (the caller closes)
static hid_t recreate(hid_t file, const char *name, hid_t type, int ndim, const hsize_t *dims,
                      hid_t dcpl, const void *data) {
    EXPECT(H5Ldelete(file, name, H5P_DEFAULT) >= 0, "delete %s", name);
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    EXPECT(ds >= 0, "create %s", name);
    if (data) EXPECT(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, "w");
    H5Sclose(space);
    return ds;
}

static const hsize_t k_wte_dims[2] = {WTE_ROWS, WTE_COLS};

// ---------------------------------------------------------------------------------------------
// the edits, one per case: f is the open file (weights file or state.h5)

static void e_none(hid_t f) { (void)f; }
static void e_format_array(hid_t f) { put_string(f, "format", "tessera-weights", 64); }
static void e_format_vlen(hid_t f) { put_vlen_string(f, "format", "tessera-weights"); }
static void e_format_other(hid_t f) { put_string(f, "format", "tessera-checkpoint", 0); }
static void e_layers_array(hid_t f) { put_int_array(f, "layers", 64); }
static void e_layers_float(hid_t f) {
    double v = 2.0;
    put_scalar(f, "layers", H5T_NATIVE_DOUBLE, &v);
}
static void e_layers_missing(hid_t f) { H5Adelete(f, "layers"); }
static void e_heads_zero(hid_t f) {
    int v = 0;
    put_scalar(f, "heads", H5T_NATIVE_INT, &v);
}
static void e_vocab_huge(hid_t f) {
    int v = 2147483647;
    put_scalar(f, "vocab", H5T_NATIVE_INT, &v);
}
static void e_step_int64(hid_t f) { // would be clamped to INT_MAX by a plain int read
    int64_t v = ((int64_t)1 << 32) + 10;
    put_scalar(f, "step", H5T_NATIVE_INT64, &v);
}
static void e_padded_other(hid_t f) {
    int v = 384;
    put_scalar(f, "padded_vocab", H5T_NATIVE_INT, &v);
}

static void e_ext_link(hid_t f) {
    H5Ldelete(f, "params/wte", H5P_DEFAULT);
    EXPECT(H5Lcreate_external(path_of("%s", "outside.h5"), "/data", f, "params/wte", H5P_DEFAULT,
                              H5P_DEFAULT) >= 0,
           "external link");
}
static void e_group_ext_link(hid_t f) {
    H5Ldelete(f, "params", H5P_DEFAULT);
    EXPECT(H5Lcreate_external(path_of("%s", "weights/good.h5"), "/params", f, "params", H5P_DEFAULT,
                              H5P_DEFAULT) >= 0,
           "external link to a group");
}
static void e_soft_link(hid_t f) {
    H5Ldelete(f, "params/lnf.b", H5P_DEFAULT);
    EXPECT(H5Lcreate_soft("/params/lnf.w", f, "params/lnf.b", H5P_DEFAULT, H5P_DEFAULT) >= 0,
           "soft link");
}
static void e_external_storage(hid_t f) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    EXPECT(H5Pset_external(dcpl, path_of("%s", "secret.bin"), 0,
                           WTE_ROWS * WTE_COLS * sizeof(float)) >= 0,
           "external storage");
    hid_t ds = recreate(f, "params/wte", H5T_IEEE_F32LE, 2, k_wte_dims, dcpl, NULL);
    H5Dclose(ds);
    H5Pclose(dcpl);
}
static void e_virtual(hid_t f) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t src = H5Screate_simple(2, k_wte_dims, NULL), dst = H5Screate_simple(2, k_wte_dims, NULL);
    EXPECT(H5Pset_virtual(dcpl, dst, path_of("%s", "outside.h5"), "/data", src) >= 0, "virtual");
    hid_t ds = recreate(f, "params/wte", H5T_IEEE_F32LE, 2, k_wte_dims, dcpl, NULL);
    H5Dclose(ds);
    H5Sclose(src);
    H5Sclose(dst);
    H5Pclose(dcpl);
}
static void e_compact(hid_t f) {
    float v[WTE_COLS];
    read_floats(f, "params/lnf.b", v);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(dcpl, H5D_COMPACT);
    hsize_t d = WTE_COLS;
    H5Dclose(recreate(f, "params/lnf.b", H5T_IEEE_F32LE, 1, &d, dcpl, v));
    H5Pclose(dcpl);
}
static void e_chunked_plain(hid_t f) { // chunked, no filter
    float *v = malloc(sizeof(float) * WTE_ROWS * WTE_COLS);
    read_floats(f, "params/wte", v);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {64, WTE_COLS};
    H5Pset_chunk(dcpl, 2, chunk);
    H5Dclose(recreate(f, "params/wte", H5T_IEEE_F32LE, 2, k_wte_dims, dcpl, v));
    H5Pclose(dcpl);
    free(v);
}
static void e_deflate(hid_t f) { // chunked, another filter
    float *v = malloc(sizeof(float) * WTE_ROWS * WTE_COLS);
    read_floats(f, "params/wte", v);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {64, WTE_COLS};
    H5Pset_chunk(dcpl, 2, chunk);
    H5Pset_deflate(dcpl, 4);
    H5Dclose(recreate(f, "params/wte", H5T_IEEE_F32LE, 2, k_wte_dims, dcpl, v));
    H5Pclose(dcpl);
    free(v);
}
static void e_float64(hid_t f) {
    float *v = malloc(sizeof(float) * WTE_ROWS * WTE_COLS);
    read_floats(f, "params/wte", v);
    H5Dclose(recreate(f, "params/wte", H5T_IEEE_F64LE, 2, k_wte_dims, H5P_DEFAULT, v));
    free(v);
}
static void e_contiguous(hid_t f) {
    float *v = malloc(sizeof(float) * WTE_ROWS * WTE_COLS);
    read_floats(f, "params/wte", v);
    H5Dclose(recreate(f, "params/wte", H5T_IEEE_F32LE, 2, k_wte_dims, H5P_DEFAULT, v));
    free(v);
}
static void e_shape(hid_t f) {
    hsize_t d[2] = {WTE_ROWS - 1, WTE_COLS};
    H5Dclose(recreate(f, "params/wte", H5T_IEEE_F32LE, 2, d, H5P_DEFAULT, NULL));
}
static void e_unwritten(hid_t f) {
    H5Dclose(recreate(f, "params/wte", H5T_IEEE_F32LE, 2, k_wte_dims, H5P_DEFAULT, NULL));
}

// state.h5 attributes
static void e_config_array(hid_t f) {
    hid_t a = H5Aopen(f, "config", H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    size_t n = H5Tget_size(t);
    char *text = calloc(n, 1);
    H5Aread(a, t, text);
    H5Aclose(a);
    H5Tclose(t);
    put_string(f, "config", text, 8);
    free(text);
}
static void e_world_zero(hid_t f) {
    int v = 0;
    put_scalar(f, "world_size", H5T_NATIVE_INT, &v);
}
static void e_world_negative(hid_t f) {
    int v = -3;
    put_scalar(f, "world_size", H5T_NATIVE_INT, &v);
}
static void e_next_sample_max(hid_t f) {
    uint64_t v = UINT64_MAX;
    put_scalar(f, "next_sample", H5T_NATIVE_UINT64, &v);
}
static void e_next_sample_other(hid_t f) {
    uint64_t v = (uint64_t)STEP * 6 + 1; // past the samples of the steps done
    put_scalar(f, "next_sample", H5T_NATIVE_UINT64, &v);
}
static void e_step_array(hid_t f) { put_int_array(f, "step", 16); }
static void e_optimizer_t_past_step(hid_t f) {
    int v = STEP + 1;
    put_scalar(f, "optimizer_t", H5T_NATIVE_INT, &v);
}
static void e_seed_string(hid_t f) { put_string(f, "seed", "1337", 0); }
static void e_xxh64_array(hid_t f) {
    hid_t ds = H5Dopen2(f, "adam_v/wte", H5P_DEFAULT);
    put_int_array(ds, "xxh64", 4);
    H5Dclose(ds);
}
static void e_dtype_bf16(hid_t f) {
    hid_t ds = H5Dopen2(f, "params/lnf.w", H5P_DEFAULT);
    put_string(ds, "dtype", "bf16", 0);
    H5Dclose(ds);
}
static void e_adam_ext_link(hid_t f) {
    H5Ldelete(f, "adam_m/wte", H5P_DEFAULT);
    EXPECT(H5Lcreate_external(path_of("%s", "outside.h5"), "/data", f, "adam_m/wte", H5P_DEFAULT,
                              H5P_DEFAULT) >= 0,
           "external link");
}

// zstd chunks: params/wte rewritten as 4 chunks of 64 rows; chunk 1 replaced by raw bytes
static float *g_wte; // the good values
enum { CHUNK_ROWS = 64, CHUNK_FLOATS = CHUNK_ROWS * WTE_COLS };

static hid_t zstd_wte(hid_t f, int write_values) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {CHUNK_ROWS, WTE_COLS};
    H5Pset_chunk(dcpl, 2, chunk);
    EXPECT(h5zstd_set(dcpl, 3) == 0, "zstd");
    hid_t ds =
        recreate(f, "params/wte", H5T_IEEE_F32LE, 2, k_wte_dims, dcpl, write_values ? g_wte : NULL);
    H5Pclose(dcpl);
    return ds;
}

// chunk 1 of ds as one zstd frame of `floats` values (of wte from row 64 on; beyond it: zeros);
// sized: the frame records its content size
static void put_chunk1(hid_t ds, size_t floats, int sized) {
    float *src = calloc(floats, sizeof(float));
    memcpy(src, g_wte + CHUNK_FLOATS,
           (floats < CHUNK_FLOATS ? floats : CHUNK_FLOATS) * sizeof(float));
    size_t cap = ZSTD_compressBound(floats * sizeof(float));
    void *frame = malloc(cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, sized);
    size_t n = ZSTD_compress2(cctx, frame, cap, src, floats * sizeof(float));
    ZSTD_freeCCtx(cctx);
    EXPECT(!ZSTD_isError(n), "compress");
    hsize_t offset[2] = {CHUNK_ROWS, 0};
    EXPECT(H5Dwrite_chunk(ds, H5P_DEFAULT, 0, offset, n, frame) >= 0, "write chunk");
    free(frame);
    free(src);
}

static void e_zstd_good(hid_t f) { H5Dclose(zstd_wte(f, 1)); } // rewritten, still sound
static void e_zstd_big(hid_t f) { // a small frame that decodes to 16 MiB
    hid_t ds = zstd_wte(f, 1);
    put_chunk1(ds, (size_t)4 << 20, 1);
    H5Dclose(ds);
}
static void e_zstd_big_unsized(hid_t f) {
    hid_t ds = zstd_wte(f, 1);
    put_chunk1(ds, (size_t)4 << 20, 0);
    H5Dclose(ds);
}
static void e_zstd_short(hid_t f) { // HDF5 would zero-fill the rest
    hid_t ds = zstd_wte(f, 1);
    put_chunk1(ds, CHUNK_FLOATS - 100, 1);
    H5Dclose(ds);
}
static void e_zstd_short_unsized(hid_t f) {
    hid_t ds = zstd_wte(f, 1);
    put_chunk1(ds, CHUNK_FLOATS - 100, 0);
    H5Dclose(ds);
}
static void e_zstd_missing_chunk(hid_t f) { // chunks 0, 2, 3 written, 1 never
    hid_t ds = zstd_wte(f, 0);
    for (int c = 0; c < 4; c++) {
        if (c == 1) continue;
        size_t cap = ZSTD_compressBound(CHUNK_FLOATS * sizeof(float));
        void *frame = malloc(cap);
        size_t n = ZSTD_compress(frame, cap, g_wte + (size_t)c * CHUNK_FLOATS,
                                 CHUNK_FLOATS * sizeof(float), 3);
        hsize_t offset[2] = {(hsize_t)c * CHUNK_ROWS, 0};
        EXPECT(H5Dwrite_chunk(ds, H5P_DEFAULT, 0, offset, n, frame) >= 0, "write chunk");
        free(frame);
    }
    H5Dclose(ds);
}

// A checkpoint written before the filter recorded its chunk size (cd_values = {level}): made
// with a stand-in filter of the same id that has no set_local, chunks written raw. It must still
// load, with the right values; and its chunks must still be held to their size.
static size_t stand_in_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                              size_t nbytes, size_t *buf_size, void **buf) {
    (void)flags, (void)cd_nelmts, (void)cd_values, (void)nbytes, (void)buf_size, (void)buf;
    return 0; // never called: the chunks are written raw
}
static const H5Z_class2_t k_stand_in = {
    H5Z_CLASS_T_VERS, H5ZSTD_FILTER_ID, 1, 1, "zstd (old)", NULL, NULL, stand_in_filter};

static void legacy_wte(hid_t f, int big) {
    EXPECT(H5Zregister(&k_stand_in) >= 0, "stand-in filter");
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[2] = {CHUNK_ROWS, WTE_COLS};
    H5Pset_chunk(dcpl, 2, chunk);
    const unsigned level[1] = {3};
    H5Pset_filter(dcpl, H5ZSTD_FILTER_ID, H5Z_FLAG_MANDATORY, 1, level);
    hid_t ds = recreate(f, "params/wte", H5T_IEEE_F32LE, 2, k_wte_dims, dcpl, NULL);
    H5Pclose(dcpl);
    for (int c = 0; c < 4; c++) {
        size_t floats = big && c == 2 ? 2 * CHUNK_FLOATS : CHUNK_FLOATS;
        float *src = calloc(floats, sizeof(float));
        memcpy(src, g_wte + (size_t)c * CHUNK_FLOATS, CHUNK_FLOATS * sizeof(float));
        size_t cap = ZSTD_compressBound(floats * sizeof(float));
        void *frame = malloc(cap);
        size_t n = ZSTD_compress(frame, cap, src, floats * sizeof(float), 3);
        hsize_t offset[2] = {(hsize_t)c * CHUNK_ROWS, 0};
        EXPECT(H5Dwrite_chunk(ds, H5P_DEFAULT, 0, offset, n, frame) >= 0, "write chunk");
        free(frame);
        free(src);
    }
    uint64_t sum = XXH64(g_wte, sizeof(float) * WTE_ROWS * WTE_COLS, 0);
    put_scalar(ds, "xxh64", H5T_NATIVE_UINT64, &sum);
    put_string(ds, "dtype", "float32", 0);
    hid_t pl = H5Dget_create_plist(ds);
    unsigned flags, cd[4];
    size_t ncd = 4;
    H5Pget_filter_by_id2(pl, H5ZSTD_FILTER_ID, &flags, &ncd, cd, 0, NULL, NULL);
    EXPECT(ncd == 1, "the stand-in wrote %zu client values, expected the level alone", ncd);
    H5Pclose(pl);
    H5Dclose(ds);
    EXPECT(h5zstd_register() == TS_OK, "the real filter again");
}
static void e_legacy_zstd(hid_t f) { legacy_wte(f, 0); }
static void e_legacy_zstd_big(hid_t f) { legacy_wte(f, 1); }

// ---------------------------------------------------------------------------------------------
// the cases

typedef struct {
    const char *name;
    void (*edit)(hid_t f);
    const char *want; // a part of the one error line; NULL: must load
} hostile_case;

static const hostile_case k_weights[] = {
    {"good", e_none, NULL},
    {"format_array", e_format_array,
     "attribute 'format' holds 64 values (an array), expected the "
     "string \"tessera-weights\""},
    {"format_vlen", e_format_vlen, "attribute 'format' is a variable-length string, expected"},
    {"format_other", e_format_other,
     "attribute 'format' is \"tessera-checkpoint\", expected the string \"tessera-weights\""},
    {"layers_array", e_layers_array,
     "attribute 'layers' holds 64 values (an array), expected one integer in [1, 4096]"},
    {"layers_float", e_layers_float,
     "attribute 'layers' is a float of 8 bytes, expected one integer"},
    {"layers_missing", e_layers_missing, "attribute 'layers' is missing; expected one integer"},
    {"heads_zero", e_heads_zero, "attribute 'heads' is 0, expected one integer in [1, 65536]"},
    {"vocab_huge", e_vocab_huge, "attribute 'vocab' is 2147483647, expected one integer in [2, "},
    {"step_int64", e_step_int64, "attribute 'step' is 4294967306, expected one integer in [0, "},
    {"padded_other", e_padded_other, "inconsistent model shape"},
    {"ext_link", e_ext_link,
     "'/params/wte' is an external link (to another file), expected a "
     "dataset stored in this file"},
    {"group_ext_link", e_group_ext_link, "'/params' is an external link"},
    {"soft_link", e_soft_link, "'/params/lnf.b' is a soft link, expected a dataset"},
    {"external_storage", e_external_storage,
     "dataset '/params/wte' keeps its values in 1 external file(s), expected contiguous"},
    {"virtual", e_virtual, "dataset '/params/wte' is a virtual dataset"},
    {"compact", e_compact, "dataset '/params/lnf.b' has compact layout, expected contiguous"},
    {"chunked", e_chunked_plain, "dataset '/params/wte' has chunked layout, expected contiguous"},
    {"float64", e_float64,
     "dataset '/params/wte' holds 8-byte floats of another format, expected "
     "32-bit little-endian IEEE floats"},
    {"shape", e_shape,
     "dataset '/params/wte' has the wrong shape (rank 2, first dimension 255), "
     "expected (256, 32)"},
    {"unwritten", e_unwritten, "dataset '/params/wte' has no values written"},
};

static const hostile_case k_states[] = {
    {"good", e_none, NULL},
    {"format_array", e_format_array, "attribute 'format' holds 64 values (an array)"},
    {"config_array", e_config_array,
     "attribute 'config' holds 8 values (an array), expected a fixed-length string"},
    {"world_zero", e_world_zero, "attribute 'world_size' is 0, expected one integer in [1, "},
    {"world_negative", e_world_negative, "attribute 'world_size' is -3, expected one integer"},
    {"next_sample_max", e_next_sample_max,
     "attribute 'next_sample' is 18446744073709551615, expected one integer in [0, "},
    {"next_sample_other", e_next_sample_other,
     "expected optimizer_t <= step, world_size <= "
     "global_batch and next_sample <= step * "
     "global_batch"},
    {"step_array", e_step_array, "attribute 'step' holds 16 values (an array)"},
    {"step_int64", e_step_int64, "attribute 'step' is 4294967306, expected one integer in [0, "},
    {"optimizer_t_past_step", e_optimizer_t_past_step,
     "inconsistent attributes (step 10, "
     "optimizer_t 11"},
    {"seed_string", e_seed_string, "attribute 'seed' is a string, expected one integer"},
    {"xxh64_array", e_xxh64_array,
     "attribute 'xxh64' of dataset '/adam_v/wte' holds 4 values (an array), expected one "
     "unsigned 64-bit integer"},
    {"dtype_bf16", e_dtype_bf16,
     "attribute 'dtype' of dataset '/params/lnf.w' is \"bf16\", "
     "expected the string \"float32\""},
    {"ext_link", e_adam_ext_link, "'/adam_m/wte' is an external link"},
    {"external_storage", e_external_storage,
     "keeps its values in 1 external file(s), expected "
     "chunked storage"},
    {"virtual", e_virtual, "dataset '/params/wte' is a virtual dataset"},
    {"contiguous", e_contiguous, "dataset '/params/wte' has contiguous layout, expected chunked"},
    {"deflate", e_deflate, "dataset '/params/wte' has 1 filter(s), id 1, expected chunked"},
    {"zstd_good", e_zstd_good, NULL},
    {"zstd_big", e_zstd_big, "reading dataset '/params/wte' failed"},
    {"zstd_big_unsized", e_zstd_big_unsized, "reading dataset '/params/wte' failed"},
    {"zstd_short", e_zstd_short, "reading dataset '/params/wte' failed"},
    {"zstd_short_unsized", e_zstd_short_unsized, "reading dataset '/params/wte' failed"},
    {"zstd_missing_chunk", e_zstd_missing_chunk, "dataset '/params/wte' has 3 of its 4 chunks"},
    {"legacy_zstd", e_legacy_zstd, NULL},
    {"legacy_zstd_big", e_legacy_zstd_big, "reading dataset '/params/wte' failed"},
};

// run the reader on a file, expect TS_OK (want NULL) or one error line holding want
static void expect_outcome(const char *what, const char *file, ts_status st, char *log,
                           const char *want) {
    if (!want) {
        EXPECT(st == TS_OK, "%s: %s, expected to load:\n%s", what, ts_status_name(st), log);
    } else {
        EXPECT(st == TS_ERR_INPUT, "%s: %s, expected TS_ERR_INPUT", what, ts_status_name(st));
        EXPECT(count_substr(log, "error: ") == 1, "%s: expected one error line:\n%s", what, log);
        EXPECT(strstr(log, file) && strstr(log, want), "%s: expected '%s: ... %s' in:\n%s", what,
               file, want, log);
    }
    free(log);
}

static void run_weights_case(const hostile_case *c) {
    const char *path = path_of("weights/%s.h5", c->name);
    if (strcmp(c->name, "good") != 0) {
        copy_file(path_of("%s", "weights/good.h5"), path);
        hid_t f = open_rw(path);
        c->edit(f);
        H5Fclose(f);
    }
    model_shape mc;
    int step = -1;
    capture_begin();
    ts_status st = ckpt_read_shape(path, &mc, &step);
    if (st == TS_OK) st = ckpt_read_weights(path, &g_model);
    char *log = capture_end();
    expect_outcome(c->name, path, st, log, c->want);
    if (!c->want)
        EXPECT(step == STEP && model_shape_get(&mc, "layers") == 2, "%s: step %d", c->name, step);
}

static void run_state_case(const hostile_case *c, const float *want_master) {
    char dir[4200], file[4300];
    snprintf(dir, sizeof dir, "%s/state/%s", g_dir, c->name);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/state/%s/step-%08d", g_dir, c->name, STEP);
    snprintf(file, sizeof file, "%s/%s", dir, CKPT_STATE_FILE);
    if (strcmp(c->name, "good") != 0) {
        mkdir(dir, 0755);
        char src[4300];
        snprintf(src, sizeof src, "%s/state/good/step-%08d/%s", g_dir, STEP, CKPT_STATE_FILE);
        unlink(file);
        copy_file(src, file);
        hid_t f = open_rw(file);
        c->edit(f);
        H5Fclose(f);
        // a manifest that verifies: the edit is what the reader sees, not a damaged copy
        EXPECT(manifest_write(dir) == TS_OK, "%s: manifest", c->name);
    }
    size_t n = g_model.n_params;
    float *w = calloc(n, sizeof(float)), *m = calloc(n, sizeof(float)),
          *v = calloc(n, sizeof(float));
    ckpt_state_meta meta;
    memset(&meta, 0, sizeof meta); // meta.codec NULL: the /codec state is not wanted
    capture_begin();
    ts_status st = ckpt_state_load(dir, &g_model, &g_cfg, &meta, w, m, v);
    char *log = capture_end();
    expect_outcome(c->name, file, st, log, c->want);
    if (!c->want)
        EXPECT(meta.step == STEP && memcmp(w, want_master, n * sizeof(float)) == 0,
               "%s: step %d, weights as saved", c->name, meta.step);
    free(w);
    free(m);
    free(v);
}

// `tessera ckpt info` reads the attributes through the same checks
static void check_info_meta(void) {
    char file[4300];
    snprintf(file, sizeof file, "%s/state/config_array/step-%08d/%s", g_dir, STEP, CKPT_STATE_FILE);
    ckpt_state_meta meta;
    char *config = NULL;
    capture_begin();
    ts_status st = ckpt_state_read_meta(file, &meta, &config);
    expect_outcome("read_meta config_array", file, st, capture_end(), "attribute 'config' holds");
    EXPECT(config == NULL, "no config text handed out on failure");
    snprintf(file, sizeof file, "%s/state/good/step-%08d/%s", g_dir, STEP, CKPT_STATE_FILE);
    capture_begin();
    st = ckpt_state_read_meta(file, &meta, &config);
    expect_outcome("read_meta good", file, st, capture_end(), NULL);
    EXPECT(config && strstr(config, "[model]") && meta.next_sample == (uint64_t)STEP * 6,
           "config text and next_sample");
    free(config);
}

// ---------------------------------------------------------------------------------------------
// setup: the good files and the outside files links and external storage point at

static void write_outside(void) {
    float *v = malloc(sizeof(float) * WTE_ROWS * WTE_COLS);
    for (int i = 0; i < WTE_ROWS * WTE_COLS; i++)
        v[i] = 7.0f; // what the file must never get
    hid_t f = H5Fcreate(path_of("%s", "outside.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t s = H5Screate_simple(2, k_wte_dims, NULL);
    hid_t ds = H5Dcreate2(f, "data", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0,
           "outside.h5");
    H5Dclose(ds);
    H5Sclose(s);
    H5Fclose(f);
    FILE *raw = fopen(path_of("%s", "secret.bin"), "wb");
    fwrite(v, sizeof(float), WTE_ROWS * WTE_COLS, raw);
    fclose(raw);
    free(v);
}

// the good checkpoint's step directory: the state file, as the checkpoint writer fills it
typedef struct {
    const ckpt_state_meta *meta;
    const float *master, *mom;
} good_state;

static ts_status fill_good_state(const char *tmp_dir, void *ctx) {
    const good_state *g = ctx;
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, CKPT_STATE_FILE);
    return ckpt_state_write(path, &g_model, &g_cfg, g->meta, g->master, g->mom, g->mom);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIG DIR\n", argv[0]);
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "%s", argv[2]);
    log_init(0, 1);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char *text;
    size_t len;
    config_defaults(&g_cfg);
    if (config_read_file(argv[1], &text, &len) != TS_OK ||
        config_parse_text(&g_cfg, text, len, argv[1]) != TS_OK)
        return 1;
    free(text);
    if (fs_mkdir_p(path_of("%s", "weights"), "test dir") != TS_OK ||
        fs_mkdir_p(path_of("%s", "state/good"), "test dir") != TS_OK)
        return 1;
    model_shape mc;
    if (model_config_shape(&g_cfg, &mc) != TS_OK || g_cfg.model.vocab != WTE_ROWS ||
        g_cfg.model.width != WTE_COLS || model_create(&g_model, &mc, backend_cpu(), 1))
        return 1;
    model_init_weights(&g_model, 42);
    size_t n = g_model.n_params;
    float *master = malloc(n * sizeof(float)), *mom = malloc(n * sizeof(float));
    memcpy(master, g_model.master, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        mom[i] = (float)(i % 97) * 1e-4f;
    const model_tensor *wte = model_find_tensor(g_model.tensors, g_model.n_tensors, "wte");
    g_wte = master + wte->offset;

    write_outside();
    EXPECT(ckpt_write_weights(path_of("%s", "weights/good.h5"), &g_model, STEP) == TS_OK, "good");
    ckpt_state_meta meta = {STEP,
                            1,
                            g_cfg.train.global_batch,
                            STEP,
                            g_cfg.run.seed,
                            (uint64_t)STEP * (uint64_t)g_cfg.train.global_batch,
                            NULL,
                            NULL,
                            NULL};
    good_state st = {&meta, master, mom};
    ckpt_identity id;
    ckpt_identity_of(&g_cfg, 1, &id);
    EXPECT(ckpt_dir_save(path_of("%s", "state/good"), STEP, &id, 1, fill_good_state, &st) == TS_OK,
           "good checkpoint");

    for (size_t i = 0; i < sizeof k_weights / sizeof k_weights[0]; i++)
        run_weights_case(&k_weights[i]);
    for (size_t i = 0; i < sizeof k_states / sizeof k_states[0]; i++)
        run_state_case(&k_states[i], master);
    check_info_meta();

    model_destroy(&g_model);
    free(master);
    free(mom);
    printf("hostile HDF5 files: %zu weights and %zu checkpoint cases, %d failure(s)\n",
           sizeof k_weights / sizeof k_weights[0], sizeof k_states / sizeof k_states[0],
           g_failures);
    return g_failures ? 1 : 0;
}
