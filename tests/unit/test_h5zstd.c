// test_h5zstd.c — the zstd HDF5 filter (runtime/h5zstd.c) in-process: exact round trips of a
// compressible float dataset and an incompressible random one, their stored sizes, the filter's
// place in the dataset's pipeline (level and chunk size), stored chunks that plain libzstd
// decodes, chunks from other writers (frames without a content size, several frames in one
// chunk), corrupt and truncated chunks and chunks that decode to more or fewer bytes than the
// chunk holds, which must fail to read, and a read that must fail once the filter is
// unregistered.
//
// usage: test_h5zstd DIR
// Leaves DIR/h5zstd.h5 (datasets /smooth, /random, /fast) for the h5dump and h5py checks in
// tests/cmake/h5zstd.cmake; the data formulas below are repeated in tests/unit/h5zstd_h5py.py.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

#include "runtime/h5zstd.h"

#include "tests/unit/expect.h"

// ---------------------------------------------------------------------------------------------
// the data: smooth[i] = 0.25 * (i % 64) + i / 4096 (exact in float, very compressible);
// random[i] = xorshift32 from seed 2463534242 (every bit random: zstd cannot shrink it)

enum { SMOOTH_N = 100000, SMOOTH_CHUNK = 16384, RANDOM_N = 50000, RANDOM_CHUNK = 8192 };
enum { FAST_N = 5000, FAST_CHUNK = 1000 };

static float smooth_value(size_t i) { return 0.25f * (float)(i % 64) + (float)(i / 4096); }

static void fill_random(uint32_t *v, size_t n) {
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v[i] = x;
    }
}

// ---------------------------------------------------------------------------------------------
// HDF5 helpers

static hid_t create_dataset(hid_t file, const char *name, hid_t type, hsize_t n, hsize_t chunk,
                            int level) {
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    EXPECT(h5zstd_set(dcpl, level) == 0, "h5zstd_set(%s, %d)", name, level);
    hid_t dset = H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    EXPECT(dset >= 0, "create %s", name);
    H5Pclose(dcpl);
    H5Sclose(space);
    return dset;
}

static void write_dataset(hid_t file, const char *name, hid_t type, const void *data, hsize_t n,
                          hsize_t chunk, int level) {
    hid_t dset = create_dataset(file, name, type, n, chunk, level);
    EXPECT(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0, "write %s", name);
    H5Dclose(dset);
}

