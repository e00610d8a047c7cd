// config.h — the training configuration: one table of keys drives parsing, overrides, --help
// and the resolved config written to the run directory.
//
// File format: a TOML-compatible subset of INI, parsed with libinih:
//   # comment on its own line
//   [section]
//   key = value          (integers, floats, true/false, "quoted strings")
// Command-line overrides: --section.key=value.
#ifndef TESSERA_CONFIG_H
#define TESSERA_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "base/common.h"

#define CFG_STR      512
#define CFG_MAX_KEYS 96 // room in the per-key tables (cfg_n_keys is checked against it)

// Where a key's value came from, recorded by the file parser and the override parser; error
// messages about the key name it. Not part of the config's values: config_write ignores it.
typedef enum { CFG_FROM_DEFAULT = 0, CFG_FROM_FILE, CFG_FROM_OVERRIDE } cfg_from;

typedef struct {
    cfg_from from;
    int line;           // CFG_FROM_FILE: the line that set the key
    int order;          // 1, 2, ... in the order keys were set; 0 for a default
    char text[CFG_STR]; // CFG_FROM_FILE: the file name; CFG_FROM_OVERRIDE: the argument as given
} cfg_origin;

typedef struct {
    struct {
        char name[128];        // run name: the run directory is <out_dir>/<name>
        char out_dir[CFG_STR]; // where run directories are created
        int64_t seed;          // data order and initialisation
        char backend[16];      // auto | cpu | cuda
        char precision[8];     // bf16 | fp32 (CUDA only)
        int threads;           // compute threads per rank (0 = cores / ranks on this host)
        char resume[CFG_STR];  // "" fresh, "auto" newest intact checkpoint, or a step directory
        int overwrite;         // a fresh start may replace an earlier run's results
    } run;
    struct {
        char arch[16]; // an architecture of the model registry (models/model.h): gpt2
        int layers, heads, width, seq_len, vocab;
    } model;
    struct {
        char train[CFG_STR];     // glob pattern of training shards
        char val[CFG_STR];       // glob pattern of validation shards
        char tokenizer[CFG_STR]; // "byte" or an llm.c tokenizer file (for sample)
        int log_samples;         // write samples.rank-R.txt
    } data;
    struct {
        int steps;
        int global_batch; // sequences per optimizer step, over all ranks
        int micro_batch;  // upper bound on sequences per forward/backward on one rank
        double lr, lr_min_ratio;
        int warmup_steps;
        double weight_decay, beta1, beta2, eps, grad_clip;
        char optimizer[8]; // adamw | sgd
    } train;
    struct {
        int every;   // validate every N steps (0 = only at the end)
        int batches; // validation micro-batches per rank-share (each global_batch sequences)
    } eval;
    struct {
        int every;         // progress line and metrics every N steps
        int sample_tokens; // tokens sampled at the end of a run (0 = none)
    } log;
    struct {
        double timeout_s;      // deadline for any collective
        double init_timeout_s; // deadline for start-up and shut-down
        double bucket_mb;      // gradient bucket size
        int overlap;           // reduce buckets during backward
        int zero_stage;        // 0 or 1
        int trace;             // write comm_trace.jsonl
        char codec[32];        // gradient codec (collectives/codec.h registry)
        int dense_below;       // tensors of fewer values travel uncompressed
        double topk_fraction;  // topk: fraction of each bucket's values sent
        char topk_values[8];   // topk: fp32 | int2
        int powersgd_rank;     // powersgd: rank of the approximation
        int zstd;              // lossless zstd on encoded payloads where it pays
    } comm;
    struct {
        int every;        // checkpoint every N steps (0 = only at the end of the run)
        int keep;         // newest checkpoints kept in <run_dir>/ckpt/<host>
        int replicas;     // ranks on distinct hosts that each write a full copy
        int max_failures; // consecutive failed saves after which the run stops
    } ckpt;
    struct {
        int inner_steps;       // H: inner steps between syncs (0: plain data parallelism)
        double outer_lr;       // outer SGD learning rate
        double outer_momentum; // outer SGD momentum
        int nesterov;          // Nesterov momentum
        int fragments;         // streaming: parameter fragments synced at staggered steps (1: off)
        double mix;            // streaming: weight of the local fragment when the global one lands
    } diloco;
    struct {
        int on;               // shares of the global batch follow measured speed
        char policy[8];       // wait | drop: what a rank late past the deadline does
        double threshold;     // re-balance when the expected step time is this much above the best
        double smoothing;     // weight of the old speed estimate in each new one
        double deadline;      // late: past this multiple of the expected step time
        int late_steps;       // consecutive late steps that force a re-balance
        char speeds[CFG_STR]; // declared relative speeds by rank ("" none): the starting shares
    } balance;
    cfg_origin origin[CFG_MAX_KEYS]; // indexed like cfg_keys[]; zeroed = every key a default
} tessera_config;

