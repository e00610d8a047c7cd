// sample.c — text generation from a trained model: tokenizers and top-k sampling.
#include "runtime/sample.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "runtime/ckpt.h"

#define TOKENIZER_MAGIC 20240328

// ---------------------------------------------------------------------------------------------
// tokenizers

// The file: uint32 header[256] (magic, version, token count, end-of-text id in version 2), then
// per token a length byte (1..255) and that many bytes. Every field is bounded before it is used:
// the count by what the file's size can hold (so a damaged count cannot ask for gigabytes), the
// end-of-text id by the model's vocabulary (it is fed to the model as a prompt).
ts_status tokenizer_load(tokenizer *tok, const char *spec, int vocab) {
    memset(tok, 0, sizeof *tok);
    tok->eot = -1;
    if (strcmp(spec, "byte") == 0) {
        if (vocab != 256) {
            log_error("tokenizer \"byte\" needs a vocabulary of 256, the model's is %d (give an "
                      "llm.c tokenizer file instead)",
                      vocab);
            return TS_ERR_INPUT;
        }
        tok->byte_level = 1;
        return TS_OK;
    }
    if (spec[0] == '\0') return TS_OK;
    int fd = fs_open_regular_fd(spec);
    if (fd < 0) {
        if (fd == FS_NOT_REGULAR)
            log_error("%s: tokenizer file is not a regular file (a FIFO, device, directory or "
                      "socket); expected an llm.c tokenizer file ([data] tokenizer)",
                      spec);
        else
            log_error("%s: cannot open tokenizer file: %s ([data] tokenizer; log.sample_tokens = "
                      "0 needs none)",
                      spec, strerror(errno));
        return TS_ERR_INPUT;
    }
    struct stat sb;
    FILE *f = fstat(fd, &sb) == 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        log_error("%s: cannot read tokenizer file: %s", spec, strerror(errno));
        close(fd);
        return TS_ERR_INPUT;
    }
    uint32_t header[256];
    if (fread(header, sizeof(uint32_t), 256, f) != 256) {
        log_error("%s: tokenizer file shorter than its 1024-byte header", spec);
        fclose(f);
        return TS_ERR_INPUT;
    }
    if (header[0] != TOKENIZER_MAGIC || (header[1] != 1 && header[1] != 2)) {
        log_error("%s: offset 0: expected tokenizer magic %d version 1 or 2, got %u version %u",
                  spec, TOKENIZER_MAGIC, header[0], header[1]);
        fclose(f);
        return TS_ERR_INPUT;
    }
    // each token takes at least 2 bytes (its length byte and one byte)
    uint64_t size = (uint64_t)sb.st_size;
    uint64_t room = size > sizeof header ? (size - sizeof header) / 2 : 0;
    if (header[2] < (uint32_t)vocab || header[2] > room) {
        log_error("%s: offset 8: token count %u, expected at least the model's vocabulary %d and "
                  "at most the %llu tokens the file's %lld bytes can hold",
                  spec, header[2], vocab, (unsigned long long)room, (long long)sb.st_size);
        fclose(f);
        return TS_ERR_INPUT;
    }
    if (header[1] == 2 && header[3] >= (uint32_t)vocab) {
        log_error("%s: offset 12: end-of-text token %u, expected a token of the model's "
                  "vocabulary (< %d)",
                  spec, header[3], vocab);
        fclose(f);
        return TS_ERR_INPUT;
    }
    tok->n = (int)header[2];
    tok->eot = header[1] == 2 ? (int)header[3] : -1;
    tok->piece = ts_calloc((size_t)tok->n, sizeof(char *), "tokenizer");
    tok->piece_len = ts_calloc((size_t)tok->n, sizeof(int), "tokenizer");
    for (int i = 0; i < tok->n; i++) {
        unsigned char len;
        long off = ftell(f);
        if (fread(&len, 1, 1, f) != 1 || len == 0) {
            log_error("%s: offset %ld: token %d: expected a length byte in [1,255]", spec, off, i);
            fclose(f);
            tokenizer_free(tok);
            return TS_ERR_INPUT;
        }
        tok->piece[i] = ts_malloc(len, "tokenizer piece");
        tok->piece_len[i] = len;
        if (fread(tok->piece[i], 1, len, f) != len) {
            log_error("%s: offset %ld: token %d: file ends inside its %d bytes", spec, off, i, len);
            fclose(f);
            tokenizer_free(tok);
            return TS_ERR_INPUT;
        }
    }
    fclose(f);
    return TS_OK;
}

