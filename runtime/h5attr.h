// h5attr.h — scalar HDF5 attributes, as the weights file and the checkpoints use them.
#ifndef TESSERA_H5ATTR_H
#define TESSERA_H5ATTR_H

#include <hdf5.h>

#include "base/common.h"

// silence HDF5's own error-stack printing: tessera reports one line per failure itself
void h5attr_quiet(void);

// a scalar attribute of `type` (an HDF5 native type) from *value; 1 on success
int h5attr_write(hid_t loc, const char *name, hid_t type, const void *value);
// a fixed-length string attribute; 1 on success
int h5attr_write_str(hid_t loc, const char *name, const char *value);

// one integer attribute read as `mem` (H5T_NATIVE_INT, _INT64, _UINT64...). Missing: one line
// "PATH: not a KIND: attribute 'NAME' is missing"; an array or non-integer: "... is not a single
// integer" (an array would overrun *out); TS_ERR_INPUT either way.
ts_status h5attr_read_int(hid_t loc, const char *path, const char *kind, const char *name,
                          hid_t mem, void *out);

#endif
