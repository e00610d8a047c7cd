// manifest.h — the MANIFEST of a checkpoint directory: size and XXH64 of every file in it, and a
// checksum of the manifest itself, written last so that a directory with an intact manifest
// whose files all match it is a whole checkpoint.
//
// Format (text, one record per line, '\n' ends every line; see docs/checkpoint-format.md):
//   tessera-manifest 1
//   file <name> <size in bytes, decimal> <xxh64 of the content, seed 0, 16 lowercase hex digits>
//   ...                                   (one line per regular file, sorted by name, bytewise)
//   manifest <xxh64 of every byte above this line, 16 lowercase hex digits>
// Names must be plain: no whitespace, no control characters, no '/'.
#ifndef TESSERA_MANIFEST_H
#define TESSERA_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"

#define MANIFEST_NAME     "MANIFEST"
#define MANIFEST_TMP_NAME "MANIFEST.tmp"

typedef struct {
    char *name;
    uint64_t size;
    uint64_t xxh64;
} manifest_entry;

typedef struct {
    int n_files;
    manifest_entry *files; // sorted by name
    uint64_t total_bytes;  // sum of the files' sizes
} manifest;

// Hash every regular file of dir (except MANIFEST and MANIFEST.tmp), write dir/MANIFEST.tmp,
// fsync it, rename it to dir/MANIFEST and fsync dir. The files must already be fsynced by their
// writer. A file name with whitespace or control characters: TS_ERR_INPUT; I/O: TS_ERR_SYSTEM
// (one error line logged either way).
ts_status manifest_write(const char *dir);

// Read and parse dir/MANIFEST and check its own checksum; does not look at the other files.
// Not OK: TS_ERR_INPUT (missing, truncated, altered: why says which) or TS_ERR_SYSTEM (dir or
// MANIFEST unreadable). Logs nothing: the caller decides how loud a damaged copy is.
ts_status manifest_load(const char *dir, manifest *m, char *why, size_t why_len);
void manifest_free(manifest *m);

// TS_OK when dir/MANIFEST is intact and every listed file exists with that size and hash, and no
// other regular file is present (a stray file means an interrupted write). Else TS_ERR_INPUT and
// why holds one line naming the file and what did not match; TS_ERR_SYSTEM when the directory or
// a listed file cannot be read. Logs nothing. m (may be NULL) receives the manifest when TS_OK.
ts_status manifest_verify_into(const char *dir, manifest *m, char *why, size_t why_len);
ts_status manifest_verify(const char *dir, char *why, size_t why_len);

#endif
