// h5attr.h — HDF5 attributes as the weights file and the checkpoints use them: writing scalars and
// fixed-length strings, and reading them back through one table-driven reader that trusts nothing
// in the file.
//
// A file given to tessera may have been written by anyone. Before a value is used, the reader
// checks the attribute's class (integer or string), size, dataspace (a scalar: an array would
// overrun the destination) and bounds, and reports the first mismatch as one line naming the
// file, the attribute and what was expected, e.g.
//   run/model.h5: attribute 'layers' holds 3 values, expected one integer in [1, 4096]
#ifndef TESSERA_H5ATTR_H
#define TESSERA_H5ATTR_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

// silence HDF5's own error-stack printing: tessera reports one line per failure itself
void h5attr_quiet(void);

// a scalar attribute of `type` (an HDF5 native type) from *value; 1 on success
int h5attr_write(hid_t loc, const char *name, hid_t type, const void *value);
// a fixed-length string attribute; 1 on success
int h5attr_write_str(hid_t loc, const char *name, const char *value);

// What an attribute must be, and where its value goes (offset into the caller's struct).
typedef enum {
    H5ATTR_INT,    // int: an integer in [min, max] (bounds within int)
    H5ATTR_INT64,  // int64_t: an integer in [min, max]
    H5ATTR_UINT64, // uint64_t: a non-negative integer in [min, max] (0 <= min)
    H5ATTR_HASH,   // uint64_t: any unsigned integer of 64 bits (a checksum)
    H5ATTR_STRING, // a fixed-length string of at most max bytes; equal to `value` when value is
                   // set (nothing stored), else stored as a malloc'ed char * (the caller frees)
} h5attr_kind;

typedef struct {
    const char *name;
    h5attr_kind kind;
    size_t offset;     // where the value goes in the output struct (unused for a checked value)
    int64_t min, max;  // integers: inclusive bounds; strings: max = the most bytes
    const char *value; // strings: the one value accepted (NULL: any)
    int optional;      // 1: a missing attribute is fine (its field is left as it was; a string's
                       // is set to NULL)
} h5attr_spec;

// Read n attributes of loc (a file's "/" or a dataset; obj: the dataset's name for messages, NULL
// for "/") of the file at path into out, checking each as its spec says. On the first failure:
// one error line, the strings read so far freed (their fields set to NULL), TS_ERR_INPUT.
ts_status h5attr_read_table(hid_t loc, const char *path, const char *obj, const h5attr_spec *spec,
                            int n, void *out);

#endif
