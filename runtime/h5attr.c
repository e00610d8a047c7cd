// h5attr.c — scalar HDF5 attributes (see h5attr.h).
#include "runtime/h5attr.h"

#include <string.h>

void h5attr_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

int h5attr_write(hid_t loc, const char *name, hid_t type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = attr >= 0 && H5Awrite(attr, type, value) >= 0;
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return ok;
}

int h5attr_write_str(hid_t loc, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    int ok = h5attr_write(loc, name, type, value);
    H5Tclose(type);
    return ok;
}

ts_status h5attr_read_int(hid_t loc, const char *path, const char *kind, const char *name,
                          hid_t mem, void *out) {
    if (H5Aexists(loc, name) <= 0) {
        log_error("%s: not a %s: attribute '%s' is missing", path, kind, name);
        return TS_ERR_INPUT;
    }
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t space = attr >= 0 ? H5Aget_space(attr) : -1;
    hid_t type = attr >= 0 ? H5Aget_type(attr) : -1;
    herr_t r = space >= 0 && H5Sget_simple_extent_npoints(space) == 1 && type >= 0 &&
                       H5Tget_class(type) == H5T_INTEGER
                   ? H5Aread(attr, mem, out)
                   : -1;
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (attr >= 0) H5Aclose(attr);
    if (r < 0) {
        log_error("%s: attribute '%s' is not a single integer", path, name);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}
