// test_ckpt_dir.c — a host's checkpoint root (runtime/ckpt_dir.c) and the run identity it records
// (runtime/ckpt_identity.c), with plain files and no HDF5: step directory names; which config keys
// make the identity, its hash and the IDENTITY file (round trip, every malformed variant
// refused); saves and keep-K pruning counting only the run's own lineage (other runs' directories,
// a stray empty step-99999999 and links neither counted nor touched; the just-written save never
// pruned; steps of the lineage past the save removed); symbolic links in place of step and .tmp
// directories whose targets' files must survive every save, prune and cleanup, and are never
// resumed or written over; a half-deleted .del directory never chosen and cleaned at the next
// save; the choice of the newest intact checkpoint of this run (damaged, foreign and
// pre-identity directories); the check of a fresh start and run.overwrite's removal.
//
// usage: test_ckpt_dir DIR                      (a scratch directory, emptied first)
//        test_ckpt_dir --make-legacy STEP_DIR   (remove IDENTITY and rewrite MANIFEST: a step
//                                               directory as tessera wrote it before identities,
//                                               for the end-to-end tests in tests/cmake/ckpt.cmake)
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "runtime/ckpt_dir.h"
#include "runtime/ckpt_identity.h"
#include "runtime/manifest.h"

#include "tests/unit/expect.h"

// ---------------------------------------------------------------------------------------------
// helpers

static char g_dir[4096];

static void run(const char *cmd) {
    if (system(cmd) != 0) {
        fprintf(stderr, "test setup: '%s' failed\n", cmd);
        exit(1);
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "test setup: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

static int exists(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static int is_link(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode);
}

// a fresh directory under the scratch directory; returns its path (static buffer per slot)
static const char *scratch(int slot, const char *name) {
    static char paths[8][4200];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", g_dir, name);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", paths[slot], paths[slot]);
    run(cmd);
    return paths[slot];
}

// the names in dir, sorted, space-separated ("" when empty)
static const char *listing(const char *dir) {
    static char out[4096];
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls -A '%s' 2>/dev/null | tr '\\n' ' '", dir);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    if (p) pclose(p);
    out[n] = '\0';
    if (n && out[n - 1] == ' ') out[n - 1] = '\0';
    return out;
}

// a directory outside any checkpoint root with two files that must survive everything
static const char *victim(int slot, const char *name) {
    const char *dir = scratch(slot, name);
    char path[4300];
    snprintf(path, sizeof path, "%s/precious.txt", dir);
    write_text(path, "another run's weights\n");
    snprintf(path, sizeof path, "%s/MANIFEST", dir);
    write_text(path, "not ours\n");
    return dir;
}

static int victim_intact(const char *dir) {
    char a[4300], b[4300];
    snprintf(a, sizeof a, "%s/precious.txt", dir);
    snprintf(b, sizeof b, "%s/MANIFEST", dir);
    return exists(a) && exists(b) && strcmp(listing(dir), "MANIFEST precious.txt") == 0;
}

static int intact(const char *dir);

// the linked checkpoint: still whole
static int linked_intact(const char *dir) {
    return intact(dir) && strcmp(listing(dir), "IDENTITY MANIFEST state.bin") == 0;
}

// the fill function of a save: one plain file naming the step
static ts_status fill_plain(const char *tmp_dir, void *ctx) {
    char path[4300], text[64];
    snprintf(path, sizeof path, "%s/state.bin", tmp_dir);
    snprintf(text, sizeof text, "state of step %d\n", *(const int *)ctx);
    return fs_write_new_file(path, text, strlen(text));
}

static ts_status save(const char *root, int step, const ckpt_identity *id, int keep) {
    return ckpt_dir_save(root, step, id, keep, fill_plain, &step);
}

static const char *step_path(const char *root, int step) {
    static char path[4300];
    char name[CKPT_DIR_NAME_LEN];
    ckpt_dir_step_name(step, name);
    snprintf(path, sizeof path, "%s/%s", root, name);
    return path;
}

static int intact(const char *dir) {
    char why[512];
    return manifest_verify(dir, why, sizeof why) == TS_OK;
}

// remove IDENTITY and rewrite MANIFEST: the directory as written before identities
static int make_legacy(const char *dir) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_IDENTITY_FILE);
    if (unlink(path) != 0) return 0;
    snprintf(path, sizeof path, "%s/%s", dir, MANIFEST_NAME);
    if (unlink(path) != 0) return 0;
    return manifest_write(dir) == TS_OK;
}