typedef enum { CFG_INT, CFG_INT64, CFG_FLOAT, CFG_BOOL, CFG_STRING, CFG_ENUM } cfg_type;

typedef struct {
    const char *section, *name;
    cfg_type type;
    size_t offset, size; // where the value lives in tessera_config (size: for strings)
    const char *def;     // default, as text
    double min, max;     // bounds for numbers (inclusive)
    const char *choices; // for CFG_ENUM: "a|b|c"
    const char *help;
} cfg_key;

extern const cfg_key cfg_keys[];
extern const int cfg_n_keys;

// The bounds of numeric key [section] name, as integers (for readers of files that store values
// of such keys: a checkpoint's step, a weights file's model shape). A key that is not in the
// table is a bug.
void config_key_bounds(const char *section, const char *name, int64_t *min, int64_t *max);

// Fill every key with its default.
void config_defaults(tessera_config *cfg);

// Read a whole config file into memory (error names the file). *text is NUL-terminated; free().
// A config file is a regular file (a FIFO or a device is refused, not waited on) of at most
// CONFIG_MAX_BYTES.
#define CONFIG_MAX_BYTES (1 << 20)
ts_status config_read_file(const char *path, char **text, size_t *len);

// Parse config text (the content of file `filename`, used in messages) on top of cfg; records
// FILE:LINE as the origin of each key set. Nothing changes unless the whole text is good.
// Errors: one line "FILE:LINE: ..." naming the key and what was expected; TS_ERR_INPUT.
ts_status config_parse_text(tessera_config *cfg, const char *text, size_t len,
                            const char *filename);

// Apply one override "--section.key=value" (also accepts "section.key=value"); records the
// argument as the key's origin.
ts_status config_apply_override(tessera_config *cfg, const char *arg);

// The CONFIG argument of `tessera CMD CONFIG [--section.key=value ...] [--resume auto|PATH]`
// (exactly one argument that is not an option; errors name CMD).
ts_status config_find_path(int argc, char **argv, const char *cmd, const char **path);

// Apply every --section.key=value of argv[1..] in order, and the --resume alias; arguments that
// start with skip_prefix (NULL: none) belong to the command and are left alone.
ts_status config_apply_args(tessera_config *cfg, int argc, char **argv, const char *skip_prefix);

// Checks across keys (heads divide width, batch settings possible, ...); world = ranks. Also
// re-checks every value against its key's rules (a program may have set fields directly).
// Errors: one line that starts with where the offending key was set —
//   "FILE:LINE: [section] key: ...", "--section.key=value: ..." or "[section] key (default): ..."
// — and, for a check between two keys, names the one set last (see docs/config.md).
ts_status config_validate(const tessera_config *cfg, int world);

// Every key with its type, default, bounds and help (tessera train --help).
void config_print_help(FILE *out);

// The resolved config in the same file format (parses back to the same values).
void config_write(const tessera_config *cfg, FILE *out);

#endif
