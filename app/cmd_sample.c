// cmd_sample.c — `tessera sample`: generate text from saved weights (the command line; the
// generation itself is runtime/sample.c).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/commands.h"
#include "base/common.h"
#include "kernels/backend.h"
#include "models/model.h"
#include "runtime/ckpt.h"
#include "runtime/sample.h"

// ---------------------------------------------------------------------------------------------
// tessera sample

static void sample_usage(FILE *out) {
    fprintf(out,
            "usage: tessera sample --model FILE [options]\n"
            "  --model FILE        weights written by `tessera train` (RUN_DIR/model.h5)\n"
            "  --prompt TEXT       text to continue (byte-level models; default: a newline)\n"
            "  --prompt-ids LIST   comma-separated token ids to continue (any tokenizer)\n"
            "  --length N          tokens to generate (default 256)\n"
            "  --temperature F     softmax temperature > 0 (default 0.8)\n"
            "  --top-k K           sample among the K most likely tokens, 0 = all (default 40)\n"
            "  --seed S            random seed (default 1)\n"
            "  --tokenizer SPEC    \"byte\" (default when the vocabulary is 256) or an llm.c\n"
            "                      tokenizer file; without one, GPT-2 tokens print as <id>\n");
}

static int parse_num(const char *flag, const char *s, double lo, double hi, int integer,
                     double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi) ||
        (integer && v != (double)(long long)v)) {
        log_error("sample: %s: expected %s in [%g, %g], got \"%s\"", flag,
                  integer ? "an integer" : "a number", lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

int cmd_sample(int argc, char **argv) {
    log_init(0, 1);
    const char *model_path = NULL, *prompt = NULL, *prompt_ids = NULL, *tok_spec = NULL;
    double length = 256, temperature = 0.8, top_k = 40, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            sample_usage(stdout);
            return TS_EXIT_OK;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            log_error("sample: %s: expected an option with a value (see tessera sample --help)", a);
            return TS_EXIT_INPUT;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (strcmp(a, "--model") == 0)
            model_path = v;
        else if (strcmp(a, "--prompt") == 0)
            prompt = v;
        else if (strcmp(a, "--prompt-ids") == 0)
            prompt_ids = v;
        else if (strcmp(a, "--tokenizer") == 0)
            tok_spec = v;
        else if (strcmp(a, "--length") == 0)
            ok = parse_num(a, v, 1, 1e6, 1, &length);
        else if (strcmp(a, "--temperature") == 0)
            ok = parse_num(a, v, 1e-3, 100, 0, &temperature);
        else if (strcmp(a, "--top-k") == 0)
            ok = parse_num(a, v, 0, 1e7, 1, &top_k);
        else if (strcmp(a, "--seed") == 0)
            ok = parse_num(a, v, 0, 9007199254740991.0, 1, &seed);
        else {
            log_error("sample: unknown option %s (see tessera sample --help)", a);
            return TS_EXIT_INPUT;
        }
        if (!ok) return TS_EXIT_INPUT;
    }
    if (!model_path) {
        log_error("sample: --model FILE is required (the model.h5 of a run directory)");
        return TS_EXIT_INPUT;
    }
    if (prompt && prompt_ids) {
        log_error("sample: give --prompt or --prompt-ids, not both");
        return TS_EXIT_INPUT;
    }
    model_shape shape;
    ts_status st = ckpt_read_shape(model_path, &shape, NULL);
    if (st != TS_OK) return ts_exit_code(st);
    int vocab = model_shape_get(&shape, "vocab");
    if (!tok_spec) tok_spec = vocab == 256 ? "byte" : "";
    tokenizer tok;
    st = tokenizer_load(&tok, tok_spec, vocab);
    if (st != TS_OK) return ts_exit_code(st);

    int n_prompt = 0;
    if (!prompt && !prompt_ids && tok.byte_level) prompt = "\n";
    const char *text = prompt_ids ? prompt_ids : prompt ? prompt : "";
    int *ids = ts_malloc((strlen(text) + 1) * sizeof(int), "prompt");
    if (prompt_ids) {
        for (const char *p = prompt_ids;;) {
            char *end;
            long id = strtol(p, &end, 10);
            if (end == p || id < 0 || id >= vocab || (*end && (*end != ',' || !end[1]))) {
                log_error("sample: --prompt-ids: expected comma-separated token ids in [0, %d), "
                          "got \"%s\"",
                          vocab, prompt_ids);
                return TS_EXIT_INPUT;
            }
            ids[n_prompt++] = (int)id;
            if (!*end) break;
            p = end + 1;
        }
    } else if (prompt && tok.byte_level) {
        for (const char *p = prompt; *p; p++)
            ids[n_prompt++] = (unsigned char)*p;
    } else if (prompt) {
        log_error("sample: --prompt needs the byte-level tokenizer; for GPT-2 tokens use "
                  "--prompt-ids");
        return TS_EXIT_INPUT;
    }
    if (n_prompt == 0) ids[n_prompt++] = tok.eot >= 0 ? tok.eot : 0;

    model m;
    st = model_create(&m, &shape, backend_cpu(), 1);
    if (st == TS_OK) st = ckpt_read_weights(model_path, &m);
    if (st == TS_OK) {
        sample_options opt = {(int)length, (float)temperature, (int)top_k, (uint64_t)seed};
        st = sample_generate(&m, &tok, ids, n_prompt, &opt, stdout);
    }
    model_destroy(&m);
    tokenizer_free(&tok);
    free(ids);
    return ts_exit_code(st);
}
