// ckpt_dir.c — a host's checkpoint root: step directory names, the committed steps, the save
// protocol (tmp -> IDENTITY -> MANIFEST -> commit -> prune), leftovers, and the choice of the
// newest intact checkpoint of this run (see ckpt_dir.h and docs/checkpoint-format.md).
#include "runtime/ckpt_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "runtime/fault.h"
#include "runtime/manifest.h"

#define STEP_DIGITS 8
#define STEP_PREFIX "step-"

// ---------------------------------------------------------------------------------------------
// names and listing

void ckpt_dir_step_name(int step, char out[CKPT_DIR_NAME_LEN]) {
    TS_ASSERT(step >= 0 && step <= 99999999);
    snprintf(out, CKPT_DIR_NAME_LEN, STEP_PREFIX "%08d", step);
}

int ckpt_dir_parse_step(const char *name) {
    if (strncmp(name, STEP_PREFIX, 5) != 0 || strlen(name) != 5 + STEP_DIGITS) return -1;
    int step = 0;
    for (int i = 5; i < 5 + STEP_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        step = step * 10 + (name[i] - '0');
    }
    return step;
}

// a leftover's name: step-NNNNNNNN.tmp, .old or .del
static int is_leftover(const char *name) {
    size_t len = strlen(name);
    if (len != 5 + STEP_DIGITS + 4) return 0;
    char head[CKPT_DIR_NAME_LEN];
    memcpy(head, name, 5 + STEP_DIGITS);
    head[5 + STEP_DIGITS] = '\0';
    const char *ext = name + 5 + STEP_DIGITS;
    return ckpt_dir_parse_step(head) >= 0 &&
           (strcmp(ext, ".tmp") == 0 || strcmp(ext, ".old") == 0 || strcmp(ext, ".del") == 0);
}

static int cmp_newest_first(const void *a, const void *b) {
    int x = ((const ckpt_dir_entry *)a)->step, y = ((const ckpt_dir_entry *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

ckpt_dir_entry *ckpt_dir_list(const char *root, int *n) {
    *n = 0;
    DIR *d = opendir(root);
    if (!d) return NULL;
    int cap = 0;
    ckpt_dir_entry *list = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int step = ckpt_dir_parse_step(e->d_name);
        if (step < 0) continue;
        struct stat sb;
        int is_dir =
            fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode);
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            ckpt_dir_entry *grown = realloc(list, (size_t)cap * sizeof *list);
            if (!grown) ts_panic(__FILE__, __LINE__, "out of memory listing checkpoints");
            list = grown;
        }
        list[(*n)++] = (ckpt_dir_entry){step, is_dir};
    }
    closedir(d);
    if (*n) qsort(list, (size_t)*n, sizeof *list, cmp_newest_first);
    return list;
}

// ---------------------------------------------------------------------------------------------
// deletion: leftovers, pruning, run.overwrite

