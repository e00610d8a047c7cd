// test_ckpt_codec.c — gradient codec state in a checkpoint's /codec group (runtime/ckpt_codec.c).
//
//   test_ckpt_codec DIR   writes DIR/codec-*.h5 and reads them back
//
// Without state the group is what it always was (attribute status, no links) and reads back as
// "no state"; with state every rank's arrays (one empty) come back byte for byte; a flipped
// byte, a missing rank and an array that is not bytes are refused with one error line.
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/codec.h"
#include "runtime/ckpt_codec.h"
#include "runtime/h5attr.h"
#include "tests/unit/expect.h"

enum { WORLD = 3, N = 70001 };

// rank r's blob: residual (N floats), steps (8 bytes), empty (0 bytes), in that order
static void make_blob(int r, unsigned char **blob, size_t *len) {
    float *res = malloc(N * sizeof(float));
    for (size_t i = 0; i < N; i++)
        res[i] = (float)(r + 1) * sinf((float)i);
    uint64_t steps = 1000 + (uint64_t)r;
    *blob = NULL;
    *len = 0;
    CHECK(codec_state_append(blob, len, "residual", res, N * sizeof(float)) == TS_OK);
    CHECK(codec_state_append(blob, len, "steps", &steps, sizeof steps) == TS_OK);
    CHECK(codec_state_append(blob, len, "empty", NULL, 0) == TS_OK);
    free(res);
}

// the array `name` of a blob, or NULL
static const unsigned char *find_array(const unsigned char *blob, size_t len, const char *name,
                                       size_t *bytes) {
    size_t pos = 0;
    char at[CODEC_STATE_NAME_MAX + 1];
    const unsigned char *data;
    while (codec_state_next(blob, len, &pos, at, &data, bytes, "blob") == 1)
        if (strcmp(at, name) == 0) return data;
    return NULL;
}

static void write_file(const char *path, const ckpt_codec_state *s) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t group = H5Gcreate2(file, "codec", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT(ckpt_codec_write(group, s) == 1, "%s: ckpt_codec_write failed", path);
    H5Gclose(group);
    H5Fclose(file);
}

static ts_status read_file(const char *path, ckpt_codec_state *s) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    log_set_quiet_errors(1);
    ts_status st = ckpt_codec_read(file, path, s);
    log_set_quiet_errors(0);
    H5Fclose(file);
    return st;
}

