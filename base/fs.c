// fs.c — durable writes, directory commits, mkdir -p, link-safe deletion (see fs.h).
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ts_status fs_write_all(int fd, const void *buf, size_t len, const char *path) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            log_error("%s: write failed: %s", path, strerror(w < 0 ? errno : EIO));
            return TS_ERR_SYSTEM;
        }
        p += w;
        len -= (size_t)w;
    }
    return TS_OK;
}

ts_status fs_fsync_path(const char *path, int directory) {
    int fd = open(path, (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        log_error("%s: fsync failed: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return TS_ERR_SYSTEM;
    }
    close(fd);
    return TS_OK;
}

ts_status fs_fsync_parent(const char *path) {
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    return fs_fsync_path(dir, 1);
}

ts_status fs_atomic_write_with(const char *path, const char *tmp, fs_produce_fn produce,
                               void *ctx) {
    char tmp_default[PATH_MAX];
    if (!tmp) {
        if (snprintf(tmp_default, sizeof tmp_default, "%s.tmp", path) >= (int)sizeof tmp_default) {
            log_error("%s: path too long", path);
            return TS_ERR_INPUT;
        }
        tmp = tmp_default;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_error("%s: cannot create: %s", tmp, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    ts_status res = produce(fd, tmp, ctx);
    if (res == TS_OK && fsync(fd) != 0) {
        log_error("fsync of %s failed: %s", tmp, strerror(errno));
        res = TS_ERR_SYSTEM;
    }
    if (close(fd) != 0 && res == TS_OK) {
        log_error("close of %s failed: %s", tmp, strerror(errno));
        res = TS_ERR_SYSTEM;
    }
    if (res == TS_OK && rename(tmp, path) != 0) {
        log_error("rename of %s to %s failed: %s", tmp, path, strerror(errno));
        res = TS_ERR_SYSTEM;
    }
    if (res != TS_OK) {
        unlink(tmp);
        return res;
    }
    return fs_fsync_parent(path);
}

typedef struct {
    const void *buf;
    size_t len;
} fs_bytes;

static ts_status fs_produce_bytes(int fd, const char *tmp, void *ctx) {
    const fs_bytes *b = ctx;
    return fs_write_all(fd, b->buf, b->len, tmp);
}

ts_status fs_atomic_write(const char *path, const char *tmp, const void *buf, size_t len) {
    fs_bytes b = {buf, len};
    return fs_atomic_write_with(path, tmp, fs_produce_bytes, &b);
}

ts_status fs_commit_file(const char *tmp, const char *path) {
    if (fs_fsync_path(tmp, 0) != TS_OK) {
        unlink(tmp);
        return TS_ERR_SYSTEM;
    }
    if (rename(tmp, path) != 0) {
        log_error("rename of %s to %s failed: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return TS_ERR_SYSTEM;
    }
    return fs_fsync_parent(path);
}

ts_status fs_write_new_file(const char *path, const void *buf, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_error("%s: cannot create: %s", path, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    ts_status res = fs_write_all(fd, buf, len, path);
    if (res == TS_OK && fsync(fd) != 0) {
        log_error("fsync of %s failed: %s", path, strerror(errno));
        res = TS_ERR_SYSTEM;
    }
    if (close(fd) != 0 && res == TS_OK) {
        log_error("close of %s failed: %s", path, strerror(errno));
        res = TS_ERR_SYSTEM;
    }
    return res;
}

ts_status fs_commit_dir(const char *tmp, const char *final) {
    char old[PATH_MAX];
    if (snprintf(old, sizeof old, "%s.old", final) >= (int)sizeof old) {
        log_error("%s: path too long", final);
        fs_remove_tree(tmp);
        return TS_ERR_INPUT;
    }
    if (fs_fsync_path(tmp, 1) != TS_OK) {
        fs_remove_tree(tmp);
        return TS_ERR_SYSTEM;
    }
    // rename cannot replace a non-empty directory, so an existing one steps aside first
    struct stat sb;
    int had_old = lstat(final, &sb) == 0;
    if (had_old) {
        fs_remove_tree(old);
        if (rename(final, old) != 0) {
            log_error("rename of %s to %s failed: %s", final, old, strerror(errno));
            fs_remove_tree(tmp);
            return TS_ERR_SYSTEM;
        }
    }
    if (rename(tmp, final) != 0) {
        log_error("rename of %s to %s failed: %s", tmp, final, strerror(errno));
        fs_remove_tree(tmp);
        if (had_old) rename(old, final);
        return TS_ERR_SYSTEM;
    }
    ts_status st = fs_fsync_parent(final);
    if (had_old) fs_remove_tree(old);
    return st;
}

ts_status fs_mkdir_p(const char *path, const char *what) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        log_error("%s: cannot create directory %s: path too long", what, path);
        return TS_ERR_INPUT;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) goto fail;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) goto fail;
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        goto fail;
    }
    return TS_OK;
fail:;
    int err = errno;
    log_error("%s: cannot create directory %s: %s", what, buf, strerror(err));
    // a path the user gave that cannot exist is bad input; a full or failing disk is not
    return err == ENOSPC || err == EIO || err == EDQUOT ? TS_ERR_SYSTEM : TS_ERR_INPUT;
}

// unlinkat/rmdir below dirfd, never following a link (depth-limited: tessera's trees are flat)
static int fs_remove_at(int dirfd, const char *name, int depth) {
    struct stat sb;
    if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sb.st_mode)) return unlinkat(dirfd, name, 0) == 0 || errno == ENOENT ? 0 : -1;
    if (depth > 32) {
        errno = ELOOP;
        return -1;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (fs_remove_at(fd, e->d_name, depth + 1) != 0) rc = -1;
    }
    closedir(d);
    if (rc != 0) return -1;
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -1;
}

ts_status fs_remove_tree(const char *path) {
    if (fs_remove_at(AT_FDCWD, path, 0) != 0) {
        log_warn("%s: cannot remove: %s", path, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    return TS_OK;
}

int fs_is_regular_nofollow(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int fs_open_regular_fd(const char *path) {
    // stat first: a FIFO, a device or a socket is refused without being opened at all (opening a
    // FIFO blocks until a writer comes; opening some devices has effects of its own)
    struct stat before, after;
    if (stat(path, &before) != 0) return -1;
    if (!S_ISREG(before.st_mode)) return FS_NOT_REGULAR;
    // O_NONBLOCK: should path be swapped for a FIFO between the stat and the open, open() still
    // returns at once, and the fstat below refuses it
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (fstat(fd, &after) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    if (!S_ISREG(after.st_mode)) {
        close(fd);
        return FS_NOT_REGULAR;
    }
    // back to blocking reads: O_NONBLOCK only kept open() from waiting
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

ts_status fs_open_regular(const char *path, const char *what, int *fd_out) {
    *fd_out = fs_open_regular_fd(path);
    if (*fd_out == FS_NOT_REGULAR) {
        *fd_out = -1;
        log_error("%s: %s is not a regular file (a FIFO, device, directory or socket); expected a "
                  "regular file",
                  path, what);
        return TS_ERR_INPUT;
    }
    if (*fd_out < 0) {
        log_error("%s: cannot open %s: %s", path, what, strerror(errno));
        return TS_ERR_INPUT;
    }
    return TS_OK;
}