// two runs: A and B differ in the learning rate (an identity key), C in the seed
static ckpt_identity g_a, g_b, g_c;
static tessera_config g_cfg_a, g_cfg_b;

static void make_identities(void) {
    config_defaults(&g_cfg_a);
    g_cfg_a.model.layers = 2;
    g_cfg_b = g_cfg_a;
    g_cfg_b.train.lr = 0.002;
    tessera_config c = g_cfg_a;
    c.run.seed = 7;
    ckpt_identity_of(&g_cfg_a, 0xaaaa000000000001ull, &g_a);
    ckpt_identity_of(&g_cfg_b, 0xbbbb000000000002ull, &g_b);
    ckpt_identity_of(&c, 0xcccc000000000003ull, &g_c);
}

// ---------------------------------------------------------------------------------------------
// the cases

static void test_names(void) {
    char name[CKPT_DIR_NAME_LEN];
    ckpt_dir_step_name(40, name);
    EXPECT(strcmp(name, "step-00000040") == 0, "name of 40: %s", name);
    ckpt_dir_step_name(99999999, name);
    EXPECT(strcmp(name, "step-99999999") == 0, "name of 99999999: %s", name);
    EXPECT(ckpt_dir_parse_step("step-00000040") == 40, "parse step-00000040");
    EXPECT(ckpt_dir_parse_step("step-00000000") == 0, "parse step-00000000");
    static const char *const bad[] = {"step-0000004",
                                      "step-000000400",
                                      "step-0000004x",
                                      "step-00000040.tmp",
                                      "step-00000040.del",
                                      "step--0000001",
                                      "Step-00000040",
                                      "step-+0000040",
                                      "",
                                      "step-",
                                      "step-0000 040"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        EXPECT(ckpt_dir_parse_step(bad[i]) == -1, "'%s' parsed as a step directory", bad[i]);
}

static void test_identity(void) {
    EXPECT(!ckpt_identity_resumable("train", "lr"), "train.lr is part of the identity");
    EXPECT(!ckpt_identity_resumable("run", "seed"), "run.seed is part of the identity");
    EXPECT(!ckpt_identity_resumable("model", "width"), "model.width is part of the identity");
    EXPECT(!ckpt_identity_resumable("data", "train"), "data.train is part of the identity");
    EXPECT(!ckpt_identity_resumable("train", "global_batch"), "global_batch is identity");
    static const char *const resumable[][2] = {
        {"train", "steps"},      {"run", "resume"},        {"run", "overwrite"},
        {"run", "name"},         {"ckpt", "every"},        {"ckpt", "keep"},
        {"comm", "zero_stage"},  {"log", "every"},         {"eval", "every"},
        {"data", "val"},         {"train", "micro_batch"}, {"run", "backend"},
        {"data", "log_samples"}, {"balance", "policy"},    {"balance", "on"}};
    for (size_t i = 0; i < sizeof resumable / sizeof *resumable; i++)
        EXPECT(ckpt_identity_resumable(resumable[i][0], resumable[i][1]), "%s.%s may change",
               resumable[i][0], resumable[i][1]);

    // keys a resume may change leave the hash alone; identity keys change it
    tessera_config cfg = g_cfg_a;
    cfg.train.steps = 12345;
    cfg.ckpt.every = 7;
    cfg.ckpt.keep = 9;
    snprintf(cfg.run.resume, sizeof cfg.run.resume, "auto");
    snprintf(cfg.run.name, sizeof cfg.run.name, "elsewhere");
    cfg.run.overwrite = 1;
    cfg.comm.zero_stage = 1;
    ckpt_identity id;
    ckpt_identity_of(&cfg, 5, &id);
    EXPECT(ckpt_identity_same_run(&id, &g_a), "resumable keys changed the identity");
    EXPECT(id.lineage == 5, "lineage %" PRIx64, id.lineage);
    EXPECT(!ckpt_identity_same_run(&g_a, &g_b), "a changed lr kept the identity");
    EXPECT(g_a.seed == g_b.seed && g_a.config_hash != g_b.config_hash, "lr: hash not changed");
    EXPECT(!ckpt_identity_same_run(&g_a, &g_c) && g_c.seed == 7, "seed: identity not changed");

    // keys at their default are left out: the defaults hash the empty text
    tessera_config def;
    config_defaults(&def);
    ckpt_identity_of(&def, 1, &id);
    EXPECT(id.config_hash == 0xef46db3751d8e999ull, "defaults hash to %016" PRIx64, id.config_hash);

    // the diff names the first identity key that differs, both values, and counts the rest
    char diff[512];
    EXPECT(ckpt_identity_diff(&g_cfg_b, &g_cfg_a, diff, sizeof diff) == 1, "one key differs");
    EXPECT(strcmp(diff, "[train] lr = 0.002 in the checkpoint, 0.001 here") == 0, "diff '%s'",
           diff);
    tessera_config two = g_cfg_b;
    two.model.width = 64;
    two.train.steps = 3; // resumable: not counted
    EXPECT(ckpt_identity_diff(&two, &g_cfg_a, diff, sizeof diff) == 2, "two keys differ");
    EXPECT(strcmp(diff, "[model] width = 64 in the checkpoint, 128 here") == 0, "diff '%s'", diff);
    EXPECT(ckpt_identity_diff(&cfg, &g_cfg_a, diff, sizeof diff) == 0 && !diff[0],
           "resumable keys counted as a difference: '%s'", diff);

    // the file: round trip, then every malformed variant refused
    const char *dir = scratch(0, "identity");
    ckpt_identity back;
    int present = 1;
    char why[512], path[4300];
    EXPECT(ckpt_identity_read(dir, &back, &present, why, sizeof why) == TS_OK && !present &&
               back.lineage == 0,
           "a directory without IDENTITY reads as lineage 0");
    EXPECT(ckpt_identity_write(dir, &g_a) == TS_OK, "write");
    EXPECT(ckpt_identity_write(dir, &g_a) != TS_OK, "write over an existing IDENTITY");
    EXPECT(ckpt_identity_read(dir, &back, &present, why, sizeof why) == TS_OK && present &&
               back.lineage == g_a.lineage && back.seed == g_a.seed &&
               back.config_hash == g_a.config_hash,
           "round trip");
    snprintf(path, sizeof path, "%s/%s", dir, CKPT_IDENTITY_FILE);
    char good[256];
    snprintf(good, sizeof good,
             "tessera-identity 1\nlineage %016" PRIx64 "\nseed %" PRId64 "\nconfig %016" PRIx64
             "\n",
             g_a.lineage, g_a.seed, g_a.config_hash);
    const char *ok_lineage0 = "tessera-identity 1\nlineage 0000000000000000\nseed 1337\n"
                              "config 00000000000000ff\n";
    write_text(path, ok_lineage0);
    EXPECT(ckpt_identity_read(dir, &back, &present, why, sizeof why) == TS_OK && present &&
               back.lineage == 0 && back.config_hash == 0xff,
           "lineage 0 (a continued pre-identity run) is readable");
    static const char *const malformed[] = {
        "",
        "tessera-identity 2\nlineage aaaa000000000001\nseed 1337\nconfig 00000000000000ff\n",
        "tessera-identity 1\nlineage AAAA000000000001\nseed 1337\nconfig 00000000000000ff\n",
        "tessera-identity 1\nlineage aaaa00000000001\nseed 1337\nconfig 00000000000000ff\n",
        "tessera-identity 1\nlineage aaaa000000000001\nseed 1337\nconfig 00000000000000ff",
        "tessera-identity 1\nlineage aaaa000000000001\nseed  1337\nconfig 00000000000000ff\n",
        "tessera-identity 1\nlineage aaaa000000000001\nseed -1\nconfig 00000000000000ff\n",
        "tessera-identity 1\nlineage aaaa000000000001\nseed 1337\nconfig 00000000000000ff\nx\n",
        "tessera-identity 1 lineage aaaa000000000001 seed 1337 config 00000000000000ff\n",
    };
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        write_text(path, malformed[i]);
        why[0] = '\0';
        EXPECT(ckpt_identity_read(dir, &back, &present, why, sizeof why) == TS_ERR_INPUT &&
                   !present && strncmp(why, "IDENTITY: ", 10) == 0,
               "malformed identity %zu accepted (why '%s')", i, why);
    }
    // a link in IDENTITY's place is not read through
    char target[4300];
    snprintf(target, sizeof target, "%s/real", dir);
    write_text(target, good);
    unlink(path);
    EXPECT(symlink(target, path) == 0, "symlink");
    EXPECT(ckpt_identity_read(dir, &back, &present, why, sizeof why) == TS_ERR_INPUT,
           "IDENTITY read through a link");
}

