// config.c — the training configuration's key table (cfg_keys[]): every key people can set, with
// its type, default, bounds, choices and help. This is the file to edit to add a key; the table
// drives the file parser (config_file.c), values, overrides, help and the resolved config
// (config_value.c), and the checks across keys (config_check.c).
#include "runtime/config.h"
#include "collectives/codec.h" // CODEC_CHOICES: the codec registry's names
#include "runtime/config_internal.h"

#include "kernels/registry.h"
#include "models/model.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// the key table

#define CFG_FIELD(sec, field)                                                                      \
    offsetof(tessera_config, sec.field), sizeof(((tessera_config *)0)->sec.field)
#define KEY(sec, field, type, def, lo, hi, choices, help)                                          \
    { #sec, #field, type, CFG_FIELD(sec, field), def, lo, hi, choices, help }

// Defaults are written as on the command line (strings unquoted) and parsed by the same code as
// every other value, so a default outside its own bounds is caught by config_defaults.
const cfg_key cfg_keys[] = {
    KEY(run, name, CFG_STRING, "run", 0, 0, NULL,
        "run name: the run directory is <out_dir>/<name>"),
    KEY(run, out_dir, CFG_STRING, "runs", 0, 0, NULL, "folder where run directories are created"),
    KEY(run, seed, CFG_INT64, "1337", 0, 9007199254740991.0, NULL,
        "seed of the data order and the initial weights"),
    // the choices are the registry's: every backend tessera knows (kernels/registry.h)
    KEY(run, backend, CFG_ENUM, "auto", 0, 0, backend_registry_choices,
        "compute backend (auto: a GPU backend when tessera was built with one and this host has a "
        "device, else the CPU; `tessera help` lists the backends built)"),
    KEY(run, precision, CFG_ENUM, "bf16", 0, 0, "bf16|fp32",
        "CUDA: bf16 activations and weights with fp32 master weights (bf16), or all fp32 (fp32, "
        "for checking); the CPU computes in fp32 either way"),
    KEY(run, threads, CFG_INT, "0", 0, 1024, NULL,
        "compute threads per rank (0: the host's cores divided by its ranks)"),
    KEY(run, resume, CFG_STRING, "", 0, 0, NULL,
        "resume from a checkpoint: empty = start fresh; \"auto\" = the newest intact one of this "
        "run (same seed and config) in <run_dir>/ckpt/<host> of any rank (none: start fresh); or "
        "the path of a step-NNNNNNNN directory"),
    KEY(run, overwrite, CFG_BOOL, "false", 0, 0, NULL,
        "a fresh start (no resume) in a run directory holding an earlier run's results "
        "(model.h5, metrics.jsonl, train.log, checkpoints) replaces them; false: it is refused"),

    // the choices are the registry's: every architecture tessera knows (models/model.h)
    KEY(model, arch, CFG_ENUM, "gpt2", 0, 0, model_arch_choices,
        "model architecture; the other [model] keys give its shape"),
    KEY(model, layers, CFG_INT, "4", 1, 4096, NULL, "transformer blocks"),
    KEY(model, heads, CFG_INT, "4", 1, 65536, NULL, "attention heads (must divide width)"),
    KEY(model, width, CFG_INT, "128", 1, 65536, NULL, "channels of the residual stream"),
    KEY(model, seq_len, CFG_INT, "128", 2, 1048576, NULL, "tokens per training sequence"),
    // the padded vocabulary (next multiple of 128) must still fit an int
    KEY(model, vocab, CFG_INT, "256", 2, 2147483520.0, NULL,
        "vocabulary size (the LM head is padded to a multiple of 128)"),

    KEY(data, train, CFG_STRING, "data/fortunes/train_*.bin", 0, 0, NULL,
        "glob pattern of the training token shards"),
    KEY(data, val, CFG_STRING, "data/fortunes/val_*.bin", 0, 0, NULL,
        "glob pattern of the validation token shards"),
    KEY(data, tokenizer, CFG_STRING, "byte", 0, 0, NULL,
        "\"byte\" or a GPT-2 tokenizer file, to decode samples"),
    KEY(data, log_samples, CFG_BOOL, "false", 0, 0, NULL,
        "append the global index of every sample each rank trains on to "
        "<run_dir>/samples.rank-R.txt (to audit the data order)"),

    KEY(train, steps, CFG_INT, "1000", 1, 1e9, NULL, "optimizer steps"),
    KEY(train, global_batch, CFG_INT, "32", 1, 16777216, NULL,
        "sequences per optimizer step, over all ranks"),
    KEY(train, micro_batch, CFG_INT, "16", 1, 65536, NULL,
        "most sequences per forward/backward on one rank"),
    KEY(train, lr, CFG_FLOAT, "1e-3", 0, 10, NULL, "peak learning rate, reached after warmup"),
    KEY(train, lr_min_ratio, CFG_FLOAT, "0.1", 0, 1, NULL,
        "final learning rate of the cosine decay, as a fraction of lr"),
    KEY(train, warmup_steps, CFG_INT, "50", 0, 1e9, NULL, "steps of linear warmup"),
    KEY(train, weight_decay, CFG_FLOAT, "0.1", 0, 10, NULL, "AdamW weight decay (matrices only)"),
    KEY(train, beta1, CFG_FLOAT, "0.9", 0, 0.999999, NULL, "AdamW first-moment decay"),
    KEY(train, beta2, CFG_FLOAT, "0.95", 0, 0.999999, NULL, "AdamW second-moment decay"),
    KEY(train, eps, CFG_FLOAT, "1e-8", 1e-30, 1, NULL, "AdamW denominator epsilon"),
    KEY(train, grad_clip, CFG_FLOAT, "1.0", 0, 1e6, NULL,
        "clip the global gradient norm to this (0: no clipping)"),

    KEY(train, optimizer, CFG_ENUM, "adamw", 0, 0, "adamw|sgd",
        "the optimizer (the inner one in DiLoCo mode): adamw, or sgd (w -= lr * (g + "
        "weight_decay * w), no momentum)"),
    KEY(eval, every, CFG_INT, "100", 0, 1e9, NULL, "validate every N steps (0: only at the end)"),
    KEY(eval, batches, CFG_INT, "4", 1, 1000000, NULL,
        "validation batches of global_batch sequences each"),

    KEY(log, every, CFG_INT, "10", 1, 1e9, NULL, "progress line and metrics every N steps"),
    KEY(log, sample_tokens, CFG_INT, "200", 0, 1000000, NULL,
        "tokens sampled at the end of the run (0: none)"),

    KEY(comm, timeout_s, CFG_FLOAT, "300", 0.01, 86400, NULL,
        "deadline in seconds for any collective (then: peer lost)"),
    KEY(comm, init_timeout_s, CFG_FLOAT, "600", 1, 86400, NULL,
        "deadline in seconds for MPI start-up and shut-down (MPI_Init, MPI_Finalize; a watchdog "
        "ends the process after it)"),
    KEY(comm, bucket_mb, CFG_FLOAT, "4", 0.0009765625, 4096, NULL,
        "gradient bucket size in MiB: each bucket is summed over ranks as soon as backward "
        "has produced it"),
    KEY(comm, overlap, CFG_BOOL, "true", 0, 0, NULL,
        "start each bucket's reduction during backward (false: all after backward)"),
    KEY(comm, trace, CFG_BOOL, "false", 0, 0, NULL,
        "write comm_trace.jsonl: when each bucket's reduction started and ended, and when "
        "backward ended, per step (rank 0)"),
    KEY(comm, zero_stage, CFG_INT, "0", 0, 1, NULL,
        "ZeRO stage: 0 = every rank holds the whole optimizer state; 1 = optimizer state "
        "sharded over ranks (reduce-scatter gradients, all-gather weights)"),
    KEY(comm, codec, CFG_ENUM, "none", 0, 0, CODEC_CHOICES,
        "gradient codec: how each bucket travels between ranks (none: fp32, summed exactly; "
        "bf16, int8, int4, int2: compressed with error feedback, all-gathered; topk: the "
        "largest values of each bucket with their indices, error feedback, all-gathered; "
        "powersgd: rank-r approximations of the matrices, two all-reduces)"),
    KEY(comm, dense_below, CFG_INT, "4096", 0, 1e9, NULL,
        "tensors of fewer values (biases, LayerNorm) travel uncompressed as fp32 under any "
        "codec (0: every tensor through the codec)"),
    KEY(comm, topk_fraction, CFG_FLOAT, "0.01", 1e-6, 1, NULL,
        "topk: the fraction of each bucket's values sent (the largest in magnitude)"),
    KEY(comm, topk_values, CFG_ENUM, "fp32", 0, 0, "fp32|int2",
        "topk: how the chosen values travel: fp32, or int2 (2-bit codes, a scale per block)"),
    KEY(comm, powersgd_rank, CFG_INT, "4", 1, 1024, NULL,
        "powersgd: rank of each matrix's approximation"),
    KEY(comm, zstd, CFG_BOOL, "true", 0, 0, NULL,
        "compress encoded payloads with zstd (lossless) where that makes them smaller"),
    KEY(ckpt, every, CFG_INT, "0", 0, 1e9, NULL,
        "write a checkpoint to <run_dir>/ckpt/<host> every N steps (0: only at the end of the "
        "run)"),
    KEY(ckpt, keep, CFG_INT, "2", 1, 1000000, NULL,
        "newest checkpoints kept; older ones are deleted after a successful save"),
    KEY(ckpt, replicas, CFG_INT, "2", 1, 1000000, NULL,
        "full copies of each checkpoint: the first N ranks (in rank order) on distinct hosts "
        "each write one to their own disk"),
    KEY(ckpt, max_failures, CFG_INT, "3", 1, 1000000, NULL,
        "consecutive failed checkpoint writes (disk full, I/O error) after which the run stops "
        "(exit 1); a failed write is logged and retried at the next interval"),
    KEY(diloco, inner_steps, CFG_INT, "0", 0, 1e9, NULL,
        "local SGD (DiLoCo): each rank takes this many inner steps on its own samples between "
        "syncs of the parameters (0: plain data parallelism, gradients summed every step)"),
    KEY(diloco, outer_lr, CFG_FLOAT, "0.7", 0, 100, NULL,
        "DiLoCo: learning rate of the outer SGD on the averaged pseudo-gradient"),
    KEY(diloco, outer_momentum, CFG_FLOAT, "0.9", 0, 0.999999, NULL,
        "DiLoCo: momentum of the outer SGD"),
    KEY(diloco, nesterov, CFG_BOOL, "true", 0, 0, NULL, "DiLoCo: Nesterov momentum"),
    KEY(diloco, fragments, CFG_INT, "1", 1, 1024, NULL,
        "streaming DiLoCo: the parameters are cut into this many fragments, synced at staggered "
        "inner steps, each sync's result applied one fragment period later (1: no streaming)"),
    KEY(diloco, mix, CFG_FLOAT, "0.5", 0, 1, NULL,
        "streaming DiLoCo: when a fragment's synced value lands, the local value keeps this "
        "weight (0: replaced by the synced value)"),
    KEY(balance, on, CFG_BOOL, "true", 0, 0, NULL,
        "split each step's global batch over ranks in proportion to their measured speed, so "
        "fast and slow ranks finish together (false: equal shares, or balance.speeds)"),
    KEY(balance, policy, CFG_ENUM, "wait", 0, 0, "wait|drop",
        "a rank late past the deadline: wait (the step waits for it; logged) or drop (it stops "
        "at its next micro-batch; the sequences it did not train go first into the next step)"),
    KEY(balance, threshold, CFG_FLOAT, "0.1", 0, 10, NULL,
        "re-balance when the expected step time with the current shares exceeds the best "
        "possible by this fraction"),
    KEY(balance, smoothing, CFG_FLOAT, "0.5", 0, 0.99, NULL,
        "weight of the previous speed estimate in each new one (0: the last step alone)"),
    KEY(balance, deadline, CFG_FLOAT, "2", 1, 1000, NULL,
        "a rank is late when its forward and backward take longer than this multiple of the "
        "step time the measured speeds predict (and at least 50 ms more)"),
    KEY(balance, late_steps, CFG_INT, "2", 1, 1000000, NULL,
        "consecutive late steps of a rank that force a re-balance"),
    KEY(balance, speeds, CFG_STRING, "", 0, 0, NULL,
        "declared relative speeds by rank, comma-separated (\"1,1,0.5\"): the shares until "
        "speeds are measured, and always with balance.on = false (\"\": equal shares)"),
};
const int cfg_n_keys = (int)(sizeof cfg_keys / sizeof cfg_keys[0]);
_Static_assert(sizeof cfg_keys / sizeof cfg_keys[0] <= CFG_MAX_KEYS,
               "raise CFG_MAX_KEYS (config.h): the origin table holds one entry per key");

// ---------------------------------------------------------------------------------------------
// lookups and "did you mean"

// Sections in table order; the table lists each section's keys together.
int cfg_sections(const char **names) {
    int n = 0;
    for (int i = 0; i < cfg_n_keys; i++)
        if (n == 0 || strcmp(names[n - 1], cfg_keys[i].section) != 0)
            names[n++] = cfg_keys[i].section;
    return n;
}

int cfg_find_section(const char *name) {
    const char *names[CFG_MAX_SECTIONS];
    int n = cfg_sections(names);
    for (int s = 0; s < n; s++)
        if (strcmp(names[s], name) == 0) return s;
    return -1;
}

int cfg_find_key(const char *section, const char *name) {
    for (int i = 0; i < cfg_n_keys; i++)
        if (strcmp(cfg_keys[i].section, section) == 0 && strcmp(cfg_keys[i].name, name) == 0)
            return i;
    return -1;
}

void config_key_bounds(const char *section, const char *name, int64_t *min, int64_t *max) {
    int k = cfg_find_key(section, name);
    TS_ASSERT(k >= 0 && cfg_keys[k].type != CFG_STRING && cfg_keys[k].type != CFG_ENUM);
    *min = (int64_t)cfg_keys[k].min;
    *max = (int64_t)cfg_keys[k].max;
}

// Edit distance with adjacent transpositions counting one ("trian" -> "train").
static int cfg_distance(const char *a, const char *b) {
    enum { N = 48 };
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la >= N || lb >= N) return 1000;
    int d[N][N];
    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

// How far a typed name is from a known one; large when not worth suggesting. A prefix of at
// least 4 characters counts as close ("warmup" -> "warmup_steps").
static int cfg_closeness(const char *typed, const char *known) {
    size_t lt = strlen(typed), lk = strlen(known);
    if (lt >= 4 && lk >= 4 && (strncmp(typed, known, lt < lk ? lt : lk) == 0)) return 1;
    int d = cfg_distance(typed, known);
    int limit = lt <= 4 ? 1 : 2;
    return d <= limit ? d : 1000;
}

// The closest key to section/name (a key of the same name in another section costs one more).
int cfg_suggest_key(const char *section, const char *name) {
    int best = -1, best_d = 1000;
    for (int i = 0; i < cfg_n_keys; i++) {
        int d = cfg_closeness(name, cfg_keys[i].name);
        if (d < 1000 && strcmp(cfg_keys[i].section, section) != 0) d += 1;
        if (d < best_d) best_d = d, best = i;
    }
    return best;
}

const char *cfg_suggest_section(const char *name) {
    const char *names[CFG_MAX_SECTIONS];
    int n = cfg_sections(names), best_d = 1000;
    const char *best = NULL;
    for (int s = 0; s < n; s++) {
        int d = cfg_closeness(name, names[s]);
        if (d < best_d) best_d = d, best = names[s];
    }
    return best;
}

void cfg_section_list(char *buf, size_t n) {
    const char *names[CFG_MAX_SECTIONS];
    int ns = cfg_sections(names);
    size_t used = 0;
    buf[0] = '\0';
    for (int s = 0; s < ns && used < n; s++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", s ? ", " : "", names[s]);
}