// rewrite one byte of a dataset (its xxh64 attribute then no longer matches), or delete a link
static void damage(const char *path, const char *dataset, const char *unlink) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (dataset) {
        hid_t ds = H5Dopen2(file, dataset, H5P_DEFAULT);
        hsize_t one = 1, at = 5;
        hid_t fspace = H5Dget_space(ds), mspace = H5Screate_simple(1, &one, NULL);
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &at, NULL, &one, NULL);
        unsigned char flipped = 0xA5;
        CHECK(H5Dwrite(ds, H5T_NATIVE_UCHAR, mspace, fspace, H5P_DEFAULT, &flipped) >= 0);
        H5Sclose(mspace), H5Sclose(fspace), H5Dclose(ds);
    }
    if (unlink) CHECK(H5Ldelete(file, unlink, H5P_DEFAULT) >= 0);
    H5Fclose(file);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_ckpt_codec DIR\n");
        return 2;
    }
    h5attr_quiet();
    char path[4096];

    // no state: the group as it always was, read back as none
    snprintf(path, sizeof path, "%s/codec-none.h5", argv[1]);
    write_file(path, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t group = H5Gopen2(file, "codec", H5P_DEFAULT);
    H5G_info_t info;
    CHECK(H5Gget_info(group, &info) >= 0);
    EXPECT(info.nlinks == 0 && H5Aget_num_attrs(group) == 1 && H5Aexists(group, "status") > 0,
           "/codec without state: %llu links, %d attributes", (unsigned long long)info.nlinks,
           H5Aget_num_attrs(group));
    H5Gclose(group);
    H5Fclose(file);
    ckpt_codec_state s;
    EXPECT(read_file(path, &s) == TS_OK && s.name[0] == '\0' && s.world == 0 && !s.all,
           "no state read back as codec \"%s\" of %d ranks", s.name, s.world);

    // every rank's state, back byte for byte
    ckpt_codec_state w = {"int8", WORLD, NULL, calloc(WORLD, sizeof(size_t))};
    unsigned char *blobs[WORLD];
    size_t lens[WORLD], total = 0;
    for (int r = 0; r < WORLD; r++) {
        make_blob(r, &blobs[r], &lens[r]);
        w.lens[r] = lens[r];
        total += lens[r];
    }
    w.all = malloc(total);
    for (int r = 0, at = 0; r < WORLD; at += (int)lens[r], r++)
        memcpy(w.all + at, blobs[r], lens[r]);
    snprintf(path, sizeof path, "%s/codec-state.h5", argv[1]);
    write_file(path, &w);
    ts_status st = read_file(path, &s);
    EXPECT(st == TS_OK && strcmp(s.name, "int8") == 0 && s.world == WORLD,
           "state read back: %s, codec \"%s\" of %d ranks", ts_status_name(st), s.name, s.world);
    size_t at = 0;
    for (int r = 0; st == TS_OK && r < WORLD; r++) {
        EXPECT(s.lens[r] == lens[r], "rank %d: %zu bytes of state, wrote %zu", r, s.lens[r],
               lens[r]);
        const char *names[3] = {"residual", "steps", "empty"};
        for (int k = 0; k < 3; k++) {
            size_t got_n = 0, want_n = 0;
            const unsigned char *got = find_array(s.all + at, s.lens[r], names[k], &got_n);
            const unsigned char *want = find_array(blobs[r], lens[r], names[k], &want_n);
            EXPECT(got && want && got_n == want_n && memcmp(got, want, want_n) == 0,
                   "rank %d: array %s differs (%zu bytes, wrote %zu)", r, names[k], got_n, want_n);
        }
        at += s.lens[r];
    }
    ckpt_codec_state_free(&s);

    // refused: a flipped byte, a missing rank, an array that is not bytes
    damage(path, "/codec/int8/rank-1/residual", NULL);
    EXPECT(read_file(path, &s) == TS_ERR_INPUT && s.all == NULL, "a flipped byte was read");
    write_file(path, &w);
    damage(path, NULL, "/codec/int8/rank-2");
    EXPECT(read_file(path, &s) == TS_ERR_INPUT, "a missing rank was read");
    write_file(path, &w);
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(H5Ldelete(file, "/codec/int8/rank-0/steps", H5P_DEFAULT) >= 0);
    hsize_t two = 2;
    hid_t space = H5Screate_simple(1, &two, NULL);
    hid_t ds = H5Dcreate2(file, "/codec/int8/rank-0/steps", H5T_IEEE_F32LE, space, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds), H5Sclose(space), H5Fclose(file);
    EXPECT(read_file(path, &s) == TS_ERR_INPUT, "an array of floats was read");

    // refused before anything outside the file is read: a rank group that is a soft link, an
    // array that is an external link into another file, an array whose bytes live in an external
    // file; and a world_size out of bounds
    write_file(path, &w);
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(H5Lmove(file, "/codec/int8/rank-1", file, "/rank-1-elsewhere", H5P_DEFAULT,
                  H5P_DEFAULT) >= 0);
    CHECK(H5Lcreate_soft("/rank-1-elsewhere", file, "/codec/int8/rank-1", H5P_DEFAULT,
                         H5P_DEFAULT) >= 0);
    H5Fclose(file);
    EXPECT(read_file(path, &s) == TS_ERR_INPUT, "a rank group behind a soft link was read");
    write_file(path, &w);
    char other[4200];
    snprintf(other, sizeof other, "%s/codec-other.h5", argv[1]);
    write_file(other, &w);
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(H5Ldelete(file, "/codec/int8/rank-0/residual", H5P_DEFAULT) >= 0);
    CHECK(H5Lcreate_external(other, "/codec/int8/rank-0/residual", file,
                             "/codec/int8/rank-0/residual", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    H5Fclose(file);
    EXPECT(read_file(path, &s) == TS_ERR_INPUT, "an array behind an external link was read");
    write_file(path, &w);
    char raw[4200];
    snprintf(raw, sizeof raw, "%s/codec-raw.bin", argv[1]);
    FILE *rf = fopen(raw, "wb");
    if (rf) {
        unsigned char zeros[16] = {0};
        fwrite(zeros, 1, sizeof zeros, rf);
        fclose(rf);
    }
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(H5Ldelete(file, "/codec/int8/rank-0/steps", H5P_DEFAULT) >= 0);
    hsize_t eight = 8;
    space = H5Screate_simple(1, &eight, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    CHECK(H5Pset_external(dcpl, raw, 0, 8) >= 0);
    ds = H5Dcreate2(file, "/codec/int8/rank-0/steps", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl,
                    H5P_DEFAULT);
    H5Dclose(ds), H5Pclose(dcpl), H5Sclose(space), H5Fclose(file);
    EXPECT(read_file(path, &s) == TS_ERR_INPUT, "an array with external storage was read");
    write_file(path, &w);
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(file, "/codec/int8", H5P_DEFAULT);
    int huge = 1 << 30;
    hid_t attr = H5Aopen(g, "world_size", H5P_DEFAULT);
    CHECK(attr >= 0 && H5Awrite(attr, H5T_NATIVE_INT, &huge) >= 0);
    H5Aclose(attr), H5Gclose(g), H5Fclose(file);
    EXPECT(read_file(path, &s) == TS_ERR_INPUT, "a world_size of 2^30 was read");

    // the trainer's bounds, checked before anything is allocated: more ranks than the
    // checkpoint's world, an array longer than a rank's state can be
    write_file(path, &w);
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    log_set_quiet_errors(1);
    st = ckpt_codec_read_capped(file, path, "codec", WORLD - 1, SIZE_MAX, &s);
    EXPECT(st == TS_ERR_INPUT, "3 ranks of state read with a bound of 2");
    st = ckpt_codec_read_capped(file, path, "codec", WORLD, N * sizeof(float) - 1, &s);
    EXPECT(st == TS_ERR_INPUT && s.all == NULL, "an array past the byte bound was read");
    st = ckpt_codec_read_capped(file, path, "codec", WORLD, N * sizeof(float), &s);
    EXPECT(st == TS_OK && s.world == WORLD, "state within its bounds refused");
    log_set_quiet_errors(0);
    ckpt_codec_state_free(&s);
    H5Fclose(file);

    // the same layout under /outer (local SGD's state): read back whole; a flipped byte, a
    // missing rank and a group that is a soft link are refused
    snprintf(path, sizeof path, "%s/outer-state.h5", argv[1]);
    ckpt_codec_state o = {"diloco", WORLD, w.all, w.lens};
    for (int k = 0; k < 4; k++) {
        file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t og =
            H5Gcreate2(file, k == 3 ? "elsewhere" : "outer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        CHECK(ckpt_codec_write(og, &o) == 1);
        H5Gclose(og);
        if (k == 3)
            CHECK(H5Lcreate_soft("/elsewhere", file, "outer", H5P_DEFAULT, H5P_DEFAULT) >= 0);
        H5Fclose(file);
        if (k == 1) damage(path, "/outer/diloco/rank-1/residual", NULL);
        if (k == 2) damage(path, NULL, "/outer/diloco/rank-2");
        ckpt_codec_state back;
        file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        log_set_quiet_errors(1);
        st = ckpt_codec_read_group(file, path, "outer", &back);
        log_set_quiet_errors(0);
        H5Fclose(file);
        if (k == 0) {
            EXPECT(st == TS_OK && strcmp(back.name, "diloco") == 0 && back.world == WORLD,
                   "/outer state read back: %s", ts_status_name(st));
            // the arrays come back by name (their order in a blob may differ)
            for (int r = 0, at_w = 0, at_b = 0; st == TS_OK && r < WORLD; r++) {
                size_t nw = 0, nb = 0;
                const unsigned char *x = find_array(w.all + at_w, w.lens[r], "residual", &nw);
                const unsigned char *y = find_array(back.all + at_b, back.lens[r], "residual", &nb);
                EXPECT(x && y && nw == nb && memcmp(x, y, nw) == 0 && back.lens[r] == w.lens[r],
                       "/outer rank %d's state differs", r);
                at_w += (int)w.lens[r], at_b += (int)back.lens[r];
            }
        } else
            EXPECT(st == TS_ERR_INPUT, "/outer case %d (damaged) was read", k);
        ckpt_codec_state_free(&back);
    }

    for (int r = 0; r < WORLD; r++)
        free(blobs[r]);
    ckpt_codec_state_free(&w);
    if (g_failures) return 1;
    printf("test_ckpt_codec: all checks passed\n");
    return 0;
}