// saves, keep-K of the own lineage, other lineages, a stray empty step-99999999, stale steps
static void test_save_and_prune(void) {
    const char *root = scratch(0, "prune");
    for (int s = 1; s <= 5; s++)
        EXPECT(save(root, s, &g_a, 2) == TS_OK, "save %d", s);
    EXPECT(strcmp(listing(root), "step-00000004 step-00000005") == 0, "keep 2: %s", listing(root));
    EXPECT(intact(step_path(root, 5)), "step 5 verifies");
    EXPECT(strcmp(listing(step_path(root, 5)), "IDENTITY MANIFEST state.bin") == 0,
           "step directory content: %s", listing(step_path(root, 5)));
    ckpt_identity back;
    int present;
    char why[256];
    EXPECT(ckpt_identity_read(step_path(root, 5), &back, &present, why, sizeof why) == TS_OK &&
               present && back.lineage == g_a.lineage,
           "the save records its lineage");

    // another run's directories (lineage B, newer and older) are neither counted nor touched
    EXPECT(save(root, 3, &g_b, 100) == TS_OK && save(root, 10, &g_b, 100) == TS_OK, "B saves");
    EXPECT(save(root, 6, &g_a, 2) == TS_OK, "save 6");
    EXPECT(strcmp(listing(root), "step-00000003 step-00000005 step-00000006 step-00000010") == 0,
           "A keeps 5, 6; B keeps 3, 10: %s", listing(root));
    EXPECT(intact(step_path(root, 10)) && intact(step_path(root, 3)), "B's directories intact");

    // a stray empty step-99999999 does not make the new save be deleted (keep 1)
    char stray[4300];
    snprintf(stray, sizeof stray, "%s/step-99999999", root);
    EXPECT(mkdir(stray, 0755) == 0, "mkdir stray");
    EXPECT(save(root, 7, &g_a, 1) == TS_OK, "save 7");
    EXPECT(exists(step_path(root, 7)) && intact(step_path(root, 7)), "the new save was pruned");
    EXPECT(!exists(step_path(root, 6)) && !exists(step_path(root, 5)), "A's older saves remain");
    EXPECT(exists(stray), "the stray directory was removed");

    // steps of the lineage past the save (the run resumed from an earlier step) are removed;
    // the just-written save is kept whatever keep says
    EXPECT(save(root, 20, &g_a, 100) == TS_OK, "save 20");
    EXPECT(save(root, 8, &g_a, 1) == TS_OK, "save 8 after 20");
    EXPECT(!exists(step_path(root, 20)), "A's step 20 (an abandoned future) remains");
    EXPECT(exists(step_path(root, 8)), "the save of step 8 is gone");
    EXPECT(strcmp(listing(root), "step-00000003 step-00000008 step-00000010 step-99999999") == 0,
           "after save 8: %s", listing(root));

    // a save over a step directory of another run fails and leaves it as it was
    EXPECT(save(root, 10, &g_a, 2) == TS_ERR_INPUT, "save over B's step 10");
    EXPECT(intact(step_path(root, 10)), "B's step 10 changed");
    EXPECT(ckpt_identity_read(step_path(root, 10), &back, &present, why, sizeof why) == TS_OK &&
               back.lineage == g_b.lineage,
           "B's step 10 replaced");
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", step_path(root, 10));
    EXPECT(!exists(tmp), "a refused save left its .tmp");
    // the same run redoing a step replaces its own directory
    EXPECT(save(root, 8, &g_a, 2) == TS_OK && intact(step_path(root, 8)), "redo step 8");
}

