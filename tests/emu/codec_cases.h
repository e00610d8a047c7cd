// codec_cases.h — the cases on which the gradient codecs' device kernels
// (kernels/cuda/codec_kernels.cuh) are compared with the host codecs (collectives/codec_*.c), and
// the comparison, bit for bit. Shared by the emulated test (tests/emu/test_codec_emu.cc: the
// kernels on CPU threads) and the GPU test (tests/gpu/test_cuda_codec.c: the kernels on the
// device), which differ only in the codec_device they pass: functions over host buffers that run
// the kernels on whatever copies they need.
//
// Every case runs two encode steps from a nonzero residual (the second from the residual the
// first left, on both sides), then decodes the payloads into a gradient (block quantization).
// Checked: the payload byte for byte (topk: the indices from the host payload's varints or zstd
// frame, and the values), the residual bit for bit, and that nothing is written past the
// payload or the values. A NaN sum or fp32 top-k value is compared by its bits too when the
// device computes as the host (the emulator); a GPU returns its canonical NaN for arithmetic on a
// NaN, so there any NaN matches any NaN (nan_bits 0). Scales and residuals are never such NaNs:
// their bits are compared always.
//
// Inputs, per block of 64 values, of one kind or (CODEC_KIND_MIXED) a kind drawn per block:
//   random   uniform in (-1, 1) scaled by 2^e, e in [-30, 10] per block; residual 2^-4 of that
//   special  random with NaN, +Inf, -Inf in the gradient and NaN in the residual here and there,
//            and a block of values near FLT_MAX whose sum with the residual overflows to Inf
//   zeros    zeros of either sign, a few blocks with one nonzero value
//   ties     block quantization: one value at +-qmax 2^e (so scale = 2^e exactly) and the rest at
//            (j + 1/2) 2^e, halves that round away from zero; top-k: magnitudes 1, 2 or 3 times
//            2^e with either sign, so the cut falls among equal keys; residual 0
//   tiny     subnormals (scales that underflow to 0 or are subnormal themselves)
#ifndef TESSERA_TEST_CODEC_CASES_H
#define TESSERA_TEST_CODEC_CASES_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#ifdef __cplusplus
extern "C" {
#endif
#include "base/rng.h"
#include "collectives/codec.h"
#ifdef __cplusplus
}
#endif

#define CODEC_CASES_GUARD 64 // bytes after a payload or the values that must stay untouched

typedef struct {
    // x = grad + res quantized to `bits` into payload (codec_blockq_payload_bytes); res becomes
    // the residual
    void (*blockq_encode)(void *ctx, int bits, const float *grad, float *res, size_t n,
                          unsigned char *payload);
    // grad += the payload's n values
    void (*blockq_decode_add)(void *ctx, int bits, const unsigned char *payload, size_t n,
                              float *grad);
    // x = grad + res; idx[0 .. k) the chosen indices, values their x (bits 32) or int2's payload
    // of them (bits 2); res becomes the residual
    void (*topk_encode)(void *ctx, const float *grad, float *res, size_t n, size_t k, int bits,
                        uint32_t *idx, void *values);
    void *ctx;
    int nan_bits; // 1: NaN sums compared by their bits too
} codec_device;

typedef enum {
    CODEC_KIND_RANDOM = 0,
    CODEC_KIND_SPECIAL,
    CODEC_KIND_ZEROS,
    CODEC_KIND_TIES,
    CODEC_KIND_TINY,
    CODEC_KIND_MIXED,
} codec_kind;

static const char *const codec_kind_names[] = {"random", "special", "zeros",
                                               "ties",   "tiny",    "mixed"};

static int codec_cases_failures, codec_cases_checks;

static double codec_cases_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *codec_cases_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "codec cases: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static float codec_cases_u(uint64_t *rng) { return (float)(2.0 * rng_uniform01(rng) - 1.0); }

