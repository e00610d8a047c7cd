// h5read.c — opening HDF5 files as regular files only, and float32 tensors read after checking
// where their bytes come from (see h5read.h).
#include "runtime/h5read.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "runtime/h5attr.h"
#include "runtime/h5zstd.h"

#define H5READ_MAX_NAME 512

ts_status h5read_open(const char *path, const char *what, const char *expected, hid_t *file) {
    *file = -1;
    h5attr_quiet();
    // HDF5 opens by name: the check is on the same name just before (a file swapped for a FIFO
    // in between is the one case left, and needs someone racing tessera on purpose)
    int fd = fs_open_regular_fd(path);
    if (fd == FS_NOT_REGULAR) {
        log_error("%s: %s is not a regular file (a FIFO, device, directory or socket); expected %s",
                  path, what, expected);
        return TS_ERR_INPUT;
    }
    if (fd < 0) {
        log_error("%s: cannot read %s: %s", path, what, strerror(errno));
        return TS_ERR_INPUT;
    }
    close(fd);
    if (H5Fis_hdf5(path) <= 0) {
        log_error("%s: not an HDF5 file (expected %s)", path, expected);
        return TS_ERR_INPUT;
    }
    *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*file < 0) {
        log_error("%s: cannot open HDF5 file (damaged?); expected %s", path, expected);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

// Each link from "/" to name must be a hard link (a soft link could point anywhere in the file,
// an external link into another file), to a group on the way and a dataset at the end.
static ts_status check_links(hid_t file, const char *path, const char *name) {
    char prefix[H5READ_MAX_NAME];
    if (strlen(name) >= sizeof prefix) {
        log_error("%s: dataset name '/%s' too long", path, name);
        return TS_ERR_INPUT;
    }
    for (const char *p = name;; p++) {
        if (*p != '/' && *p != '\0') continue;
        size_t len = (size_t)(p - name);
        memcpy(prefix, name, len);
        prefix[len] = '\0';
        int last = *p == '\0';
        const char *want = last ? "a dataset" : "a group";
        if (H5Lexists(file, prefix, H5P_DEFAULT) <= 0) {
            log_error("%s: dataset '/%s' is missing%s%s%s", path, name, last ? "" : " (no '/",
                      last ? "" : prefix, last ? "" : "')");
            return TS_ERR_INPUT;
        }
        H5L_info_t info;
        if (H5Lget_info(file, prefix, &info, H5P_DEFAULT) < 0) {
            log_error("%s: '/%s' cannot be read (damaged file?); expected %s", path, prefix, want);
            return TS_ERR_INPUT;
        }
        if (info.type != H5L_TYPE_HARD) {
            log_error("%s: '/%s' is %s, expected %s stored in this file", path, prefix,
                      info.type == H5L_TYPE_SOFT       ? "a soft link"
                      : info.type == H5L_TYPE_EXTERNAL ? "an external link (to another file)"
                                                       : "a user-defined link",
                      want);
            return TS_ERR_INPUT;
        }
        hid_t obj = H5Oopen(file, prefix, H5P_DEFAULT);
        H5I_type_t type = obj >= 0 ? H5Iget_type(obj) : H5I_BADID;
        if (obj >= 0) H5Oclose(obj);
        if (type != (last ? H5I_DATASET : H5I_GROUP)) {
            log_error("%s: '/%s' is not %s (HDF5 object of another kind), expected %s", path,
                      prefix, want, want);
            return TS_ERR_INPUT;
        }
        if (last) return TS_OK;
    }
}

static ts_status h5read_dataset_open(hid_t file, const char *path, const char *name, hid_t *ds) {
    *ds = -1;
    TS_CHECK(check_links(file, path, name));
    *ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (*ds < 0) {
        log_error("%s: dataset '/%s' cannot be opened (damaged file?)", path, name);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

// layout, storage and filters as tessera writes them; *chunk_bytes: one chunk's bytes (zstd)
static ts_status check_layout(hid_t dcpl, const char *path, const char *name, int ndim,
                              const hsize_t dims[], h5read_layout want, size_t *chunk_bytes) {
    *chunk_bytes = 0;
    const char *expected = want == H5READ_CONTIGUOUS
                               ? "contiguous storage in this file, no filter (as tessera writes "
                                 "weights)"
                               : "chunked storage in this file with the zstd filter (id 32015) "
                                 "alone (as tessera writes checkpoints)";
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int external = H5Pget_external_count(dcpl), nfilters = H5Pget_nfilters(dcpl);
    if (layout == H5D_VIRTUAL) {
        log_error("%s: dataset '/%s' is a virtual dataset (its values would come from other "
                  "files), expected %s",
                  path, name, expected);
        return TS_ERR_INPUT;
    }
    if (external != 0) {
        log_error("%s: dataset '/%s' keeps its values in %d external file(s), expected %s", path,
                  name, external, expected);
        return TS_ERR_INPUT;
    }
    H5D_layout_t want_layout = want == H5READ_CONTIGUOUS ? H5D_CONTIGUOUS : H5D_CHUNKED;
    if (layout != want_layout) {
        log_error("%s: dataset '/%s' has %s layout, expected %s", path, name,
                  layout == H5D_COMPACT      ? "compact"
                  : layout == H5D_CHUNKED    ? "chunked"
                  : layout == H5D_CONTIGUOUS ? "contiguous"
                                             : "an unknown",
                  expected);
        return TS_ERR_INPUT;
    }
    if (want == H5READ_CONTIGUOUS) {
        if (nfilters != 0) {
            log_error("%s: dataset '/%s' has %d filter(s), expected %s", path, name, nfilters,
                      expected);
            return TS_ERR_INPUT;
        }
    } else {
        unsigned flags = 0, cd[H5ZSTD_N_VALUES] = {0};
        size_t ncd = H5ZSTD_N_VALUES;
        H5Z_filter_t id =
            nfilters == 1 ? H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, 0, NULL, NULL) : -1;
        if (id != H5ZSTD_FILTER_ID) {
            log_error("%s: dataset '/%s' has %d filter(s)%s%d, expected %s", path, name, nfilters,
                      nfilters == 1 ? ", id " : "", nfilters == 1 ? (int)id : 0, expected);
            return TS_ERR_INPUT;
        }
        hsize_t chunk[2] = {0, 0};
        int rank = H5Pget_chunk(dcpl, 2, chunk);
        unsigned long long bytes = sizeof(float);
        int ok = rank == ndim;
        for (int i = 0; ok && i < ndim; i++) {
            ok = chunk[i] >= 1 && chunk[i] <= dims[i];
            bytes *= ok ? chunk[i] : 1;
        }
        if (!ok || bytes > UINT32_MAX) {
            log_error("%s: dataset '/%s' has chunks of rank %d (%llu x %llu), expected rank %d "
                      "chunks within the shape",
                      path, name, rank, (unsigned long long)chunk[0],
                      (unsigned long long)(rank == 2 ? chunk[1] : 1), ndim);
            return TS_ERR_INPUT;
        }
        if (ncd >= 2 && cd[1] != bytes) {
            log_error("%s: dataset '/%s': the zstd filter's parameters say chunks of %u bytes, "
                      "expected %llu (its chunk shape)",
                      path, name, cd[1], bytes);
            return TS_ERR_INPUT;
        }
        *chunk_bytes = (size_t)bytes;
    }
    return TS_OK;
}

static ts_status check_type_shape(hid_t ds, const char *path, const char *name, int ndim,
                                  const hsize_t dims[]) {
    hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    ts_status st = TS_OK;
    hsize_t got[H5S_MAX_RANK] = {0};
    int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (type < 0 || H5Tequal(type, H5T_IEEE_F32LE) <= 0) {
        H5T_class_t c = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
        log_error("%s: dataset '/%s' holds %zu-byte %s, expected 32-bit little-endian IEEE floats "
                  "(float32)",
                  path, name, type >= 0 ? H5Tget_size(type) : 0,
                  c == H5T_FLOAT     ? "floats of another format"
                  : c == H5T_INTEGER ? "integers"
                                     : "values of another type");
        st = TS_ERR_INPUT;
    } else if (nd != ndim || H5Sget_simple_extent_dims(space, got, NULL) != ndim ||
               got[0] != dims[0] || (ndim == 2 && got[1] != dims[1])) {
        char want[64];
        if (ndim == 2)
            snprintf(want, sizeof want, "(%llu, %llu)", (unsigned long long)dims[0],
                     (unsigned long long)dims[1]);
        else
            snprintf(want, sizeof want, "(%llu)", (unsigned long long)dims[0]);
        log_error("%s: dataset '/%s' has the wrong shape (rank %d, first dimension %llu), "
                  "expected %s",
                  path, name, nd, (unsigned long long)(nd >= 1 ? got[0] : 0), want);
        st = TS_ERR_INPUT;
    }
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return st;
}

// every value written: a dataset whose storage was never (or only partly) written reads as its
// fill value
static ts_status check_written(hid_t ds, hid_t dcpl, const char *path, const char *name, int ndim,
                               const hsize_t dims[], h5read_layout want) {
    // chunks are counted (H5Dget_space_status compares compressed bytes with the full size)
    if (want == H5READ_ZSTD) {
        hsize_t chunk[2] = {1, 1}, expect = 1, have = 0;
        H5Pget_chunk(dcpl, 2, chunk);
        for (int i = 0; i < ndim; i++)
            expect *= (dims[i] + chunk[i] - 1) / chunk[i];
        hid_t space = H5Dget_space(ds);
        herr_t r = space >= 0 ? H5Dget_num_chunks(ds, space, &have) : -1;
        if (space >= 0) H5Sclose(space);
        if (r < 0 || have != expect) {
            log_error("%s: dataset '/%s' has %llu of its %llu chunks, expected every value "
                      "written",
                      path, name, (unsigned long long)have, (unsigned long long)expect);
            return TS_ERR_INPUT;
        }
        return TS_OK;
    }
    H5D_space_status_t status = H5D_SPACE_STATUS_ERROR;
    if (H5Dget_space_status(ds, &status) < 0 || status != H5D_SPACE_STATUS_ALLOCATED) {
        log_error("%s: dataset '/%s' has no values written, expected every value written", path,
                  name);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

ts_status h5read_tensor(hid_t file, const char *path, const char *name, int ndim,
                        const hsize_t dims[], h5read_layout layout, float *out, hid_t *ds_out) {
    TS_ASSERT(ndim == 1 || ndim == 2);
    if (ds_out) *ds_out = -1;
    hid_t ds;
    TS_CHECK(h5read_dataset_open(file, path, name, &ds));
    hid_t dcpl = H5Dget_create_plist(ds);
    ts_status st = TS_OK;
    size_t chunk_bytes = 0;
    if (dcpl < 0) {
        log_error("%s: dataset '/%s' cannot be read (damaged file?)", path, name);
        st = TS_ERR_INPUT;
    }
    if (st == TS_OK) st = check_layout(dcpl, path, name, ndim, dims, layout, &chunk_bytes);
    if (st == TS_OK) st = check_type_shape(ds, path, name, ndim, dims);
    if (st == TS_OK) st = check_written(ds, dcpl, path, name, ndim, dims, layout);
    if (st == TS_OK && out) {
        h5zstd_expect_chunk_bytes(chunk_bytes); // 0 for contiguous data: no filter runs
        herr_t r = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
        h5zstd_expect_chunk_bytes(0);
        if (r < 0) {
            log_error("%s: reading dataset '/%s' failed (damaged file%s)", path, name,
                      layout == H5READ_ZSTD ? ", or a chunk that does not decode to its size" : "");
            st = TS_ERR_INPUT;
        }
    }
    if (dcpl >= 0) H5Pclose(dcpl);
    if (st == TS_OK && ds_out)
        *ds_out = ds;
    else
        H5Dclose(ds);
    return st;
}
