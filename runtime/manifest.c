// manifest.c — writing and verifying the MANIFEST of a checkpoint directory (format in
// manifest.h and docs/checkpoint-format.md).
//
// Verification is the check a resume relies on to skip a copy that a crash, a full disk or a bad
// sector left behind, so it reports the first mismatch as one line naming the file and logs
// nothing itself. Files are hashed in 1 MiB blocks: checkpoint files can be far larger than the
// memory one wants to spend on checking them.
#include "runtime/manifest.h"
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MANIFEST_HEADER    "tessera-manifest 1"
#define MANIFEST_BLOCK     (1u << 20)
#define MANIFEST_MAX_BYTES (64u << 20) // a manifest of ~1M files; anything larger is not one
#define MANIFEST_SUM_LINE  26          // "manifest " + 16 hex digits + '\n'

static void set_why(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t why_len, const char *fmt, ...) {
    if (!why || why_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

// a name the line format can hold: no whitespace, no control characters
static int name_is_plain(const char *name) {
    if (!name[0]) return 0;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        if (*c <= ' ' || *c == 0x7f || *c == '/') return 0;
    return 1;
}

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = ts_malloc(n, "checkpoint file path");
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

// The regular files of dir, sorted by name, without MANIFEST (and MANIFEST.tmp when skip_tmp).
static ts_status list_files(const char *dir, int skip_tmp, char ***names_out, int *n_out, char *why,
                            size_t why_len) {
    DIR *d = opendir(dir);
    if (!d) {
        set_why(why, why_len, "%s: cannot read directory: %s", dir, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    int n = 0, cap = 16;
    char **names = ts_malloc(cap * sizeof *names, "checkpoint file names");
    ts_status st = TS_OK;
    errno = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, MANIFEST_NAME) == 0 ||
            (skip_tmp && strcmp(e->d_name, MANIFEST_TMP_NAME) == 0))
            continue;
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            set_why(why, why_len, "%s: cannot stat: %s", e->d_name, strerror(errno));
            st = TS_ERR_SYSTEM;
            break;
        }
        if (!S_ISREG(sb.st_mode)) continue;
        if (n == cap) {
            cap *= 2;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) ts_panic(__FILE__, __LINE__, "out of memory listing a directory");
            names = grown;
        }
        size_t len = strlen(e->d_name) + 1;
        names[n] = ts_malloc(len, "checkpoint file name");
        memcpy(names[n++], e->d_name, len);
        errno = 0;
    }
    if (st == TS_OK && errno != 0) {
        set_why(why, why_len, "%s: cannot read directory: %s", dir, strerror(errno));
        st = TS_ERR_SYSTEM;
    }
    closedir(d);
    if (st != TS_OK) {
        free_names(names, n);
        return st;
    }
    qsort(names, n, sizeof *names, cmp_names);
    *names_out = names;
    *n_out = n;
    return TS_OK;
}