// one block [lo, hi) of grad and res of the given kind; qmax: the block quantization's (ties)
static void codec_cases_block(codec_kind kind, int qmax, int topk, float *grad, float *res,
                              size_t lo, size_t hi, uint64_t *rng) {
    const float e = ldexpf(1.0f, (int)(rng_next(rng) % 41) - 30);
    for (size_t i = lo; i < hi; i++) {
        grad[i] = codec_cases_u(rng) * e;
        res[i] = codec_cases_u(rng) * e * 0.0625f;
    }
    switch (kind) {
    case CODEC_KIND_SPECIAL: {
        static const float special[3] = {NAN, INFINITY, -INFINITY};
        const uint64_t r = rng_next(rng) % 8;
        if (r == 0)
            for (size_t i = lo; i < hi; i++) { // sums that overflow
                grad[i] = FLT_MAX * (0.75f + 0.25f * codec_cases_u(rng));
                res[i] = grad[i];
            }
        else if (r < 5)
            grad[lo + rng_next(rng) % (hi - lo)] = special[rng_next(rng) % 3];
        else if (r == 5)
            res[lo + rng_next(rng) % (hi - lo)] = NAN;
        break;
    }
    case CODEC_KIND_ZEROS:
        for (size_t i = lo; i < hi; i++) {
            grad[i] = rng_next(rng) % 2 ? -0.0f : 0.0f;
            res[i] = rng_next(rng) % 2 ? -0.0f : 0.0f;
        }
        if (rng_next(rng) % 4 == 0) grad[lo + rng_next(rng) % (hi - lo)] = codec_cases_u(rng);
        break;
    case CODEC_KIND_TIES:
        for (size_t i = lo; i < hi; i++) {
            const float sign = rng_next(rng) % 2 ? -1.0f : 1.0f;
            if (topk)
                grad[i] = sign * (float)(1 + rng_next(rng) % 3) * e;
            else
                grad[i] = ((float)(rng_next(rng) % (uint64_t)(2 * qmax)) - (float)qmax + 0.5f) * e;
            res[i] = 0.0f;
        }
        if (!topk) grad[lo + rng_next(rng) % (hi - lo)] = (rng_next(rng) % 2 ? -1 : 1) * qmax * e;
        break;
    case CODEC_KIND_TINY:
        for (size_t i = lo; i < hi; i++) {
            grad[i] = codec_cases_u(rng) * 0x1p-128f;
            res[i] = (float)(int)(rng_next(rng) % 7) * 0x1p-149f;
        }
        break;
    default: break;
    }
}

static void codec_cases_fill(codec_kind kind, int qmax, int topk, float *grad, float *res, size_t n,
                             uint64_t *rng) {
    for (size_t lo = 0; lo < n; lo += 64) {
        const size_t hi = n - lo < 64 ? n : lo + 64;
        const codec_kind k = kind == CODEC_KIND_MIXED ? (codec_kind)(rng_next(rng) % 5) : kind;
        codec_cases_block(k, qmax, topk, grad, res, lo, hi, rng);
    }
}

// ---------------------------------------------------------------------------------------------
// comparisons

static uint32_t codec_cases_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

// the first i where a and b differ (bits; NaN against NaN by bits only when nan_bits), or n
static size_t codec_cases_first_diff(const float *a, const float *b, size_t n, int nan_bits) {
    for (size_t i = 0; i < n; i++) {
        if (codec_cases_bits(a[i]) == codec_cases_bits(b[i])) continue;
        if (!nan_bits && isnan(a[i]) && isnan(b[i])) continue;
        return i;
    }
    return n;
}

static void codec_cases_check(const char *label, const char *what, int ok, const char *detail) {
    codec_cases_checks++;
    if (ok) return;
    codec_cases_failures++;
    printf("FAIL %s: %s %s\n", label, what, detail);
}

static void codec_cases_check_floats(const char *label, const char *what, const float *dev,
                                     const float *host, size_t n, int nan_bits) {
    const size_t i = codec_cases_first_diff(dev, host, n, nan_bits);
    char detail[128] = "";
    if (i < n)
        snprintf(detail, sizeof detail,
                 "differ first at %zu of %zu: device %a (%08x), host %a (%08x)", i, n,
                 (double)dev[i], codec_cases_bits(dev[i]), (double)host[i],
                 codec_cases_bits(host[i]));
    codec_cases_check(label, what, i == n, detail);
}

