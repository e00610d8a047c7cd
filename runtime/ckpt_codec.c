// ckpt_codec.c — gradient codec state in a checkpoint's /codec group (see ckpt_codec.h).
#include "runtime/ckpt_codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "collectives/codec.h"
#include "runtime/h5attr.h"
#include "runtime/h5zstd.h"

#define CKPT_CODEC_CHUNK     ((hsize_t)256 << 10) // bytes per chunk of a state dataset
#define CKPT_CODEC_MAX_WORLD (1 << 20)

void ckpt_codec_state_free(ckpt_codec_state *s) {
    free(s->all);
    free(s->lens);
    memset(s, 0, sizeof *s);
}

// ---------------------------------------------------------------------------------------------
// write

static int write_array(hid_t group, const char *name, const unsigned char *data, size_t bytes) {
    hsize_t dims[1] = {(hsize_t)bytes};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = space >= 0 && dcpl >= 0;
    if (ok && bytes > 0) { // an empty dataset cannot be chunked
        hsize_t chunk[1] = {bytes < CKPT_CODEC_CHUNK ? (hsize_t)bytes : CKPT_CODEC_CHUNK};
        ok = H5Pset_chunk(dcpl, 1, chunk) >= 0 && h5zstd_set(dcpl, H5ZSTD_LEVEL_DEFAULT) == 0;
    }
    hid_t ds =
        ok ? H5Dcreate2(group, name, H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    ok = ds >= 0 &&
         (bytes == 0 || H5Dwrite(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    uint64_t sum = XXH64(data, bytes, 0);
    ok = ok && h5attr_write(ds, "xxh64", H5T_NATIVE_UINT64, &sum);
    if (ds >= 0) H5Dclose(ds);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return ok;
}

int ckpt_codec_write(hid_t group, const ckpt_codec_state *s) {
    if (!s || !s->name[0])
        return h5attr_write_str(group, "status", "empty: no codec or outer optimizer");
    hid_t named = H5Gcreate2(group, s->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = named >= 0 && h5attr_write(named, "world_size", H5T_NATIVE_INT, &s->world);
    size_t at = 0;
    for (int r = 0; ok && r < s->world; r++) {
        char rank_name[32];
        snprintf(rank_name, sizeof rank_name, "rank-%d", r);
        hid_t rg = H5Gcreate2(named, rank_name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = rg >= 0;
        size_t pos = 0, bytes;
        char name[CODEC_STATE_NAME_MAX + 1];
        const unsigned char *data;
        int k;
        while (ok && (k = codec_state_next(s->all + at, s->lens[r], &pos, name, &data, &bytes,
                                           "codec state")) == 1)
            ok = write_array(rg, name, data, bytes);
        ok = ok && k == 0;
        if (rg >= 0) H5Gclose(rg);
        at += s->lens[r];
    }
    if (named >= 0) H5Gclose(named);
    return ok;
}

// ---------------------------------------------------------------------------------------------
// read

typedef struct {
    const char *path;
    char where[96]; // "/codec/NAME/rank-R", for messages
    unsigned char *blob;
    size_t len;
    size_t max_bytes; // the most one array may hold (checked before anything is allocated)
    ts_status st;
} ckpt_codec_reader;

// one array of a rank group: a 1-D uint8 dataset whose values hash to its xxh64 attribute
static herr_t read_array(hid_t rg, const char *name, const H5L_info_t *info, void *arg) {
    ckpt_codec_reader *rd = arg;
    // only what tessera writes: a hard link to a dataset whose bytes are in this file (chunked or
    // contiguous storage; no external storage, no virtual dataset), so nothing outside the file
    // (and its manifest) is ever read
    if (info->type != H5L_TYPE_HARD) {
        log_error("%s: %s/%s is a soft or external link, expected a dataset stored in this file",
                  rd->path, rd->where, name);
        rd->st = TS_ERR_INPUT;
        return -1;
    }
    hid_t ds = H5Dopen2(rg, name, H5P_DEFAULT);
    hid_t dcpl = ds >= 0 ? H5Dget_create_plist(ds) : -1;
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    int external = dcpl >= 0 ? H5Pget_external_count(dcpl) : -1;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (ds >= 0 && (external != 0 || (layout != H5D_CHUNKED && layout != H5D_CONTIGUOUS))) {
        log_error("%s: %s/%s is not stored in this file as tessera writes it (chunked or "
                  "contiguous, no external storage, not virtual)",
                  rd->path, rd->where, name);
        H5Dclose(ds);
        rd->st = TS_ERR_INPUT;
        return -1;
    }
    hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
    hid_t type = ds >= 0 ? H5Dget_type(ds) : -1;
    hsize_t dims[1] = {0};
    int shaped = space >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
                 H5Sget_simple_extent_dims(space, dims, NULL) == 1 && type >= 0 &&
                 H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1;
    if (shaped && dims[0] > rd->max_bytes) {
        log_error("%s: %s/%s holds %llu bytes, expected at most %zu", rd->path, rd->where, name,
                  (unsigned long long)dims[0], rd->max_bytes);
        H5Tclose(type);
        H5Sclose(space);
        H5Dclose(ds);
        rd->st = TS_ERR_INPUT;
        return -1;
    }
    unsigned char *data = shaped ? malloc(dims[0] ? (size_t)dims[0] : 1) : NULL;
    uint64_t want = 0;
    const h5attr_spec hash = {"xxh64", H5ATTR_HASH, 0, 0, 0, NULL, 0};
    int good =
        data &&
        (dims[0] == 0 || H5Dread(ds, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0) &&
        h5attr_read_table(ds, rd->path, name, &hash, 1, &want) == TS_OK;
    if (!shaped)
        log_error("%s: %s/%s is not a 1-D array of bytes", rd->path, rd->where, name);
    else if (!good)
        log_error("%s: %s/%s: reading failed (file damaged?)", rd->path, rd->where, name);
    else if (XXH64(data, (size_t)dims[0], 0) != want) {
        log_error("%s: %s/%s: the values do not hash to the dataset's xxh64 (damaged)", rd->path,
                  rd->where, name);
        good = 0;
    }
    if (shaped && good)
        rd->st = codec_state_append(&rd->blob, &rd->len, name, data, (size_t)dims[0]);
    else
        rd->st = TS_ERR_INPUT;
    free(data);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (ds >= 0) H5Dclose(ds);
    return rd->st == TS_OK ? 0 : -1;
}

// 1 when loc/name is a hard link (a soft or external link could lead out of the file)
static int hard_link(hid_t loc, const char *name) {
    H5L_info_t info;
    return H5Lexists(loc, name, H5P_DEFAULT) > 0 &&
           H5Lget_info(loc, name, &info, H5P_DEFAULT) >= 0 && info.type == H5L_TYPE_HARD;
}

// the one group inside /codec: its name is the codec's
static herr_t find_named(hid_t group, const char *name, const H5L_info_t *info, void *arg) {
    (void)group;
    char *out = arg;
    if (info->type != H5L_TYPE_HARD) { // refused below: not a group of this file
        snprintf(out, 32, "\n");
        return 1;
    }
    if (out[0]) { // a second one
        out[0] = '\n';
        return 1;
    }
    snprintf(out, 32, "%s", name);
    return strlen(name) < 32 ? 0 : 1;
}

ts_status ckpt_codec_read_group(hid_t file, const char *path, const char *gname,
                                ckpt_codec_state *s) {
    return ckpt_codec_read_capped(file, path, gname, CKPT_CODEC_MAX_WORLD, SIZE_MAX, s);
}

ts_status ckpt_codec_read_capped(hid_t file, const char *path, const char *gname, int max_world,
                                 size_t max_bytes, ckpt_codec_state *s) {
    memset(s, 0, sizeof *s);
    if (!hard_link(file, gname)) {
        log_error("%s: group '/%s' is missing (or a link), expected a group of this file", path,
                  gname);
        return TS_ERR_INPUT;
    }
    hid_t group = H5Gopen2(file, gname, H5P_DEFAULT);
    if (group < 0) {
        log_error("%s: '/%s' is not a group", path, gname);
        return TS_ERR_INPUT;
    }
    char name[33] = "";
    hsize_t idx = 0;
    herr_t it = H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &idx, find_named, name);
    ts_status st = TS_OK;
    if (it < 0 || it > 0) {
        log_error("%s: '/%s' holds %s", path, gname,
                  it < 0 ? "unreadable links"
                         : "more than one codec's state, a long name, or a link");
        st = TS_ERR_INPUT;
    }
    hid_t named =
        st == TS_OK && name[0] && hard_link(group, name) ? H5Gopen2(group, name, H5P_DEFAULT) : -1;
    if (st == TS_OK && name[0] && named < 0) {
        log_error("%s: '/%s/%s' is not a group", path, gname, name);
        st = TS_ERR_INPUT;
    }
    if (named >= 0) {
        snprintf(s->name, sizeof s->name, "%s", name);
        char kind[80];
        snprintf(kind, sizeof kind, "state group /%s/%s", gname, name);
        const h5attr_spec world = {"world_size", H5ATTR_INT, 0, 1, max_world, NULL, 0};
        st = h5attr_read_table(named, path, kind, &world, 1, &s->world);
        if (st == TS_OK) s->lens = ts_calloc((size_t)s->world, sizeof(size_t), "codec state");
        for (int r = 0; st == TS_OK && r < s->world; r++) {
            ckpt_codec_reader rd = {path, "", s->all, 0, max_bytes, TS_OK};
            size_t before = 0;
            for (int q = 0; q < r; q++)
                before += s->lens[q];
            rd.len = before;
            char rank_name[32];
            snprintf(rank_name, sizeof rank_name, "rank-%d", r);
            snprintf(rd.where, sizeof rd.where, "/%s/%s/%s", gname, name, rank_name);
            hid_t rg = hard_link(named, rank_name) ? H5Gopen2(named, rank_name, H5P_DEFAULT) : -1;
            if (rg < 0) {
                log_error("%s: group '%s' is missing", path, rd.where);
                st = TS_ERR_INPUT;
                break;
            }
            idx = 0;
            if (H5Literate(rg, H5_INDEX_NAME, H5_ITER_INC, &idx, read_array, &rd) < 0 &&
                rd.st == TS_OK) {
                log_error("%s: '%s' holds unreadable links", path, rd.where);
                rd.st = TS_ERR_INPUT;
            }
            H5Gclose(rg);
            s->all = rd.blob;
            s->lens[r] = rd.len - before;
            st = rd.st;
        }
        H5Gclose(named);
    }
    H5Gclose(group);
    if (st != TS_OK) ckpt_codec_state_free(s);
    return st;
}

ts_status ckpt_codec_read(hid_t file, const char *path, ckpt_codec_state *s) {
    return ckpt_codec_read_group(file, path, "codec", s);
}