// size and XXH64 (seed 0) of dir/name, streamed
static ts_status hash_file(const char *dir, const char *name, uint64_t *size, uint64_t *hash,
                           char *why, size_t why_len) {
    char *path = join_path(dir, name);
    int fd = fs_open_regular_fd(path); // never a FIFO: it would block the check forever
    free(path);
    if (fd == FS_NOT_REGULAR) {
        set_why(why, why_len, "%s: not a regular file", name);
        return TS_ERR_INPUT;
    }
    if (fd < 0) {
        set_why(why, why_len, "%s: cannot open: %s", name, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    unsigned char *buf = ts_malloc(MANIFEST_BLOCK, "checksum buffer");
    XXH64_state_t *state = XXH64_createState();
    if (!state) ts_panic(__FILE__, __LINE__, "out of memory for an XXH64 state");
    XXH64_reset(state, 0);
    uint64_t total = 0;
    ts_status st = TS_OK;
    for (;;) {
        ssize_t got = read(fd, buf, MANIFEST_BLOCK);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            set_why(why, why_len, "%s: read failed at offset %" PRIu64 ": %s", name, total,
                    strerror(errno));
            st = TS_ERR_SYSTEM;
            break;
        }
        if (got == 0) break;
        XXH64_update(state, buf, (size_t)got);
        total += (uint64_t)got;
    }
    *size = total;
    *hash = XXH64_digest(state);
    XXH64_freeState(state);
    free(buf);
    close(fd);
    return st;
}

// ---------------------------------------------------------------------------------------------
// writing

ts_status manifest_write(const char *dir) {
    char why[512];
    char **names;
    int n;
    if (list_files(dir, 1, &names, &n, why, sizeof why) != TS_OK) {
        log_error("%s", why);
        return TS_ERR_SYSTEM;
    }
    ts_status st = TS_OK;
    for (int i = 0; i < n && st == TS_OK; i++) {
        if (!name_is_plain(names[i])) {
            // shown with its whitespace and control characters as '?', to stay one line
            char shown[256];
            size_t k = 0;
            for (const unsigned char *c = (const unsigned char *)names[i];
                 *c && k + 1 < sizeof shown; c++)
                shown[k++] = *c <= ' ' || *c == 0x7f ? '?' : (char)*c;
            shown[k] = '\0';
            log_error("%s: file name with whitespace or control characters cannot be listed in "
                      "its manifest: '%s'",
                      dir, shown);
            st = TS_ERR_INPUT;
        }
    }
    char *text = NULL;
    size_t text_len = 0;
    FILE *mem = st == TS_OK ? open_memstream(&text, &text_len) : NULL;
    if (st == TS_OK && !mem) ts_panic(__FILE__, __LINE__, "open_memstream failed");
    if (mem) fprintf(mem, MANIFEST_HEADER "\n");
    for (int i = 0; i < n && st == TS_OK; i++) {
        uint64_t size, hash;
        st = hash_file(dir, names[i], &size, &hash, why, sizeof why);
        if (st != TS_OK)
            log_error("%s/%s", dir, why);
        else
            fprintf(mem, "file %s %" PRIu64 " %016" PRIx64 "\n", names[i], size, hash);
    }
    free_names(names, n);
    if (mem) {
        // the checksum covers every byte above its own line
        fflush(mem);
        fprintf(mem, "manifest %016" PRIx64 "\n", (uint64_t)XXH64(text, text_len, 0));
        fclose(mem);
    }
    if (st != TS_OK) {
        free(text);
        return st;
    }

    char *tmp = join_path(dir, MANIFEST_TMP_NAME);
    char *final = join_path(dir, MANIFEST_NAME);
    st = fs_atomic_write(final, tmp, text, text_len);
    free(tmp);
    free(final);
    free(text);
    return st;
}

// ---------------------------------------------------------------------------------------------
// reading

void manifest_free(manifest *m) {
    for (int i = 0; i < m->n_files; i++)
        free(m->files[i].name);
    free(m->files);
    memset(m, 0, sizeof *m);
}

// exactly 16 lowercase hex digits
static int parse_hex16(const char *s, uint64_t *out) {
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return 0;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 1;
}

// "file NAME SIZE HASH" (without its '\n'; line is NUL-terminated in place)
static int parse_file_line(char *line, manifest_entry *e) {
    if (strncmp(line, "file ", 5) != 0) return 0;
    char *name = line + 5;
    char *sp = strchr(name, ' ');
    if (!sp) return 0;
    *sp = '\0';
    if (!name_is_plain(name)) return 0;
    char *size_s = sp + 1;
    uint64_t size = 0;
    char *p = size_s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (size > (UINT64_MAX - 9) / 10) return 0;
        size = size * 10 + (uint64_t)(*p - '0');
    }
    if (p == size_s || *p != ' ' || strlen(p + 1) != 16 || !parse_hex16(p + 1, &e->xxh64)) return 0;
    e->name = name; // points into the buffer until copied
    e->size = size;
    return 1;
}