static void codec_cases_check_bytes(const char *label, const char *what, const unsigned char *dev,
                                    const unsigned char *host, size_t n) {
    size_t i = 0;
    while (i < n && dev[i] == host[i])
        i++;
    char detail[128] = "";
    if (i < n)
        snprintf(detail, sizeof detail, "differ first at byte %zu of %zu: device %02x, host %02x",
                 i, n, dev[i], host[i]);
    codec_cases_check(label, what, i == n, detail);
}

static void codec_cases_check_guard(const char *label, const unsigned char *guard) {
    int ok = 1;
    for (int i = 0; i < CODEC_CASES_GUARD; i++)
        ok &= guard[i] == 0xa5;
    codec_cases_check(label, "bytes after the output", ok, "were written");
}

static void codec_cases_fail_host(const char *label, const char *what) {
    codec_cases_check(label, what, 0, "(host codec)");
}

// ---------------------------------------------------------------------------------------------
// block quantization: two steps and the decode

static void codec_cases_blockq(const codec_device *dev, int bits, size_t n, codec_kind kind,
                               uint64_t seed) {
    char name[16], label[96];
    snprintf(name, sizeof name, "int%d", bits);
    snprintf(label, sizeof label, "%s n=%zu %s", name, n, codec_kind_names[kind]);
    const int qmax = (1 << (bits - 1)) - 1;
    uint64_t rng = seed;
    codec *cx = NULL;
    if (codec_create_with(&cx, codec_find(name), 0, 1, n) != TS_OK) {
        codec_cases_fail_host(label, "codec_create_with");
        return;
    }
    const size_t bytes = codec_blockq_payload_bytes(bits, n);
    float *grad = (float *)codec_cases_alloc(n * 4), *res = (float *)codec_cases_alloc(n * 4);
    float *unused = (float *)codec_cases_alloc(n * 4); // step 2 keeps the residual step 1 left
    unsigned char *hp[2] = {NULL, NULL}, *dp[2] = {NULL, NULL};
    int host_ok = 1;
    for (int step = 0; step < 2; step++) {
        char what[32];
        codec_cases_fill(kind, qmax, 0, grad, step == 0 ? res : unused, n, &rng);
        if (step == 0) memcpy(cx->state, res, n * 4); // the host's residual; res the device's
        hp[step] = (unsigned char *)codec_cases_alloc(bytes);
        dp[step] = (unsigned char *)codec_cases_alloc(bytes + CODEC_CASES_GUARD);
        memset(dp[step], step ? 0x5a : 0xcd, bytes); // every byte must be written
        memset(dp[step] + bytes, 0xa5, CODEC_CASES_GUARD);
        size_t got = 0;
        if (cx->ops->encode(cx, 0, grad, n, hp[step], &got) != TS_OK || got != bytes) {
            codec_cases_fail_host(label, "encode");
            host_ok = 0;
            break;
        }
        dev->blockq_encode(dev->ctx, bits, grad, res, n, dp[step]);
        snprintf(what, sizeof what, "payload (step %d)", step + 1);
        codec_cases_check_bytes(label, what, dp[step], hp[step], bytes);
        snprintf(what, sizeof what, "residual (step %d)", step + 1);
        codec_cases_check_floats(label, what, res, (const float *)cx->state, n, 1);
        codec_cases_check_guard(label, dp[step] + bytes);
    }
    // decode both payloads into the same gradient, in order
    float *gh = (float *)codec_cases_alloc(n * 4), *gd = (float *)codec_cases_alloc(n * 4);
    codec_cases_fill(CODEC_KIND_RANDOM, qmax, 0, gh, gd, n, &rng);
    memcpy(gd, gh, n * 4);
    for (int step = 0; step < 2 && host_ok; step++) {
        if (cx->ops->decode(cx, 0, hp[step], bytes, gh, n) != TS_OK) {
            codec_cases_fail_host(label, "decode");
            break;
        }
        dev->blockq_decode_add(dev->ctx, bits, hp[step], n, gd);
    }
    codec_cases_check_floats(label, "decoded sum", gd, gh, n, dev->nan_bits);
    for (int step = 0; step < 2; step++)
        free(hp[step]), free(dp[step]);
    free(grad), free(res), free(unused), free(gh), free(gd);
    codec_destroy(cx);
}