// links in place of step and .tmp directories: targets untouched, never resumed or written over
static void test_links(void) {
    const char *root = scratch(0, "links");
    const char *v2 = victim(2, "victim2"), *v3 = victim(3, "victim3");
    // v1: an intact checkpoint of this very run at step 9 elsewhere, linked in: it would verify
    // and be the newest, yet it is not one of this root's step directories
    const char *elsewhere = scratch(1, "elsewhere");
    EXPECT(save(elsewhere, 9, &g_a, 1) == TS_OK, "save 9 elsewhere");
    char v1[4300];
    snprintf(v1, sizeof v1, "%s", step_path(elsewhere, 9));
    EXPECT(save(root, 1, &g_a, 1) == TS_OK, "save 1");
    char link9[4300], link_tmp[4300], link_del[4300];
    snprintf(link9, sizeof link9, "%s", step_path(root, 9));
    snprintf(link_tmp, sizeof link_tmp, "%s/step-00000003.tmp", root);
    snprintf(link_del, sizeof link_del, "%s/step-00000004.del", root);
    EXPECT(symlink(v1, link9) == 0 && symlink(v2, link_tmp) == 0 && symlink(v3, link_del) == 0,
           "symlinks");

    // a save cleans leftovers (links removed as links) and prunes: targets survive
    EXPECT(save(root, 2, &g_a, 1) == TS_OK, "save 2");
    EXPECT(linked_intact(v1) && victim_intact(v2) && victim_intact(v3), "a target lost files");
    EXPECT(is_link(link9), "the linked step directory was removed");
    EXPECT(!exists(link_tmp) && !exists(link_del), "leftover links remain");
    EXPECT(strcmp(listing(root), "step-00000002 step-00000009") == 0, "root: %s", listing(root));

    // the newest step entry is the link: a resume skips it
    ckpt_dir_choice choice;
    ckpt_dir_pick(root, &g_a, &choice);
    EXPECT(choice.step == 2, "resume picked step %d, want 2 (not the link)", choice.step);
    // a save at the link's step fails: the link and its target stay
    EXPECT(save(root, 9, &g_a, 1) == TS_ERR_INPUT, "save over a link");
    EXPECT(is_link(link9) && linked_intact(v1), "the link or its target changed");
    // prune with keep 0 would have everything of lineage A go, never the link
    ckpt_dir_prune(root, g_a.lineage, 2, 0);
    EXPECT(is_link(link9) && linked_intact(v1), "prune touched the link");
    // a fresh start sees the link as an earlier run's checkpoint; run.overwrite removes the link,
    // never its target
    char name[CKPT_DIR_NAME_LEN];
    EXPECT(ckpt_dir_find_any(root, name) && strcmp(name, "step-00000009") == 0, "find_any: %s",
           name);
    int removed = -1;
    EXPECT(ckpt_dir_remove_all(root, &removed) == TS_OK && removed == 1, "remove_all %d", removed);
    EXPECT(!exists(link9) && linked_intact(v1), "remove_all followed the link");
}