// read a whole dataset into out; returns the H5Dread status
static herr_t read_dataset(hid_t file, const char *name, hid_t type, void *out) {
    hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    if (dset < 0) return -1;
    herr_t rc = H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
    H5Dclose(dset);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// checks

// write the three datasets, reopen, compare exactly, check sizes and the pipeline
static void test_round_trip(const char *path, const float *smooth, const uint32_t *random) {
    float *fast = malloc(FAST_N * sizeof *fast);
    for (size_t i = 0; i < FAST_N; i++)
        fast[i] = smooth_value(i);

    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT(file >= 0, "create %s", path);
    write_dataset(file, "/smooth", H5T_NATIVE_FLOAT, smooth, SMOOTH_N, SMOOTH_CHUNK, 3);
    write_dataset(file, "/random", H5T_NATIVE_UINT32, random, RANDOM_N, RANDOM_CHUNK, 1);
    write_dataset(file, "/fast", H5T_NATIVE_FLOAT, fast, FAST_N, FAST_CHUNK, -3);
    H5Fclose(file);

    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    float *smooth_back = calloc(SMOOTH_N, sizeof *smooth_back);
    uint32_t *random_back = calloc(RANDOM_N, sizeof *random_back);
    float *fast_back = calloc(FAST_N, sizeof *fast_back);
    EXPECT(read_dataset(file, "/smooth", H5T_NATIVE_FLOAT, smooth_back) >= 0, "read /smooth");
    EXPECT(read_dataset(file, "/random", H5T_NATIVE_UINT32, random_back) >= 0, "read /random");
    EXPECT(read_dataset(file, "/fast", H5T_NATIVE_FLOAT, fast_back) >= 0, "read /fast");
    EXPECT(memcmp(smooth, smooth_back, SMOOTH_N * sizeof *smooth) == 0, "/smooth differs");
    EXPECT(memcmp(random, random_back, RANDOM_N * sizeof *random) == 0, "/random differs");
    EXPECT(memcmp(fast, fast_back, FAST_N * sizeof *fast) == 0, "/fast differs");

    // stored sizes: the smooth data shrinks at least 10x; the random data is stored at its size
    // plus a few bytes of frame header per chunk (zstd falls back to raw blocks)
    size_t smooth_raw = SMOOTH_N * sizeof(float), random_raw = RANDOM_N * sizeof(uint32_t);
    size_t random_chunks = (RANDOM_N + RANDOM_CHUNK - 1) / RANDOM_CHUNK;
    hid_t dset = H5Dopen2(file, "/smooth", H5P_DEFAULT);
    hsize_t smooth_stored = H5Dget_storage_size(dset);
    EXPECT(smooth_stored > 0 && smooth_stored * 10 < smooth_raw, "/smooth stores %llu of %zu bytes",
           (unsigned long long)smooth_stored, smooth_raw);

    // the pipeline names filter 32015 with the level and the chunk's bytes as its client values
    hid_t dcpl = H5Dget_create_plist(dset);
    unsigned flags = 0, cd[4] = {0};
    size_t ncd = 4;
    char name[32] = "";
    EXPECT(H5Pget_filter_by_id2(dcpl, H5ZSTD_FILTER_ID, &flags, &ncd, cd, sizeof name, name,
                                NULL) >= 0,
           "filter %d missing from /smooth", H5ZSTD_FILTER_ID);
    EXPECT(ncd == 2 && cd[0] == 3 && cd[1] == SMOOTH_CHUNK * sizeof(float),
           "cd_values: %zu values, %u %u (expected 2: 3, %zu)", ncd, cd[0], cd[1],
           SMOOTH_CHUNK * sizeof(float));
    EXPECT(strcmp(name, "zstd") == 0, "filter name '%s'", name);
    H5Pclose(dcpl);

    // a stored chunk is a plain zstd frame: libzstd alone decodes it (other readers rely on this)
    hsize_t offset = SMOOTH_CHUNK, chunk_bytes = 0;
    EXPECT(H5Dget_chunk_storage_size(dset, &offset, &chunk_bytes) >= 0, "chunk size");
    void *raw = malloc(chunk_bytes);
    uint32_t mask = 1;
    EXPECT(H5Dread_chunk(dset, H5P_DEFAULT, &offset, &mask, raw) >= 0 && mask == 0,
           "read chunk 1 raw (filter mask %u)", mask);
    float *plain = malloc(SMOOTH_CHUNK * sizeof *plain);
    size_t got = ZSTD_decompress(plain, SMOOTH_CHUNK * sizeof *plain, raw, chunk_bytes);
    EXPECT(got == SMOOTH_CHUNK * sizeof *plain, "ZSTD_decompress: %s",
           ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size");
    EXPECT(memcmp(plain, smooth + SMOOTH_CHUNK, SMOOTH_CHUNK * sizeof *plain) == 0,
           "chunk 1 decoded by libzstd differs");
    free(plain);
    free(raw);
    H5Dclose(dset);

    dset = H5Dopen2(file, "/random", H5P_DEFAULT);
    hsize_t random_stored = H5Dget_storage_size(dset);
    EXPECT(random_stored >= random_raw && random_stored <= random_raw + 64 * random_chunks,
           "/random stores %llu bytes for %zu raw", (unsigned long long)random_stored, random_raw);
    H5Dclose(dset);
    H5Fclose(file);

    // the whole file is smaller than the smooth data alone would be uncompressed
    struct stat st;
    EXPECT(stat(path, &st) == 0 && (size_t)st.st_size < smooth_raw + random_raw,
           "file is %lld bytes, raw data %zu", (long long)st.st_size, smooth_raw + random_raw);
    free(fast);
    free(smooth_back);
    free(random_back);
    free(fast_back);
}

// chunks written as raw bytes (bypassing the filter on write) and read through it
static void write_raw_chunk(hid_t dset, hsize_t chunk_index, const void *bytes, size_t n) {
    hsize_t offset = chunk_index * SMOOTH_CHUNK;
    EXPECT(H5Dwrite_chunk(dset, H5P_DEFAULT, 0, &offset, n, bytes) >= 0, "write raw chunk %llu",
           (unsigned long long)chunk_index);
}

// a dataset of one chunk holding `bytes`: 1 if it reads back equal to smooth[0..SMOOTH_CHUNK),
// 0 if it reads back different, -1 if the read fails
static int read_raw_chunk(hid_t file, const char *name, const void *bytes, size_t n,
                          const float *smooth) {
    hid_t dset = create_dataset(file, name, H5T_NATIVE_FLOAT, SMOOTH_CHUNK, SMOOTH_CHUNK, 3);
    write_raw_chunk(dset, 0, bytes, n);
    H5Dclose(dset);
    float *back = calloc(SMOOTH_CHUNK, sizeof *back);
    int rc = -1;
    if (read_dataset(file, name, H5T_NATIVE_FLOAT, back) >= 0)
        rc = memcmp(back, smooth, SMOOTH_CHUNK * sizeof *back) == 0;
    free(back);
    return rc;
}

static void test_foreign_chunks(const char *path, const float *smooth) {
    size_t raw_bytes = SMOOTH_CHUNK * sizeof(float), half = raw_bytes / 2;
    size_t cap = ZSTD_compressBound(raw_bytes) + 64;
    char *frame = malloc(cap), *two = malloc(2 * cap), *junk = malloc(cap);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);

    // one frame that does not record its content size (as streaming writers may produce)
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
    size_t nframe = ZSTD_compress2(cctx, frame, cap, smooth, raw_bytes);
    ZSTD_freeCCtx(cctx);
    EXPECT(!ZSTD_isError(nframe) &&
               ZSTD_getFrameContentSize(frame, nframe) == ZSTD_CONTENTSIZE_UNKNOWN,
           "unsized frame");
    EXPECT(read_raw_chunk(file, "/unsized", frame, nframe, smooth) == 1, "unsized frame read");

    // two frames in one chunk, each with its content size
    size_t a = ZSTD_compress(two, cap, smooth, half, 3);
    size_t b = ZSTD_compress(two + a, cap, (const char *)smooth + half, raw_bytes - half, 3);
    EXPECT(!ZSTD_isError(a) && !ZSTD_isError(b), "two frames");
    EXPECT(read_raw_chunk(file, "/two_frames", two, a + b, smooth) == 1, "two frames read");

    // failures: HDF5 must report an error, never return wrong data or crash
    H5E_auto2_t saved_func;
    void *saved_data;
    H5Eget_auto2(H5E_DEFAULT, &saved_func, &saved_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (size_t i = 0; i < cap; i++)
        junk[i] = (char)(i * 131 + 7);
    EXPECT(read_raw_chunk(file, "/junk", junk, 4096, smooth) == -1, "junk chunk read");
    EXPECT(read_raw_chunk(file, "/truncated", two, a - 5, smooth) == -1, "truncated frame read");
    EXPECT(read_raw_chunk(file, "/truncated_unsized", frame, nframe - 5, smooth) == -1,
           "truncated unsized frame read");
    // a chunk must decode to exactly its size (cd_values[1]): half of it is refused, not
    // zero-filled; more is refused before it is decoded (sized) or as soon as it overflows
    EXPECT(read_raw_chunk(file, "/one_of_two", two, a, smooth) == -1, "half a chunk read");
    size_t big_bytes = 4 * raw_bytes;
    char *big = calloc(big_bytes, 1), *zbig = malloc(ZSTD_compressBound(big_bytes));
    memcpy(big, smooth, raw_bytes);
    size_t nbig = ZSTD_compress(zbig, ZSTD_compressBound(big_bytes), big, big_bytes, 3);
    EXPECT(read_raw_chunk(file, "/too_big", zbig, nbig, smooth) == -1, "a chunk 4x too big read");
    cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
    nbig = ZSTD_compress2(cctx, zbig, ZSTD_compressBound(big_bytes), big, raw_bytes + 1);
    EXPECT(read_raw_chunk(file, "/one_byte_more", zbig, nbig, smooth) == -1,
           "an unsized frame one byte too long read");
    nbig = ZSTD_compress2(cctx, zbig, ZSTD_compressBound(big_bytes), big, raw_bytes - 4);
    EXPECT(read_raw_chunk(file, "/one_float_less", zbig, nbig, smooth) == -1,
           "an unsized frame one float short read");
    ZSTD_freeCCtx(cctx);
    free(big);
    free(zbig);
    H5Eset_auto2(H5E_DEFAULT, saved_func, saved_data);

    H5Fclose(file);
    free(frame);
    free(two);
    free(junk);
}

// without the filter (unregistered, plugins off) the data must not be readable: the filter is
// really on the data path; registering again makes it readable
static void test_unregistered(const char *path, const float *smooth) {
    float *back = calloc(SMOOTH_N, sizeof *back);
    H5E_auto2_t saved_func;
    void *saved_data;
    H5Eget_auto2(H5E_DEFAULT, &saved_func, &saved_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    EXPECT(H5PLset_loading_state(0) >= 0, "plugins off");
    EXPECT(H5Zunregister(H5ZSTD_FILTER_ID) >= 0, "unregister");
    EXPECT(H5Zfilter_avail(H5ZSTD_FILTER_ID) <= 0, "filter still available");
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    EXPECT(read_dataset(file, "/smooth", H5T_NATIVE_FLOAT, back) < 0, "read without the filter");
    H5Fclose(file);
    H5Eset_auto2(H5E_DEFAULT, saved_func, saved_data);

    EXPECT(h5zstd_register() == TS_OK && h5zstd_register() == TS_OK, "register again");
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    EXPECT(read_dataset(file, "/smooth", H5T_NATIVE_FLOAT, back) >= 0 &&
               memcmp(back, smooth, SMOOTH_N * sizeof *back) == 0,
           "read after registering again");
    H5Fclose(file);
    EXPECT(H5PLset_loading_state(H5PL_ALL_PLUGIN) >= 0, "plugins on");
    free(back);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    char path[2048], foreign[2048];
    snprintf(path, sizeof path, "%s/h5zstd.h5", argv[1]);
    snprintf(foreign, sizeof foreign, "%s/h5zstd_foreign.h5", argv[1]);
    mkdir(argv[1], 0755);

    float *smooth = malloc(SMOOTH_N * sizeof *smooth);
    uint32_t *random = malloc(RANDOM_N * sizeof *random);
    for (size_t i = 0; i < SMOOTH_N; i++)
        smooth[i] = smooth_value(i);
    fill_random(random, RANDOM_N);

    EXPECT(h5zstd_register() == TS_OK && h5zstd_register() == TS_OK, "register twice");
    EXPECT(H5Zfilter_avail(H5ZSTD_FILTER_ID) > 0, "filter not available after registering");
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    EXPECT(h5zstd_set(dcpl, 23) == -1, "level 23 accepted");
    H5Pclose(dcpl);

    test_round_trip(path, smooth, random);
    test_foreign_chunks(foreign, smooth);
    test_unregistered(path, smooth);

    free(smooth);
    free(random);
    if (g_failures) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("h5zstd: all checks passed (%s)\n", path);
    return 0;
}
