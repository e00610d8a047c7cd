// fs.h — the file-system steps every persisted file goes through: one durable write (temporary
// name, write, fsync, rename, directory fsync), one directory commit, one mkdir -p, deletion that
// never follows links, and opening that refuses what is not a regular file.
//
// Every failure logs one error line naming the path and the step that failed ("fsync of X
// failed: ..."), and leaves what was there before untouched: a failed fs_atomic_write removes its
// temporary file and keeps the old file; a failed fs_commit_dir keeps the old directory.
#ifndef TESSERA_FS_H
#define TESSERA_FS_H

#include <stddef.h>

#include "base/common.h"

#ifdef __cplusplus
extern "C" {
#endif

// write all len bytes (retrying short writes and EINTR)
ts_status fs_write_all(int fd, const void *buf, size_t len, const char *path);
// fsync a file (directory = 0) or a directory (directory = 1)
ts_status fs_fsync_path(const char *path, int directory);
// fsync the directory that holds path
ts_status fs_fsync_parent(const char *path);

// Durable replacement of path: the content goes to tmp (NULL: "<path>.tmp"), is fsynced, renamed
// over path, and path's directory is fsynced. `produce` writes the content to fd.
typedef ts_status (*fs_produce_fn)(int fd, const char *tmp_path, void *ctx);
ts_status fs_atomic_write_with(const char *path, const char *tmp, fs_produce_fn produce, void *ctx);
ts_status fs_atomic_write(const char *path, const char *tmp, const void *buf, size_t len);
// The second half of a durable write for a file some other code produced at tmp (HDF5):
// fsync tmp, rename it to path, fsync the directory. tmp is removed on failure.
ts_status fs_commit_file(const char *tmp, const char *path);
// Create path (it must not exist), write len bytes and fsync: a file inside a directory that is
// committed as a whole afterwards (fs_commit_dir).
ts_status fs_write_new_file(const char *path, const void *buf, size_t len);

// Commit a directory built under tmp as final: fsync tmp, move an existing final aside to
// "<final>.old", rename tmp to final, fsync the parent, remove the old one. On failure final is
// as it was and tmp is removed.
ts_status fs_commit_dir(const char *tmp, const char *final);

// mkdir -p. A failure names `what` (a config key such as "[run] out_dir", or a description):
// "<what>: cannot create directory <path>: <reason>". A full or failing disk is TS_ERR_SYSTEM;
// anything else (a path the user gave that cannot exist, a file in the way) TS_ERR_INPUT.
ts_status fs_mkdir_p(const char *path, const char *what);

// Remove path and everything under it without following a symbolic link: a link is removed, not
// its target. Returns TS_OK when path no longer exists (or never did); logs what it could not
// remove.
ts_status fs_remove_tree(const char *path);

// 1 when path is a regular file (not following a final symbolic link), 0 otherwise.
int fs_is_regular_nofollow(const char *path);
// Open path read-only and check that it is a regular file before anything reads it (a FIFO or a
// device would block or never end): stat first (what is not a regular file is never opened),
// then open with O_NONBLOCK and fstat (in case it changed in between). On failure logs one line,
// "<path>: cannot open <what>: <reason>" or "<path>: <what> is not a regular file ...", and
// returns TS_ERR_INPUT (missing, not regular, unreadable).
ts_status fs_open_regular(const char *path, const char *what, int *fd_out);
// The same check, logging nothing: a descriptor; -1 with errno set when path cannot be opened;
// FS_NOT_REGULAR when it is a FIFO, device, directory or socket.
#define FS_NOT_REGULAR (-2)
int fs_open_regular_fd(const char *path);

#ifdef __cplusplus
}
#endif

#endif