// a pruning killed in the middle leaves a half-deleted .del: never chosen, cleaned at the next save
static void test_half_deleted(void) {
    const char *root = scratch(0, "half");
    for (int s = 1; s <= 3; s++)
        EXPECT(save(root, s, &g_a, 10) == TS_OK, "save %d", s);
    // step 3 was being pruned: renamed, one file already gone (MANIFEST and IDENTITY remain)
    char del[4300], path[4400];
    snprintf(del, sizeof del, "%s.del", step_path(root, 3));
    EXPECT(rename(step_path(root, 3), del) == 0, "rename");
    snprintf(path, sizeof path, "%s/state.bin", del);
    EXPECT(unlink(path) == 0, "unlink");
    // and a complete-looking one too: a .del is never a checkpoint, whatever it holds
    char del5[4300];
    EXPECT(save(root, 5, &g_a, 10) == TS_OK, "save 5");
    snprintf(del5, sizeof del5, "%s.del", step_path(root, 5));
    EXPECT(rename(step_path(root, 5), del5) == 0, "rename 5");
    ckpt_dir_choice choice;
    ckpt_dir_pick(root, &g_a, &choice);
    EXPECT(choice.step == 2, "resume picked %d, want 2", choice.step);
    EXPECT(strstr(choice.dir, ".del") == NULL, "a .del chosen: %s", choice.dir);
    char name[CKPT_DIR_NAME_LEN];
    EXPECT(ckpt_dir_find_any(root, name) && strcmp(name, "step-00000002") == 0, "find_any %s",
           name);
    EXPECT(save(root, 4, &g_a, 10) == TS_OK, "save 4");
    EXPECT(!exists(del) && !exists(del5), "the .del directories remain after the next save");
    EXPECT(strcmp(listing(root), "step-00000001 step-00000002 step-00000004") == 0, "root: %s",
           listing(root));
    // and at a start: leftovers of every kind go, step directories stay
    char tmp[4300], old[4300];
    snprintf(tmp, sizeof tmp, "%s/step-00000007.tmp", root);
    snprintf(old, sizeof old, "%s/step-00000001.old", root);
    EXPECT(mkdir(tmp, 0755) == 0 && mkdir(old, 0755) == 0, "mkdir leftovers");
    snprintf(path, sizeof path, "%s/state.bin", tmp);
    write_text(path, "partial\n");
    ckpt_dir_clean_leftovers(root);
    EXPECT(strcmp(listing(root), "step-00000001 step-00000002 step-00000004") == 0,
           "after cleaning: %s", listing(root));
}

