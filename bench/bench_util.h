// bench_util.h — what the GPU benchmark programs share: integer options and medians.
#ifndef TESSERA_BENCH_UTIL_H
#define TESSERA_BENCH_UTIL_H

#include <stdlib.h>
#include <string.h>

#include "base/common.h"

// *out = the integer s, given for option `flag`, when it is one in [lo, 2^24]; else one error
// line naming the flag and the value, and -1
static inline int bench_parse_int(const char *flag, const char *s, int lo, int *out) {
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || *end || v < lo || v > 1 << 24) {
        log_error("%s: expected an integer >= %d, got '%s'", flag, lo, s ? s : "");
        return -1;
    }
    *out = (int)v;
    return 0;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// the median of x[0..n-1] (n >= 1); x is left as it was
static inline double bench_median(const double *x, int n) {
    double *s = malloc((size_t)n * sizeof(double));
    memcpy(s, x, (size_t)n * sizeof(double));
    qsort(s, (size_t)n, sizeof(double), bench_cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

#endif