static ts_status read_manifest_bytes(const char *dir, char **buf_out, size_t *len_out, char *why,
                                     size_t why_len) {
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        set_why(why, why_len, "%s: cannot read directory: %s", dir, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    if (!S_ISDIR(sb.st_mode)) {
        set_why(why, why_len, "%s: not a directory", dir);
        return TS_ERR_SYSTEM;
    }
    char *path = join_path(dir, MANIFEST_NAME);
    int fd = fs_open_regular_fd(path); // a FIFO or a device is refused before it is opened
    free(path);
    if (fd == FS_NOT_REGULAR) {
        set_why(why, why_len,
                MANIFEST_NAME ": not a regular file (a FIFO, device, directory or socket)");
        return TS_ERR_INPUT;
    }
    if (fd < 0) {
        int e = errno;
        set_why(why, why_len, MANIFEST_NAME ": %s", e == ENOENT ? "missing" : strerror(e));
        return e == ENOENT ? TS_ERR_INPUT : TS_ERR_SYSTEM;
    }
    ts_status st = TS_OK;
    if (fstat(fd, &sb) != 0) {
        set_why(why, why_len, MANIFEST_NAME ": cannot stat: %s", strerror(errno));
        st = TS_ERR_SYSTEM;
    } else if ((uint64_t)sb.st_size > MANIFEST_MAX_BYTES) {
        set_why(why, why_len, MANIFEST_NAME ": %lld bytes, too large for a manifest",
                (long long)sb.st_size);
        st = TS_ERR_INPUT;
    }
    if (st != TS_OK) {
        close(fd);
        return st;
    }
    size_t cap = (size_t)sb.st_size + 1, len = 0;
    char *buf = ts_malloc(cap, "manifest");
    for (;;) {
        ssize_t got = read(fd, buf + len, cap - 1 - len);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            set_why(why, why_len, MANIFEST_NAME ": read failed: %s", strerror(errno));
            st = TS_ERR_SYSTEM;
            break;
        }
        if (got == 0 || len + (size_t)got == cap - 1) {
            len += (size_t)got;
            break;
        }
        len += (size_t)got;
    }
    close(fd);
    if (st != TS_OK) {
        free(buf);
        return st;
    }
    buf[len] = '\0';
    *buf_out = buf;
    *len_out = len;
    return TS_OK;
}

ts_status manifest_load(const char *dir, manifest *m, char *why, size_t why_len) {
    memset(m, 0, sizeof *m);
    char *buf;
    size_t len;
    TS_CHECK(read_manifest_bytes(dir, &buf, &len, why, why_len));

    // the last line is the checksum of everything above it: check it before trusting the rest
    ts_status st = TS_ERR_INPUT;
    size_t last = len >= 2 ? len - 2 : 0;
    while (last > 0 && buf[last - 1] != '\n')
        last--;
    uint64_t want_sum = 0;
    if (len == 0) {
        set_why(why, why_len, MANIFEST_NAME ": empty (truncated)");
        goto done;
    }
    if (buf[len - 1] != '\n' || len - last != MANIFEST_SUM_LINE ||
        strncmp(buf + last, "manifest ", 9) != 0 || !parse_hex16(buf + last + 9, &want_sum)) {
        set_why(why, why_len, MANIFEST_NAME ": last line is not its checksum (truncated?)");
        goto done;
    }
    if (XXH64(buf, last, 0) != want_sum) {
        set_why(why, why_len, MANIFEST_NAME ": its checksum does not match (altered)");
        goto done;
    }

    // checksum good: the lines above were written by manifest_write (or by hand, with care)
    buf[last] = '\0';
    int line_no = 1, cap = 0;
    char *line = buf;
    for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, line_no++) {
        *nl = '\0';
        if (line_no == 1) {
            if (strcmp(line, MANIFEST_HEADER) != 0) {
                set_why(why, why_len, MANIFEST_NAME ": line 1: expected '" MANIFEST_HEADER "'");
                goto done;
            }
            continue;
        }
        manifest_entry e;
        if (!parse_file_line(line, &e)) {
            set_why(why, why_len, MANIFEST_NAME ": line %d: expected 'file NAME SIZE XXH64'",
                    line_no);
            goto done;
        }
        if (m->n_files > 0 && strcmp(m->files[m->n_files - 1].name, e.name) >= 0) {
            set_why(why, why_len, MANIFEST_NAME ": line %d: '%s' is out of order or repeated",
                    line_no, e.name);
            goto done;
        }
        if (m->n_files == cap) {
            cap = cap ? 2 * cap : 16;
            manifest_entry *grown = realloc(m->files, cap * sizeof *grown);
            if (!grown) ts_panic(__FILE__, __LINE__, "out of memory reading a manifest");
            m->files = grown;
        }
        size_t nlen = strlen(e.name) + 1;
        char *name = ts_malloc(nlen, "manifest file name");
        memcpy(name, e.name, nlen);
        e.name = name;
        m->files[m->n_files++] = e;
        m->total_bytes += e.size;
    }
    if (line_no == 1) {
        set_why(why, why_len, MANIFEST_NAME ": line 1: expected '" MANIFEST_HEADER "'");
        goto done;
    }
    st = TS_OK;