void ckpt_dir_clean_leftovers(const char *root) {
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    char path[CKPT_DIR_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (!is_leftover(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", root, e->d_name);
        log_warn("%s: removing the leftover of an interrupted save", path);
        fs_remove_tree(path); // a link goes as a link: its target is never touched
    }
    closedir(d);
}

// Rename root/name to root/name.del, then remove it: a process killed in between leaves a .del
// leftover (removed at the next start or save), never a step directory with part of its files.
static ts_status remove_step(const char *root, const char *name) {
    char dir[CKPT_DIR_PATH_MAX], del[CKPT_DIR_PATH_MAX + 8];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    snprintf(del, sizeof del, "%s.del", dir);
    fs_remove_tree(del); // a .del of an earlier, interrupted deletion
    if (rename(dir, del) != 0) {
        log_warn("rename of %s to %s failed: %s; removing it in place", dir, del, strerror(errno));
        return fs_remove_tree(dir);
    }
    return fs_remove_tree(del);
}

// the lineage of a step directory: 1 with *lineage when its IDENTITY reads (0 without one)
static int lineage_of(const char *dir, uint64_t *lineage) {
    ckpt_identity id;
    int present;
    char why[256];
    if (ckpt_identity_read(dir, &id, &present, why, sizeof why) != TS_OK) return 0;
    *lineage = id.lineage;
    return 1;
}

void ckpt_dir_prune(const char *root, uint64_t lineage, int step, int keep) {
    int n;
    ckpt_dir_entry *list = ckpt_dir_list(root, &n);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        char name[CKPT_DIR_NAME_LEN], dir[CKPT_DIR_PATH_MAX];
        ckpt_dir_step_name(list[i].step, name);
        snprintf(dir, sizeof dir, "%s/%s", root, name);
        uint64_t theirs;
        if (!list[i].is_dir || !lineage_of(dir, &theirs) || theirs != lineage) continue;
        if (list[i].step > step) {
            // this run resumed from an earlier step: that future was abandoned (it could not be
            // resumed, or the run was sent back on purpose), and keeping it would make the next
            // resume skip everything done since
            log_warn("%s: removing it: this run resumed from an earlier step and has now saved "
                     "step %d",
                     dir, step);
            remove_step(root, name);
        } else if (++kept > keep) {
            remove_step(root, name);
        }
    }
    free(list);
}

ts_status ckpt_dir_remove_all(const char *root, int *removed) {
    *removed = 0;
    ckpt_dir_clean_leftovers(root);
    int n;
    ckpt_dir_entry *list = ckpt_dir_list(root, &n);
    ts_status st = TS_OK;
    for (int i = 0; i < n; i++) {
        char name[CKPT_DIR_NAME_LEN];
        ckpt_dir_step_name(list[i].step, name);
        if (remove_step(root, name) != TS_OK)
            st = TS_ERR_SYSTEM;
        else
            (*removed)++;
    }
    free(list);
    return st;
}

// ---------------------------------------------------------------------------------------------
// save

// What is at root/step-NNNNNNNN may be replaced by a save of `id`: nothing, or a real directory of
// the same lineage (a resumed run redoing a step it had saved before its crash).
static ts_status check_replaceable(const char *final, const ckpt_identity *id) {
    struct stat sb;
    if (lstat(final, &sb) != 0) return TS_OK;
    if (!S_ISDIR(sb.st_mode)) {
        log_error("%s: exists and is not a directory (a symbolic link?); the checkpoint is not "
                  "written over it (expected a step directory of this run or nothing there)",
                  final);
        return TS_ERR_INPUT;
    }
    ckpt_identity theirs;
    int present;
    char why[256];
    if (ckpt_identity_read(final, &theirs, &present, why, sizeof why) != TS_OK) {
        log_error("%s: %s; the checkpoint is not written over it", final, why);
        return TS_ERR_INPUT;
    }
    if (theirs.lineage != id->lineage) {
        log_error("%s: holds a checkpoint of another run (lineage %016" PRIx64 ", this run's is "
                  "%016" PRIx64 "); the checkpoint is not written over it",
                  final, theirs.lineage, id->lineage);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

ts_status ckpt_dir_save(const char *root, int step, const ckpt_identity *id, int keep,
                        ckpt_dir_fill_fn fill, void *ctx) {
    char name[CKPT_DIR_NAME_LEN], final[CKPT_DIR_PATH_MAX], tmp[CKPT_DIR_PATH_MAX + 8];
    if (step < 0 || step > 99999999) {
        log_error("%s: step %d has more than the 8 digits of a step directory's name; no "
                  "checkpoint is written for it",
                  root, step);
        return TS_ERR_INPUT;
    }
    ckpt_dir_step_name(step, name);
    snprintf(final, sizeof final, "%s/%s", root, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    TS_CHECK(fs_mkdir_p(root, "checkpoint directory"));
    ckpt_dir_clean_leftovers(root); // left by an interrupted save or deletion
    TS_CHECK(check_replaceable(final, id));
    if (mkdir(tmp, 0755) != 0) {
        log_error("%s: cannot create directory: %s", tmp, strerror(errno));
        return TS_ERR_SYSTEM;
    }
    ts_status st;
    TS_CHECK_GOTO(fill(tmp, ctx), st, fail);
    TS_CHECK_GOTO(ckpt_identity_write(tmp, id), st, fail);
    fault_point("ckpt", step); // tests: die with the files written, the manifest not
    TS_CHECK_GOTO(manifest_write(tmp), st, fail);
    // a directory of the same step and lineage (checked above) is replaced
    st = fs_commit_dir(tmp, final); // removes tmp on failure
    if (st == TS_OK) ckpt_dir_prune(root, id->lineage, step, keep);
    return st;
fail:
    fs_remove_tree(tmp);
    return st;
}

// ---------------------------------------------------------------------------------------------
// resume

ts_status ckpt_dir_pick(const char *root, const ckpt_identity *want, ckpt_dir_choice *out) {
    memset(out, 0, sizeof *out);
    out->step = out->other_step = -1;
    int n;
    ckpt_dir_entry *list = ckpt_dir_list(root, &n);
    for (int i = 0; i < n && out->step < 0; i++) {
        char name[CKPT_DIR_NAME_LEN], dir[CKPT_DIR_PATH_MAX], why[512];
        ckpt_dir_step_name(list[i].step, name);
        snprintf(dir, sizeof dir, "%s/%s", root, name);
        if (!list[i].is_dir) {
            log_warn("skipping %s: not a directory (a symbolic link?); a resume reads only the "
                     "step directories this host's runs wrote",
                     name);
            continue;
        }
        ckpt_identity id;
        int present;
        if (ckpt_identity_read(dir, &id, &present, why, sizeof why) != TS_OK) {
            log_warn("skipping %s: %s", name, why);
            continue;
        }
        if (present && !ckpt_identity_same_run(&id, want)) {
            log_warn("skipping %s: written by another run (lineage %016" PRIx64 ", seed %" PRId64
                     ", config %016" PRIx64 "; this run has seed %" PRId64 ", config %016" PRIx64
                     ")",
                     name, id.lineage, id.seed, id.config_hash, want->seed, want->config_hash);
            if (out->other_step < 0) {
                out->other_step = list[i].step;
                snprintf(out->other_dir, sizeof out->other_dir, "%s", dir);
            }
            continue;
        }
        if (manifest_verify(dir, why, sizeof why) != TS_OK) {
            log_warn("skipping %s: %s", name, why);
            continue;
        }
        out->step = list[i].step;
        out->id = id;
        snprintf(out->dir, sizeof out->dir, "%s", dir);
    }
    free(list);
    return TS_OK;
}

ts_status ckpt_dir_check_path(const char *path, ckpt_identity *id) {
    char why[512];
    int present;
    if (manifest_verify(path, why, sizeof why) != TS_OK) {
        log_error("[run] resume: %s is not an intact checkpoint: %s", path, why);
        return TS_ERR_INPUT;
    }
    if (ckpt_identity_read(path, id, &present, why, sizeof why) != TS_OK) {
        log_error("[run] resume: %s: %s", path, why);
        return TS_ERR_INPUT;
    }
    return TS_OK;
}

// ---------------------------------------------------------------------------------------------
// a fresh start's check

int ckpt_dir_find_any(const char *root, char name[CKPT_DIR_NAME_LEN]) {
    int n, found = 0;
    ckpt_dir_entry *list = ckpt_dir_list(root, &n);
    for (int i = 0; i < n && !found; i++) {
        ckpt_dir_step_name(list[i].step, name);
        if (!list[i].is_dir) {
            found = 1;
            break;
        }
        char dir[CKPT_DIR_PATH_MAX];
        snprintf(dir, sizeof dir, "%s/%s", root, name);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && !found && (e = readdir(d)) != NULL)
            found = strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
        if (d) closedir(d);
    }
    free(list);
    return found;
}
