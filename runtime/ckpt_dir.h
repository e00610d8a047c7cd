// ckpt_dir.h — one host's checkpoint root, <run_dir>/ckpt/<host>/, as a folder of step
// directories: their names, which are committed, the save protocol, pruning, leftovers and the
// choice of the one to resume. No HDF5 here: what a checkpoint holds is written by the caller's
// fill function into the directory being built (runtime/ckpt_state.c writes state.h5).
//
//   step-NNNNNNNN/          a committed checkpoint (8 digits: the steps it completed), holding
//                           the caller's files, IDENTITY (runtime/ckpt_identity.h) and MANIFEST
//   step-NNNNNNNN.tmp/      a save in progress            } leftovers when a process died:
//   step-NNNNNNNN.old/      a replaced one, being removed } never read, removed at the next
//   step-NNNNNNNN.del/      a pruned one, being removed   } start and before every save
//
// Only real directories are checkpoints: an entry named step-NNNNNNNN that is a symbolic link
// (another run's checkpoint linked in) or not a directory is never read, pruned, replaced or
// followed. Pruning and resume consider only checkpoints of the run's own lineage and identity;
// other runs' step directories are left as they are. Deletion never follows a link
// (fs_remove_tree) and goes through a rename to .del first, so a process killed in the middle
// leaves a leftover, never a step directory with part of its files.
#ifndef TESSERA_CKPT_DIR_H
#define TESSERA_CKPT_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "base/common.h"
#include "runtime/ckpt_identity.h"

#define CKPT_DIR_NAME_LEN 14   // "step-NNNNNNNN" and its NUL
#define CKPT_DIR_PATH_MAX 4200 // a step directory's path (the root and a name)

// "step-NNNNNNNN" (8 digits, zero-padded) for step in [0, 99999999]
void ckpt_dir_step_name(int step, char out[CKPT_DIR_NAME_LEN]);
// the step of an exact "step-NNNNNNNN" name, else -1 (leftovers and other names included)
int ckpt_dir_parse_step(const char *name);

typedef struct {
    int step;
    int is_dir; // a real directory; 0: a symbolic link or another kind of file (never used)
} ckpt_dir_entry;

// The entries of root named step-NNNNNNNN, newest first (malloc'ed; NULL and *n = 0 when there is
// none or root cannot be read).
ckpt_dir_entry *ckpt_dir_list(const char *root, int *n);

// Remove the leftovers of root (step-NNNNNNNN.tmp, .old, .del), each with a warning naming it;
// a leftover that is a link is removed as a link, its target untouched.
void ckpt_dir_clean_leftovers(const char *root);

// Fills a step directory being built (tmp_dir) with the checkpoint's files, each written and
// fsynced; logs its own error line on failure.
typedef ts_status (*ckpt_dir_fill_fn)(const char *tmp_dir, void *ctx);

// Save root/step-NNNNNNNN atomically: create root if missing, remove leftovers, build
// step-NNNNNNNN.tmp (fill, then IDENTITY, then MANIFEST), rename it into place (fs_commit_dir),
// then prune (ckpt_dir_prune). An existing step directory of the same step is
// replaced only when it belongs to the same lineage (a resumed run redoing steps); one of another
// run, a link or a file in its place fails the save, untouched. On failure one error line is
// logged and nothing but the .tmp directory was touched (it is removed).
ts_status ckpt_dir_save(const char *root, int step, const ckpt_identity *id, int keep,
                        ckpt_dir_fill_fn fill, void *ctx);

// After the save of `step`: delete all but the newest `keep` step directories of `lineage` up to
// `step`, and those of `lineage` past `step` (left by the run before it resumed from an earlier
// step; each with a warning). Deleted directories are renamed to .del first. Links, other
// lineages and directories whose IDENTITY cannot be read are neither counted nor touched.
void ckpt_dir_prune(const char *root, uint64_t lineage, int step, int keep);

typedef struct {
    char dir[CKPT_DIR_PATH_MAX];       // the chosen step directory; "" when none
    int step;                          // its step; -1 when none
    ckpt_identity id;                  // its identity (lineage 0: written before identities)
    char other_dir[CKPT_DIR_PATH_MAX]; // the newest step directory of another run; "" when none
    int other_step;                    // its step; -1 when none
} ckpt_dir_choice;

// The newest checkpoint of root to resume `want` from: a real step directory whose identity is
// the same run as want (ckpt_identity_same_run; one without IDENTITY, written before identities,
// also qualifies) and whose manifest verifies. Every other step entry is skipped with a warning
// "skipping step-NNNNNNNN: why"; the newest one of another run is also reported in other_dir.
// Returns TS_OK, with out->dir empty when there is none.
ts_status ckpt_dir_pick(const char *root, const ckpt_identity *want, ckpt_dir_choice *out);

// A step directory named by the user (run.resume = PATH): it must verify (else one error line,
// TS_ERR_INPUT); its identity goes to id.
ts_status ckpt_dir_check_path(const char *path, ckpt_identity *id);

// The newest step entry of root that may hold a run's checkpoint (a non-empty directory, or a
// link): 1 and its name in name, else 0. An empty step directory is not one.
int ckpt_dir_find_any(const char *root, char name[CKPT_DIR_NAME_LEN]);

// Remove every step entry of root and its leftovers (run.overwrite): directories are renamed to
// .del and removed, links removed (never followed). *removed: how many step entries went.
ts_status ckpt_dir_remove_all(const char *root, int *removed);

#endif
