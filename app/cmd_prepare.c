// cmd_prepare.c — `tessera prepare`: the command line of runtime/prepare.c.
//
// tessera prepare [--out DIR] [--val-fraction F] [--shard-tokens N] [--min-bytes N] [INPUT...]
// Exit code: 0 done or up to date, 2 bad command line or input, 1 I/O error.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/commands.h"
#include "base/common.h"
#include "runtime/prepare.h"

// ---------------------------------------------------------------------------------------------
// command line

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return 0;
    *out = v;
    return 1;
}

int cmd_prepare(int argc, char **argv) {
    prepare_options o = {"data/fortunes", 0.05, 1000000, 1000000};
    const char **inputs = ts_malloc((size_t)(argc + 1) * sizeof *inputs, "inputs");
    int n_inputs = 0, only_inputs = 0, rc = TS_EXIT_INPUT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_inputs || a[0] != '-' || !a[1]) {
            inputs[n_inputs++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_inputs = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf(
                PREPARE_USAGE
                "\n\n"
                "Byte-tokenizes text into DIR/train_NNN.bin, DIR/val_000.bin and DIR/stats.txt.\n"
                "INPUT: text files, directories (their regular files) or globs; default: the\n"
                "fortunes in " FORTUNES_DIR " (Debian package `fortunes`).\n"
                "  --out DIR          output directory (default data/fortunes)\n"
                "  --val-fraction F   documents held out for validation, 0 <= F < 1 "
                "(default 0.05)\n"
                "  --shard-tokens N   tokens per shard (default 1000000)\n"
                "  --min-bytes N      refuse a smaller corpus (default 1000000)\n");
            rc = TS_EXIT_OK;
            goto done;
        }
        // --key VALUE or --key=VALUE
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        const char *keys[] = {"--out", "--val-fraction", "--shard-tokens", "--min-bytes"};
        int k = -1;
        for (int j = 0; j < 4; j++)
            if (strlen(keys[j]) == klen && !strncmp(a, keys[j], klen)) k = j;
        if (k < 0) {
            log_error("prepare: unknown option '%s'; " PREPARE_USAGE, a);
            goto done;
        }
        if (!v) {
            log_error("prepare: option %s expects a value; " PREPARE_USAGE, keys[k]);
            goto done;
        }
        if (!eq) i++;
        uint64_t u;
        char *end;
        switch (k) {
        case 0:
            if (!*v) {
                log_error("prepare: --out expects a directory, got an empty string");
                goto done;
            }
            o.out_dir = v;
            break;
        case 1:
            o.val_fraction = strtod(v, &end);
            if (end == v || *end || !(o.val_fraction >= 0 && o.val_fraction < 1)) {
                log_error("prepare: --val-fraction '%s', expected a number in [0, 1)", v);
                goto done;
            }
            break;
        case 2:
            if (!parse_u64(v, &u) || u < 2 || u > INT32_MAX) {
                log_error("prepare: --shard-tokens '%s', expected an integer in [2, %d]", v,
                          INT32_MAX);
                goto done;
            }
            o.shard_tokens = (size_t)u;
            break;
        case 3:
            if (!parse_u64(v, &u)) {
                log_error("prepare: --min-bytes '%s', expected an integer >= 0", v);
                goto done;
            }
            o.min_bytes = u;
            break;
        }
    }
    if (n_inputs == 0) {
        struct stat st;
        if (stat(FORTUNES_DIR, &st) != 0 || !S_ISDIR(st.st_mode)) {
            log_error("%s: not found; expected the default corpus there (hint: apt-get install "
                      "fortunes) or INPUT files on the command line",
                      FORTUNES_DIR);
            goto done;
        }
        inputs[n_inputs++] = FORTUNES_DIR;
        log_info("no INPUT given: using the fortunes in %s", FORTUNES_DIR);
    }
    rc = ts_exit_code(prepare_run(inputs, n_inputs, &o));
done:
    free(inputs);
    return rc;
}