done:
    free(buf);
    if (st != TS_OK) manifest_free(m);
    return st;
}

// ---------------------------------------------------------------------------------------------
// verifying

ts_status manifest_verify_into(const char *dir, manifest *out, char *why, size_t why_len) {
    manifest m;
    TS_CHECK(manifest_load(dir, &m, why, why_len));
    ts_status st = TS_OK;
    char **names = NULL;
    int n_names = 0;

    // cheap checks first: every listed file is there with its size...
    for (int i = 0; i < m.n_files && st == TS_OK; i++) {
        const manifest_entry *e = &m.files[i];
        char *path = join_path(dir, e->name);
        struct stat sb;
        int r = lstat(path, &sb);
        free(path);
        if (r != 0 && errno == ENOENT) {
            set_why(why, why_len, "%s: missing (listed in " MANIFEST_NAME ")", e->name);
            st = TS_ERR_INPUT;
        } else if (r != 0) {
            set_why(why, why_len, "%s: cannot stat: %s", e->name, strerror(errno));
            st = TS_ERR_SYSTEM;
        } else if (!S_ISREG(sb.st_mode)) {
            set_why(why, why_len, "%s: not a regular file", e->name);
            st = TS_ERR_INPUT;
        } else if ((uint64_t)sb.st_size != e->size) {
            set_why(why, why_len, "%s: size %lld bytes, manifest says %" PRIu64, e->name,
                    (long long)sb.st_size, e->size);
            st = TS_ERR_INPUT;
        }
    }
    // ...and nothing else is (MANIFEST.tmp included: a manifest write that did not finish)
    if (st == TS_OK) st = list_files(dir, 0, &names, &n_names, why, why_len);
    for (int i = 0, j = 0; st == TS_OK && i < n_names; i++) {
        while (j < m.n_files && strcmp(m.files[j].name, names[i]) < 0)
            j++;
        if (j == m.n_files || strcmp(m.files[j].name, names[i]) != 0) {
            set_why(why, why_len,
                    "%s: not listed in " MANIFEST_NAME " (left by an interrupted write?)",
                    names[i]);
            st = TS_ERR_INPUT;
        }
    }
    if (names) free_names(names, n_names);
    // then the contents
    for (int i = 0; i < m.n_files && st == TS_OK; i++) {
        const manifest_entry *e = &m.files[i];
        uint64_t size, hash;
        st = hash_file(dir, e->name, &size, &hash, why, why_len);
        if (st != TS_OK) break;
        if (size != e->size) { // changed since the stat above
            set_why(why, why_len, "%s: size %" PRIu64 " bytes, manifest says %" PRIu64, e->name,
                    size, e->size);
            st = TS_ERR_INPUT;
        } else if (hash != e->xxh64) {
            set_why(why, why_len, "%s: xxh64 %016" PRIx64 ", manifest says %016" PRIx64, e->name,
                    hash, e->xxh64);
            st = TS_ERR_INPUT;
        }
    }
    if (st == TS_OK && out)
        *out = m;
    else
        manifest_free(&m);
    return st;
}

ts_status manifest_verify(const char *dir, char *why, size_t why_len) {
    return manifest_verify_into(dir, NULL, why, why_len);
}