// which checkpoint a resume takes: newest intact of this run; other runs' reported
static void test_pick(void) {
    const char *root = scratch(0, "pick");
    ckpt_dir_choice choice;
    ckpt_dir_pick(root, &g_a, &choice);
    EXPECT(choice.step == -1 && !choice.dir[0] && choice.other_step == -1, "empty root");
    ckpt_dir_pick("/nonexistent/root", &g_a, &choice);
    EXPECT(choice.step == -1, "missing root");
    for (int s = 1; s <= 3; s++)
        EXPECT(save(root, s, &g_a, 10) == TS_OK, "save %d", s);
    // the newest one is damaged: the one before
    char path[4400];
    snprintf(path, sizeof path, "%s/state.bin", step_path(root, 3));
    write_text(path, "state of step 9\n");
    ckpt_dir_pick(root, &g_a, &choice);
    EXPECT(choice.step == 2 && strcmp(choice.dir, step_path(root, 2)) == 0, "picked %d (%s)",
           choice.step, choice.dir);
    EXPECT(choice.id.lineage == g_a.lineage, "lineage of the choice");
    // another run's newer checkpoint is skipped and reported
    EXPECT(save(root, 4, &g_b, 10) == TS_OK, "B saves 4");
    ckpt_dir_pick(root, &g_a, &choice);
    EXPECT(choice.step == 2 && choice.other_step == 4 &&
               strcmp(choice.other_dir, step_path(root, 4)) == 0,
           "picked %d, other %d", choice.step, choice.other_step);
    // a run of another seed finds none of its own: the newest other one is reported
    ckpt_dir_pick(root, &g_c, &choice);
    EXPECT(choice.step == -1 && choice.other_step == 4, "C: picked %d, other %d", choice.step,
           choice.other_step);
    // a checkpoint written before identities qualifies (lineage 0)
    EXPECT(save(root, 5, &g_a, 10) == TS_OK && make_legacy(step_path(root, 5)), "legacy 5");
    ckpt_dir_pick(root, &g_c, &choice);
    EXPECT(choice.step == 5 && choice.id.lineage == 0, "legacy: picked %d lineage %" PRIx64,
           choice.step, choice.id.lineage);
    // a malformed IDENTITY is skipped
    snprintf(path, sizeof path, "%s/%s", step_path(root, 5), CKPT_IDENTITY_FILE);
    write_text(path, "garbage\n");
    ckpt_dir_pick(root, &g_a, &choice);
    EXPECT(choice.step == 2, "malformed identity: picked %d", choice.step);
    // an explicit path: must verify
    ckpt_identity id;
    EXPECT(ckpt_dir_check_path(step_path(root, 2), &id) == TS_OK && id.lineage == g_a.lineage,
           "check_path of an intact one");
    EXPECT(ckpt_dir_check_path(step_path(root, 3), &id) == TS_ERR_INPUT, "check_path damaged");
}