void tokenizer_free(tokenizer *tok) {
    for (int i = 0; tok->piece && i < tok->n; i++)
        free(tok->piece[i]);
    free(tok->piece);
    free(tok->piece_len);
    memset(tok, 0, sizeof *tok);
}

void tokenizer_write(const tokenizer *tok, int token, FILE *out) {
    if (tok->byte_level && token >= 0 && token < 256) {
        fputc(token, out);
    } else if (tok->n > 0 && token >= 0 && token < tok->n) {
        fwrite(tok->piece[token], 1, (size_t)tok->piece_len[token], out);
    } else {
        fprintf(out, "<%d>", token);
    }
}

// ---------------------------------------------------------------------------------------------
// sampling

static uint64_t rng_next(uint64_t *s) { // xorshift64*
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static float rng_uniform(uint64_t *s) { return (float)(rng_next(s) >> 40) * 0x1.0p-24f; }

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

// pick a token from logits (V of them) with temperature and top-k
static int sample_token(const float *logits, int V, float temperature, int top_k, float *scratch,
                        uint64_t *rng) {
    float threshold = -INFINITY;
    if (top_k > 0 && top_k < V) {
        memcpy(scratch, logits, (size_t)V * sizeof(float));
        qsort(scratch, (size_t)V, sizeof(float), cmp_desc);
        threshold = scratch[top_k - 1];
    }
    float maxv = -INFINITY;
    for (int i = 0; i < V; i++)
        maxv = logits[i] > maxv ? logits[i] : maxv;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        scratch[i] = logits[i] >= threshold ? expf((logits[i] - maxv) / temperature) : 0.0f;
        sum += scratch[i];
    }
    double r = rng_uniform(rng) * sum, acc = 0;
    for (int i = 0; i < V; i++) {
        acc += scratch[i];
        if (r < acc) return i;
    }
    for (int i = V - 1; i >= 0; i--)
        if (scratch[i] > 0) return i;
    return 0;
}

ts_status sample_generate(model *m, const tokenizer *tok, const int *prompt, int n_prompt,
                          const sample_options *opt, FILE *out) {
    int maxT = m->seq_len, V = m->vocab, Vp = m->logits_stride;
    int total = n_prompt + opt->length;
    int *seq = ts_malloc((size_t)(total > 0 ? total : 1) * sizeof(int), "sample tokens");
    float *row = ts_malloc((size_t)Vp * sizeof(float), "logits row");
    float *scratch = ts_malloc((size_t)Vp * sizeof(float), "sampling scratch");
    memcpy(seq, prompt, (size_t)n_prompt * sizeof(int));
    for (int i = 0; i < n_prompt; i++)
        tokenizer_write(tok, prompt[i], out);
    uint64_t rng = opt->seed ? opt->seed : 0x853c49e6748fea9bull;
    for (int n = n_prompt; n < total; n++) {
        // the model sees at most maxT tokens: slide the window over the sequence
        int start = n > maxT ? n - maxT : 0, T = n - start;
        model_forward(m, seq + start, NULL, 1, T, 0);
        const char *logits =
            (const char *)model_logits(m) + (size_t)(T - 1) * Vp * ts_dtype_size(m->be->act_dtype);
        m->be->act_to_host(m->be, row, logits, (size_t)Vp);
        seq[n] = sample_token(row, V, opt->temperature, opt->top_k, scratch, &rng);
        if (seq[n] == tok->eot) break;
        tokenizer_write(tok, seq[n], out);
        fflush(out);
    }
    fputc('\n', out);
    free(seq);
    free(row);
    free(scratch);
    return TS_OK;
}