// ---------------------------------------------------------------------------------------------
// top-k

// the indices and the values of a host top-k payload: *k, idx (malloc, k), *values (into p)
static int codec_cases_topk_parse(const unsigned char *p, size_t bytes, size_t *k, uint32_t **idx,
                                  const unsigned char **values) {
    if (bytes < CODEC_TOPK_HEADER) return 0;
    const size_t kk = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    const size_t len = (size_t)p[5] | (size_t)p[6] << 8 | (size_t)p[7] << 16 | (size_t)p[8] << 24;
    const unsigned char *s = p + CODEC_TOPK_HEADER;
    unsigned char *raw = NULL;
    size_t slen = len;
    if (p[4] & 1) { // zstd
        const unsigned long long size = ZSTD_getFrameContentSize(s, len);
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN) return 0;
        raw = (unsigned char *)codec_cases_alloc((size_t)size);
        if (ZSTD_decompress(raw, (size_t)size, s, len) != size) {
            free(raw);
            return 0;
        }
        s = raw;
        slen = (size_t)size;
    }
    uint32_t *out = (uint32_t *)codec_cases_alloc(kk * 4);
    size_t at = 0;
    uint64_t index = 0;
    for (size_t j = 0; j < kk; j++) {
        uint64_t d = 0;
        int shift = 0;
        while (at < slen && (s[at] & 0x80u)) {
            d |= (uint64_t)(s[at++] & 0x7fu) << shift;
            shift += 7;
        }
        if (at >= slen) {
            free(raw), free(out);
            return 0;
        }
        d |= (uint64_t)s[at++] << shift;
        index += d;
        out[j] = (uint32_t)index;
    }
    free(raw);
    *k = kk;
    *idx = out;
    *values = p + CODEC_TOPK_HEADER + len;
    return at == slen;
}

static void codec_cases_topk(const codec_device *dev, size_t n, double fraction, int bits,
                             codec_kind kind, uint64_t seed) {
    char label[96];
    snprintf(label, sizeof label, "topk n=%zu f=%g %s %s", n, fraction, bits == 2 ? "int2" : "fp32",
             codec_kind_names[kind]);
    uint64_t rng = seed;
    codec_params p;
    codec_params_default(&p);
    p.topk_fraction = fraction;
    p.topk_value_bits = bits;
    codec *cx = NULL;
    if (codec_create_with_params(&cx, codec_find("topk"), 0, 1, n, &p) != TS_OK) {
        codec_cases_fail_host(label, "codec_create_with_params");
        return;
    }
    const size_t k = codec_topk_k(fraction, n);
    const size_t vbytes = bits == 2 ? codec_blockq_payload_bytes(2, k) : 4 * k;
    float *grad = (float *)codec_cases_alloc(n * 4), *res = (float *)codec_cases_alloc(n * 4);
    unsigned char *hp = (unsigned char *)codec_cases_alloc(cx->ops->payload_bytes(cx, n));
    unsigned char *dv = (unsigned char *)codec_cases_alloc(vbytes + CODEC_CASES_GUARD);
    uint32_t *di = (uint32_t *)codec_cases_alloc(k * 4 + CODEC_CASES_GUARD);
    float *unused = (float *)codec_cases_alloc(n * 4);
    for (int step = 0; step < 2; step++) {
        char what[48];
        codec_cases_fill(kind, 1, 1, grad, step == 0 ? res : unused, n, &rng);
        if (step == 0) memcpy(cx->state, res, n * 4);
        size_t bytes = 0, hk = 0;
        uint32_t *hi = NULL;
        const unsigned char *hv = NULL;
        if (cx->ops->encode(cx, 0, grad, n, hp, &bytes) != TS_OK ||
            !codec_cases_topk_parse(hp, bytes, &hk, &hi, &hv) || hk != k) {
            codec_cases_fail_host(label, "encode");
            free(hi);
            break;
        }
        memset(dv, step ? 0x5a : 0xcd, vbytes);
        memset(dv + vbytes, 0xa5, CODEC_CASES_GUARD);
        memset(di, 0xcd, k * 4);
        memset((unsigned char *)di + k * 4, 0xa5, CODEC_CASES_GUARD);
        dev->topk_encode(dev->ctx, grad, res, n, k, bits, di, dv);
        snprintf(what, sizeof what, "indices (step %d, k %zu)", step + 1, k);
        codec_cases_check_bytes(label, what, (const unsigned char *)di, (const unsigned char *)hi,
                                k * 4);
        snprintf(what, sizeof what, "values (step %d)", step + 1);
        if (bits == 2) {
            codec_cases_check_bytes(label, what, dv, hv, vbytes);
        } else {
            float *hf = (float *)codec_cases_alloc(vbytes);
            memcpy(hf, hv, vbytes); // little-endian fp32, possibly unaligned in the payload
            codec_cases_check_floats(label, what, (const float *)dv, hf, k, dev->nan_bits);
            free(hf);
        }
        snprintf(what, sizeof what, "residual (step %d)", step + 1);
        codec_cases_check_floats(label, what, res, (const float *)cx->state, n, 1);
        codec_cases_check_guard(label, dv + vbytes);
        codec_cases_check_guard(label, (const unsigned char *)di + k * 4);
        free(hi);
    }
    free(grad), free(res), free(unused), free(hp), free(dv), free(di);
    codec_destroy(cx);
}