// a fresh start's check and run.overwrite
static void test_fresh_and_overwrite(void) {
    const char *root = scratch(0, "fresh");
    char name[CKPT_DIR_NAME_LEN];
    EXPECT(!ckpt_dir_find_any(root, name), "empty root");
    EXPECT(!ckpt_dir_find_any("/nonexistent/root", name), "missing root");
    char stray[4300], leftover[4300];
    snprintf(stray, sizeof stray, "%s/step-99999999", root);
    snprintf(leftover, sizeof leftover, "%s/step-00000005.tmp", root);
    EXPECT(mkdir(stray, 0755) == 0 && mkdir(leftover, 0755) == 0, "mkdir");
    EXPECT(!ckpt_dir_find_any(root, name), "an empty stray directory or a leftover counted");
    EXPECT(save(root, 3, &g_b, 2) == TS_OK, "B saves 3");
    EXPECT(ckpt_dir_find_any(root, name) && strcmp(name, "step-00000003") == 0, "find_any: %s",
           name);
    int removed = -1;
    EXPECT(ckpt_dir_remove_all(root, &removed) == TS_OK && removed == 2, "removed %d", removed);
    EXPECT(strcmp(listing(root), "") == 0, "after remove_all: %s", listing(root));
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--make-legacy") == 0) {
        if (!make_legacy(argv[2])) {
            fprintf(stderr, "test_ckpt_dir: %s: cannot make it a pre-identity directory\n",
                    argv[2]);
            return 1;
        }
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_ckpt_dir DIR | --make-legacy STEP_DIR\n");
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "%s", argv[1]);
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", g_dir, g_dir);
    run(cmd);
    make_identities();
    test_names();
    test_identity();
    test_save_and_prune();
    test_links();
    test_half_deleted();
    test_pick();
    test_fresh_and_overwrite();
    if (g_failures) fprintf(stderr, "test_ckpt_dir: %d failure(s)\n", g_failures);
    return g_failures != 0;
}