// ---------------------------------------------------------------------------------------------
// the cases

// All of them; big: also the sizes in the hundred thousands. Returns the number of failed checks
// (each printed with "FAIL").
static int codec_cases_run(const codec_device *dev, int big) {
    static const size_t sizes[] = {1, 2, 31, 63, 64, 65, 127, 129, 1000, 4099};
    static const double fractions[] = {1e-9, 0.01, 0.3, 1.0};
    const int nsizes = (int)(sizeof sizes / sizeof sizes[0]);
    uint64_t seed = 0xc0dec5eedull;
    double t = codec_cases_now();
    for (int bits = 8; bits >= 2; bits /= 2) {
        for (int s = 0; s < nsizes; s++)
            for (int kind = 0; kind < CODEC_KIND_MIXED; kind++)
                codec_cases_blockq(dev, bits, sizes[s], (codec_kind)kind, seed++);
        printf("int%d: %d checks so far, %d failed (%.1f s)\n", bits, codec_cases_checks,
               codec_cases_failures, codec_cases_now() - t);
        t = codec_cases_now();
        if (big) {
            codec_cases_blockq(dev, bits, 100003, CODEC_KIND_MIXED, seed++);
            printf("int%d n=100003: %d checks so far, %d failed (%.1f s)\n", bits,
                   codec_cases_checks, codec_cases_failures, codec_cases_now() - t);
            t = codec_cases_now();
        }
        fflush(stdout);
    }
    // top-k: every size and kind, with the fraction and the value bits going round
    int turn = 0;
    for (int s = 0; s < nsizes; s++)
        for (int kind = 0; kind < CODEC_KIND_MIXED; kind++, turn++)
            codec_cases_topk(dev, sizes[s], fractions[turn % 4], turn % 3 ? 32 : 2,
                             (codec_kind)kind, seed++);
    // the cut inside a run of equal keys, and among zeros: ties to the lower index
    codec_cases_topk(dev, 4099, 0.2, 32, CODEC_KIND_TIES, seed++);
    codec_cases_topk(dev, 4099, 0.2, 2, CODEC_KIND_TIES, seed++);
    codec_cases_topk(dev, 1000, 0.5, 32, CODEC_KIND_ZEROS, seed++);
    printf("topk: %d checks so far, %d failed (%.1f s)\n", codec_cases_checks, codec_cases_failures,
           codec_cases_now() - t);
    t = codec_cases_now();
    if (big) {
        codec_cases_topk(dev, 100003, 0.01, 32, CODEC_KIND_MIXED, seed++);
        codec_cases_topk(dev, 100003, 0.1, 2, CODEC_KIND_MIXED, seed++);
        printf("topk n=100003: %d checks so far, %d failed (%.1f s)\n", codec_cases_checks,
               codec_cases_failures, codec_cases_now() - t);
    }
    printf("all: %d checks, %d failed\n", codec_cases_checks, codec_cases_failures);
    return codec_cases_failures;
}

#endif
