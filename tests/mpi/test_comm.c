// test_comm.c — communicator tests, run as real processes (with or without mpirun).
//
//   test_comm collectives BACKEND SIZE  every collective against exact expectations, for lengths
//                                       on both sides of the small-message threshold, with the
//                                       bytes each rank moved checked against the algorithm's
//                                       formula; checks that comm_init picked BACKEND with SIZE
//                                       ranks. Exits 0 when every check passes on this rank.
//   test_comm deadline DIR [WHICH]      3 ranks, 2 s deadline: rank 2 stops itself (SIGSTOP,
//                                       pid in DIR/rank-2.pid); ranks 0 and 1 must give up on
//                                       their collective (WHICH: sum, the default, an all-reduce;
//                                       combine, an all-reduce with a combine; gather-v, an
//                                       all-gather of variable blocks) with TS_ERR_PEER after
//                                       the deadline (not much later), leave DIR/rank-R.status,
//                                       refuse the next collective at once, and exit 75.
//   test_comm init-watchdog DIR         MPI_Init_thread under a 1 ms watchdog: the watchdog
//                                       must end the process with 75 and a status file.
//   test_comm finalize-watchdog DIR     2 ranks: rank 1 stops itself; rank 0's MPI_Finalize,
//                                       which waits for it, must be ended by the watchdog
//                                       after timeout_s (1 s) with 75 and a status file.
//   test_comm init                      comm_init and finalize only; exits with the status's
//                                       exit code (for the TESSERA_COMM error test).
#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/rng.h"
#include "collectives/comm.h"
#include "tests/mpi/comm_values.h"
#include "tests/unit/expect.h"

#define SMALL_BYTES 65536 // the documented switch from latency to bandwidth algorithms

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int mod(long a, int p) { return (int)(((a % p) + p) % p); }

static size_t chunk_count(size_t n, int p, int r) {
    size_t first, count;
    comm_chunk(n, p, mod(r, p), &first, &count);
    return count;
}

// ---------------------------------------------------------------------------------------------
// bytes each rank must move, from the algorithms' definitions (collectives/comm_sched.h)

typedef struct {
    uint64_t sent, recv;
} traffic;

static int log2_floor(int p) {
    int l = 0;
    while ((2L << l) <= p)
        l++;
    return l;
}

static traffic want_all_reduce(const comm *c, size_t n, size_t s) {
    int p = c->size, r = c->rank;
    traffic t = {0, 0};
    if (p == 1 || n == 0) return t;
    if (n * s >= SMALL_BYTES && n >= (size_t)p) { // ring: every chunk but one, twice
        t.sent = (2 * n - chunk_count(n, p, r) - chunk_count(n, p, r + 1)) * s;
        t.recv = (2 * n - chunk_count(n, p, r - 1) - chunk_count(n, p, r)) * s;
        return t;
    }
    int l = log2_floor(p), q = 1 << l, extra = p - q;
    uint64_t v = n * s;
    if (r < 2 * extra && r % 2 == 0) { // hands its vector in, gets the result back
        t.sent = v;
        t.recv = v;
    } else if (r < 2 * extra) {
        t.sent = (uint64_t)(l + 1) * v;
        t.recv = (uint64_t)(l + 1) * v;
    } else {
        t.sent = (uint64_t)l * v;
        t.recv = (uint64_t)l * v;
    }
    return t;
}

static traffic want_reduce_scatter(const comm *c, size_t n, size_t s) {
    traffic t = {0, 0};
    if (c->size == 1) return t;
    t.sent = (n - chunk_count(n, c->size, c->rank)) * s;
    t.recv = (n - chunk_count(n, c->size, c->rank - 1)) * s;
    return t;
}

static traffic want_all_gather(const comm *c, size_t n, size_t s) {
    traffic t = {0, 0};
    if (c->size == 1) return t;
    t.sent = (n - chunk_count(n, c->size, c->rank + 1)) * s;
    t.recv = (n - chunk_count(n, c->size, c->rank)) * s;
    return t;
}

static traffic want_broadcast(const comm *c, size_t bytes, int root) {
    int p = c->size, vr = mod(c->rank - root, p);
    traffic t = {0, 0};
    if (p == 1 || bytes == 0) return t;
    t.recv = vr == 0 ? 0 : bytes;
    if (bytes >= SMALL_BYTES) { // chain: everyone but the last forwards the whole buffer
        t.sent = vr == p - 1 ? 0 : bytes;
        return t;
    }
    // binomial tree: children vr + m for every power of two m below vr's lowest set bit
    for (long m = 1; m < p; m *= 2)
        if ((vr == 0 || m < (vr & -vr)) && vr + m < p) t.sent += bytes;
    return t;
}

static comm_stats g_before;
static void traffic_begin(const comm *c) { g_before = c->stats; }
static void traffic_check(const comm *c, traffic want, const char *what, size_t n) {
    uint64_t sent = c->stats.bytes_sent - g_before.bytes_sent;
    uint64_t recv = c->stats.bytes_recv - g_before.bytes_recv;
    EXPECT(sent == want.sent, "%s n=%zu: sent %llu bytes, want %llu", what, n,
           (unsigned long long)sent, (unsigned long long)want.sent);
    EXPECT(recv == want.recv, "%s n=%zu: received %llu bytes, want %llu", what, n,
           (unsigned long long)recv, (unsigned long long)want.recv);
    EXPECT(c->stats.collectives == g_before.collectives + 1, "%s n=%zu: %llu collectives counted",
           what, n, (unsigned long long)(c->stats.collectives - g_before.collectives));
}

// ---------------------------------------------------------------------------------------------
// sums with exact answers: rank r holds sign * (r + 1) * 2^e, so every partial sum in any order
// is k * 2^e with k <= size * (size + 1) / 2 and nothing rounds

static float exact_f32(int rank, size_t i) {
    return (i % 3 == 0 ? -1.0f : 1.0f) * (float)(rank + 1) * ldexpf(1.0f, (int)(i % 17) - 8);
}
static double exact_f64(int rank, size_t i) {
    return (i % 5 == 0 ? -1.0 : 1.0) * (double)(rank + 1) * ldexp(1.0, (int)(i % 61) - 30);
}

static void test_sum_f32(comm *c, size_t n) {
    float *buf = malloc(n * sizeof *buf + 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = exact_f32(c->rank, i);
    traffic_begin(c);
    ts_status st = c->all_reduce_sum_f32(c, buf, n);
    EXPECT(st == TS_OK, "all_reduce_sum_f32(n=%zu) returned %s", n, ts_status_name(st));
    traffic_check(c, want_all_reduce(c, n, 4), "all-reduce f32", n);
    float tri = (float)(c->size * (c->size + 1) / 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = tri * exact_f32(0, i);
        if (buf[i] != want && bad++ == 0)
            EXPECT(buf[i] == want, "f32 sum n=%zu: [%zu] = %.9g, want %.9g", n, i, buf[i], want);
    }
    EXPECT(bad == 0, "f32 sum n=%zu: %zu wrong elements", n, bad);
    free(buf);
}

static void test_sum_f64(comm *c, size_t n) {
    double *buf = malloc(n * sizeof *buf + 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = exact_f64(c->rank, i);
    traffic_begin(c);
    ts_status st = c->all_reduce_sum_f64(c, buf, n);
    EXPECT(st == TS_OK, "all_reduce_sum_f64(n=%zu) returned %s", n, ts_status_name(st));
    traffic_check(c, want_all_reduce(c, n, 8), "all-reduce f64", n);
    double tri = (double)(c->size * (c->size + 1) / 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double want = tri * exact_f64(0, i);
        if (buf[i] != want && bad++ == 0)
            EXPECT(buf[i] == want, "f64 sum n=%zu: [%zu] = %.17g, want %.17g", n, i, buf[i], want);
    }
    EXPECT(bad == 0, "f64 sum n=%zu: %zu wrong elements", n, bad);
    free(buf);
}

static int max_value(int rank, int size, size_t i) {
    if (i == 0) return rank == size - 1 ? INT_MAX : INT_MIN + rank;
    if (i == 1) return INT_MIN;
    return (int)((i * 7919u + (size_t)rank * 104729u) % 2001u) - 1000;
}

static void test_max_i32(comm *c, size_t n) {
    int *buf = malloc(n * sizeof *buf + 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = max_value(c->rank, c->size, i);
    traffic_begin(c);
    ts_status st = c->all_reduce_max_i32(c, buf, n);
    EXPECT(st == TS_OK, "all_reduce_max_i32(n=%zu) returned %s", n, ts_status_name(st));
    traffic_check(c, want_all_reduce(c, n, 4), "all-reduce max i32", n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int want = INT_MIN;
        for (int r = 0; r < c->size; r++) {
            int v = max_value(r, c->size, i);
            if (v > want) want = v;
        }
        if (buf[i] != want && bad++ == 0)
            EXPECT(buf[i] == want, "max n=%zu: [%zu] = %d, want %d", n, i, buf[i], want);
    }
    EXPECT(bad == 0, "max n=%zu: %zu wrong elements", n, bad);
    free(buf);
}

static void test_reduce_scatter(comm *c, size_t n) {
    float *buf = malloc(n * sizeof *buf + 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = exact_f32(c->rank, i);
    traffic_begin(c);
    ts_status st = c->reduce_scatter_sum_f32(c, buf, n);
    EXPECT(st == TS_OK, "reduce_scatter_sum_f32(n=%zu) returned %s", n, ts_status_name(st));
    traffic_check(c, want_reduce_scatter(c, n, 4), "reduce-scatter", n);
    size_t first, count, bad = 0;
    comm_chunk(n, c->size, c->rank, &first, &count);
    float tri = (float)(c->size * (c->size + 1) / 2);
    for (size_t i = first; i < first + count; i++)
        if (buf[i] != tri * exact_f32(0, i) && bad++ == 0)
            EXPECT(0, "reduce-scatter n=%zu: [%zu] = %.9g, want %.9g", n, i, buf[i],
                   tri * exact_f32(0, i));
    EXPECT(bad == 0, "reduce-scatter n=%zu: %zu wrong elements in chunk [%zu, %zu)", n, bad, first,
           first + count);
    free(buf);
}

static float gather_value(size_t i) { return (float)(i % 65521) * 0.5f - 7.0f; }

static void test_all_gather(comm *c, size_t n) {
    float *buf = malloc(n * sizeof *buf + 1);
    size_t first, count;
    comm_chunk(n, c->size, c->rank, &first, &count);
    for (size_t i = 0; i < n; i++) // only this rank's chunk is meaningful before
        buf[i] = i >= first && i < first + count ? gather_value(i) : NAN;
    traffic_begin(c);
    ts_status st = c->all_gather_f32(c, buf, n);
    EXPECT(st == TS_OK, "all_gather_f32(n=%zu) returned %s", n, ts_status_name(st));
    traffic_check(c, want_all_gather(c, n, 4), "all-gather", n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i] != gather_value(i) && bad++ == 0)
            EXPECT(0, "all-gather n=%zu: [%zu] = %g, want %g", n, i, buf[i], gather_value(i));
    EXPECT(bad == 0, "all-gather n=%zu: %zu wrong elements", n, bad);
    free(buf);
}

static unsigned char bcast_byte(size_t j, int root) {
    return (unsigned char)(j * 31 + root * 7 + 1);
}

static void test_broadcast(comm *c, size_t bytes) {
    unsigned char *buf = malloc(bytes + 1);
    for (int root = 0; root < c->size; root++) {
        for (size_t j = 0; j < bytes; j++)
            buf[j] = c->rank == root ? bcast_byte(j, root) : 0xEE;
        traffic_begin(c);
        ts_status st = c->broadcast(c, buf, bytes, root);
        EXPECT(st == TS_OK, "broadcast(%zu bytes, root %d) returned %s", bytes, root,
               ts_status_name(st));
        traffic_check(c, want_broadcast(c, bytes, root), "broadcast", bytes);
        size_t bad = 0;
        for (size_t j = 0; j < bytes; j++)
            bad += buf[j] != bcast_byte(j, root);
        EXPECT(bad == 0, "broadcast(%zu bytes, root %d): %zu wrong bytes", bytes, root, bad);
    }
    free(buf);
}

static void test_barrier(comm *c) {
    for (int k = 0; k < 3; k++) {
        traffic_begin(c);
        EXPECT(c->barrier(c) == TS_OK, "barrier %d failed", k);
        traffic_check(c, (traffic){0, 0}, "barrier", 0);
    }
    if (c->size == 1) return;
    // the ranks leave the barriers above close together; rank 0 then arrives 0.3 s late, so
    // everyone else must wait for it
    if (c->rank == 0) sleep_s(0.3);
    double t0 = ts_now();
    EXPECT(c->barrier(c) == TS_OK, "timed barrier failed");
    double waited = ts_now() - t0;
    if (c->rank != 0)
        EXPECT(waited >= 0.2, "barrier returned after %.3f s, before rank 0 came", waited);
}

// ---------------------------------------------------------------------------------------------
// what codecs need: a caller-given combine, an all-gather of variable-length blocks

// An element of esize <= 8 bytes is a little-endian integer modulo 2^(8 esize); the combine is
// left * 3 + right. It is neither commutative nor associative, so the result shows the order of
// every combine, and a carry crosses the element's bytes, so an element cut in two shows too.
static uint64_t elem_mask(size_t esize) { return esize >= 8 ? ~0ull : (1ull << (8 * esize)) - 1; }
static uint64_t elem_get(const unsigned char *p, size_t esize) {
    uint64_t v = 0;
    for (size_t b = 0; b < esize; b++)
        v |= (uint64_t)p[b] << (8 * b);
    return v;
}
static void elem_put(unsigned char *p, size_t esize, uint64_t v) {
    for (size_t b = 0; b < esize; b++)
        p[b] = (unsigned char)(v >> (8 * b));
}
static uint64_t elem_combine(uint64_t left, uint64_t right, size_t esize) {
    return (left * 3 + right) & elem_mask(esize);
}
static void test_combine_fn(void *dst, const void *src, size_t n, int src_first, void *ctx) {
    size_t esize = *(const size_t *)ctx;
    unsigned char *d = dst;
    const unsigned char *s = src;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = elem_get(d + i * esize, esize), b = elem_get(s + i * esize, esize);
        elem_put(d + i * esize, esize,
                 src_first ? elem_combine(b, a, esize) : elem_combine(a, b, esize));
    }
}

static uint64_t elem_value(int rank, size_t i, size_t esize) {
    return rng_mix64(((uint64_t)rank << 40) ^ (i * 0x9e3779b97f4a7c15ull)) & elem_mask(esize);
}

// element i combined in the documented order (as expected_order_sum, with the combine); a
// reduce-scatter always runs the ring
static uint64_t expected_order_combine(int p, size_t n, size_t esize, size_t i, int scatter) {
    if (scatter || (n * esize >= SMALL_BYTES && n >= (size_t)p)) {
        int j;
        size_t first, count;
        for (j = 0; j < p; j++) {
            comm_chunk(n, p, j, &first, &count);
            if (i >= first && i < first + count) break;
        }
        uint64_t acc = elem_value(mod(j + 1, p), i, esize);
        for (int k = 2; k <= p; k++)
            acc = elem_combine(acc, elem_value(mod(j + k, p), i, esize), esize);
        return acc;
    }
    int q = 1 << log2_floor(p), extra = p - q;
    uint64_t v[64];
    for (int k = 0; k < q; k++)
        v[k] = k < extra ? elem_combine(elem_value(2 * k, i, esize),
                                        elem_value(2 * k + 1, i, esize), esize)
                         : elem_value(k + extra, i, esize);
    for (int w = q; w > 1; w /= 2)
        for (int k = 0; k < w / 2; k++)
            v[k] = elem_combine(v[2 * k], v[2 * k + 1], esize);
    return v[0];
}

static void test_combine(comm *c, size_t n, size_t esize, int scatter) {
    const char *what = scatter ? "reduce-scatter (combine)" : "all-reduce (combine)";
    unsigned char *buf = malloc(n * esize + 1);
    for (size_t i = 0; i < n; i++)
        elem_put(buf + i * esize, esize, elem_value(c->rank, i, esize));
    comm_combine cb = {test_combine_fn, esize, &esize};
    traffic_begin(c);
    ts_status st =
        scatter ? c->reduce_scatter_combine(c, buf, n, &cb) : c->all_reduce_combine(c, buf, n, &cb);
    EXPECT(st == TS_OK, "%s(n=%zu, esize %zu) returned %s", what, n, esize, ts_status_name(st));
    traffic_check(c, scatter ? want_reduce_scatter(c, n, esize) : want_all_reduce(c, n, esize),
                  what, n);
    size_t first = 0, count = n, bad = 0;
    if (scatter) comm_chunk(n, c->size, c->rank, &first, &count);
    for (size_t i = first; i < first + count; i++) {
        uint64_t got = elem_get(buf + i * esize, esize);
        uint64_t want = expected_order_combine(c->size, n, esize, i, scatter);
        if (got != want && bad++ == 0)
            EXPECT(0, "%s n=%zu esize %zu: [%zu] = %llx, the documented order gives %llx", what, n,
                   esize, i, (unsigned long long)got, (unsigned long long)want);
    }
    EXPECT(bad == 0, "%s n=%zu esize %zu: %zu wrong elements", what, n, esize, bad);
    free(buf);
}

// the length of rank r's block in pattern `k`; the blocks' bytes are block_byte(r, j)
static size_t block_len(int k, int r, int p) {
    switch (k) {
    case 0: return 0;                                         // all empty
    case 1: return (size_t)((r * 13 + 3) % 5) * 3;            // short, some empty
    case 2: return r == p - 1 ? 0 : 1300003 + (size_t)r * 17; // several ring segments, one empty
    case 3:
        return r == 0 ? 700001 : 0; // one rank only
    // two ring segments on rank 0, one elsewhere: the steps of the missing second segments are
    // empty and must not let a send run ahead of the receive it forwards
    case 4: return r == 0 ? 587889 : 416308;
    default: return (size_t)r + 1;
    }
}
#define N_BLOCK_PATTERNS 6
static unsigned char block_byte(int r, size_t j) { return (unsigned char)(j * 31 + r * 7 + 1); }

static traffic want_all_gather_v(const comm *c, int k) {
    int p = c->size, r = c->rank;
    traffic t = {0, 0};
    if (p == 1) return t;
    size_t total = 0;
    for (int q = 0; q < p; q++)
        total += block_len(k, q, p);
    // the lengths: p - 1 of the 8-byte elements each way; then every block but one
    t.sent = (uint64_t)(p - 1) * 8 + total - block_len(k, mod(r + 1, p), p);
    t.recv = (uint64_t)(p - 1) * 8 + total - block_len(k, r, p);
    return t;
}

static void test_all_gather_v(comm *c, int k) {
    int p = c->size, r = c->rank;
    size_t mine = block_len(k, r, p), total = 0;
    for (int q = 0; q < p; q++)
        total += block_len(k, q, p);
    unsigned char *block = malloc(mine + 1), *out = malloc(total + 2);
    size_t *lens = malloc((size_t)p * sizeof *lens);
    for (size_t j = 0; j < mine; j++)
        block[j] = block_byte(r, j);
    memset(out, 0xEE, total + 2);
    for (int q = 0; q < p; q++)
        lens[q] = 12345;
    traffic_begin(c);
    // room for exactly the blocks: the byte after them must stay untouched
    ts_status st = c->all_gather_v(c, mine ? block : NULL, mine, out, total, lens);
    EXPECT(st == TS_OK, "all_gather_v(pattern %d) returned %s", k, ts_status_name(st));
    traffic_check(c, want_all_gather_v(c, k), "all-gather-v", (size_t)k);
    size_t at = 0, bad = 0;
    for (int q = 0; q < p; q++) {
        size_t len = block_len(k, q, p);
        EXPECT(lens[q] == len, "all-gather-v pattern %d: rank %d's length %zu, want %zu", k, q,
               lens[q], len);
        for (size_t j = 0; j < len; j++)
            bad += out[at + j] != block_byte(q, j);
        at += len;
    }
    EXPECT(bad == 0, "all-gather-v pattern %d: %zu wrong bytes", k, bad);
    EXPECT(out[total] == 0xEE && out[total + 1] == 0xEE,
           "all-gather-v pattern %d wrote past its %zu bytes", k, total);

    // one byte too little room: every rank refuses alike, and the communicator goes on
    if (total > 0) {
        log_set_quiet_errors(1);
        st = c->all_gather_v(c, mine ? block : NULL, mine, out, total - 1, lens);
        log_set_quiet_errors(0);
        EXPECT(st == TS_ERR_INTERNAL, "all-gather-v pattern %d into %zu of %zu bytes returned %s",
               k, total - 1, total, ts_status_name(st));
        EXPECT(c->barrier(c) == TS_OK, "barrier after a refused all-gather-v failed");
    }
    free(block), free(out), free(lens);
}

// ---------------------------------------------------------------------------------------------
// random float sums: the same inputs must give the same bits twice in a row and on every rank,
// and exactly the bits of the documented summation order

// the documented order for element i: ring (chunk j summed from rank j+1 up the ring) or
// recursive doubling (pairs 2k, 2k+1 for the first p - q ranks, then a balanced pairwise tree)
static float expected_order_sum(int p, size_t n, size_t i) {
    if (n * sizeof(float) >= SMALL_BYTES && n >= (size_t)p) {
        int j;
        size_t first, count;
        for (j = 0; j < p; j++) {
            comm_chunk(n, p, j, &first, &count);
            if (i >= first && i < first + count) break;
        }
        float acc = comm_test_value(mod(j + 1, p), i);
        for (int k = 2; k <= p; k++)
            acc = acc + comm_test_value(mod(j + k, p), i);
        return acc;
    }
    int q = 1 << log2_floor(p), extra = p - q;
    float v[64];
    for (int k = 0; k < q; k++)
        v[k] = k < extra ? comm_test_value(2 * k, i) + comm_test_value(2 * k + 1, i)
                         : comm_test_value(k + extra, i);
    for (int w = q; w > 1; w /= 2)
        for (int k = 0; k < w / 2; k++)
            v[k] = v[2 * k] + v[2 * k + 1];
    return v[0];
}

static void test_sum_reproducible(comm *c, size_t n) {
    size_t bytes = n * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *from0 = malloc(bytes);
    for (size_t i = 0; i < n; i++)
        a[i] = b[i] = comm_test_value(c->rank, i);
    EXPECT(c->all_reduce_sum_f32(c, a, n) == TS_OK, "first random all-reduce failed");
    EXPECT(c->all_reduce_sum_f32(c, b, n) == TS_OK, "second random all-reduce failed");
    EXPECT(memcmp(a, b, bytes) == 0, "two all-reduces of the same %zu floats differ bitwise", n);
    memcpy(from0, a, bytes);
    EXPECT(c->broadcast(c, from0, bytes, 0) == TS_OK, "broadcast of the sum failed");
    EXPECT(memcmp(a, from0, bytes) == 0,
           "rank %d's sum of %zu floats differs bitwise from rank 0's", c->rank, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = expected_order_sum(c->size, n, i);
        if (memcmp(&a[i], &want, sizeof want) != 0 && bad++ == 0)
            EXPECT(0, "random sum n=%zu [%zu] = %.9g, the documented order gives %.9g", n, i, a[i],
                   want);
    }
    EXPECT(bad == 0, "random sums n=%zu: %zu elements differ from the documented order", n, bad);
    free(a), free(b), free(from0);
}

// ---------------------------------------------------------------------------------------------
// non-blocking: several collectives in flight, completed in a different order on each rank

static void test_nonblocking(comm *c) {
    int p = c->size, r = c->rank;
    const size_t big = 1000003, small = 1001;
    float *ar = malloc(big * sizeof(float)), *rs = malloc(big * sizeof(float));
    float *ag = malloc(big * sizeof(float));
    double *ard = malloc(small * sizeof(double));
    int *mx = malloc(small * sizeof(int));
    unsigned char *bc = malloc(100003);
    size_t gfirst, gcount;
    comm_chunk(big, p, r, &gfirst, &gcount);
    for (size_t i = 0; i < big; i++) {
        ar[i] = exact_f32(r, i);
        rs[i] = exact_f32(r, i + 1);
        ag[i] = i >= gfirst && i < gfirst + gcount ? gather_value(i) : NAN;
    }
    for (size_t i = 0; i < small; i++) {
        ard[i] = exact_f64(r, i);
        mx[i] = max_value(r, p, i);
    }
    for (size_t j = 0; j < 100003; j++)
        bc[j] = r == p - 1 ? bcast_byte(j, p - 1) : 0;

    // and what codecs use: a combine over 7-byte elements, and variable blocks
    const size_t cn = 30011;
    static size_t ces = 7; // the combine's context, read until the request completes
    unsigned char *cbuf = malloc(cn * ces), vblock[40], *vout = malloc((size_t)p * 40);
    size_t *vlens = malloc((size_t)p * sizeof *vlens), vmine = (size_t)(r * 11) % 40, vtotal = 0;
    for (size_t i = 0; i < cn; i++)
        elem_put(cbuf + i * ces, ces, elem_value(r, i, ces));
    for (size_t j = 0; j < vmine; j++)
        vblock[j] = block_byte(r, j);
    for (int q = 0; q < p; q++)
        vtotal += (size_t)(q * 11) % 40;
    comm_combine cb = {test_combine_fn, ces, &ces};

    enum { NREQ = 9 };
    comm_req *req[NREQ];
    ts_status st[NREQ];
    st[0] = c->start(c, COMM_ALL_REDUCE_SUM, ar, big, COMM_F32, 0, &req[0]);
    st[1] = c->start(c, COMM_ALL_REDUCE_SUM, ard, small, COMM_F64, 0, &req[1]);
    st[2] = c->start(c, COMM_BARRIER, NULL, 0, COMM_F32, 0, &req[2]);
    st[3] = c->start(c, COMM_REDUCE_SCATTER_SUM, rs, big, COMM_F32, 0, &req[3]);
    st[4] = c->start(c, COMM_ALL_REDUCE_MAX, mx, small, COMM_I32, 0, &req[4]);
    st[5] = c->start(c, COMM_ALL_GATHER, ag, big, COMM_F32, 0, &req[5]);
    st[6] = c->start(c, COMM_BROADCAST, bc, 100003 / 4, COMM_I32, p - 1, &req[6]);
    st[7] = c->start_combine(c, COMM_ALL_REDUCE_COMBINE, cbuf, cn, &cb, &req[7]);
    st[8] = c->start_all_gather_v(c, vblock, vmine, vout, vtotal, vlens, &req[8]);
    int started = 1;
    for (int k = 0; k < NREQ; k++) {
        EXPECT(st[k] == TS_OK, "start of request %d returned %s", k, ts_status_name(st[k]));
        started &= st[k] == TS_OK;
    }
    if (!started) return; // the requests would not line up across ranks

    int done[NREQ] = {0}, left = NREQ;
    if (r % 2 == 0) { // even ranks wait in reverse order of starting
        for (int k = NREQ - 1; k >= 0; k--) {
            ts_status s = c->wait(c, req[k]);
            EXPECT(s == TS_OK, "wait on request %d returned %s", k, ts_status_name(s));
        }
    } else { // odd ranks poll all with test until each reports done
        double t0 = ts_now();
        while (left > 0 && ts_now() - t0 < 20) {
            for (int k = 0; k < NREQ; k++) {
                if (done[k]) continue;
                ts_status s = c->test(c, req[k], &done[k]);
                EXPECT(s == TS_OK, "test on request %d returned %s", k, ts_status_name(s));
                if (s != TS_OK) return;
                left -= done[k];
            }
        }
        EXPECT(left == 0, "%d requests still not done after 20 s of test()", left);
    }

    float tri = (float)(p * (p + 1) / 2);
    size_t bad = 0, first, count;
    for (size_t i = 0; i < big; i++)
        bad += ar[i] != tri * exact_f32(0, i) || ag[i] != gather_value(i);
    comm_chunk(big, p, r, &first, &count);
    for (size_t i = first; i < first + count; i++)
        bad += rs[i] != tri * exact_f32(0, i + 1);
    for (size_t i = 0; i < small; i++) {
        int want = INT_MIN;
        for (int k = 0; k < p; k++)
            want = max_value(k, p, i) > want ? max_value(k, p, i) : want;
        bad += ard[i] != (double)tri * exact_f64(0, i) || mx[i] != want;
    }
    for (size_t j = 0; j < (100003 / 4) * 4; j++)
        bad += bc[j] != bcast_byte(j, p - 1);
    for (size_t i = 0; i < cn; i++)
        bad += elem_get(cbuf + i * ces, ces) != expected_order_combine(p, cn, ces, i, 0);
    for (int q = 0, at = 0; q < p; at += (q * 11) % 40, q++) {
        bad += vlens[q] != (size_t)(q * 11) % 40;
        for (int j = 0; j < (q * 11) % 40; j++)
            bad += vout[at + j] != block_byte(q, (size_t)j);
    }
    EXPECT(bad == 0, "%zu wrong elements after the requests in flight together", bad);
    free(ar), free(rs), free(ag), free(ard), free(mx), free(bc);
    free(cbuf), free(vout), free(vlens);

    // the most requests in flight at once, then one more
    int vals[COMM_MAX_INFLIGHT];
    comm_req *many[COMM_MAX_INFLIGHT];
    for (int k = 0; k < COMM_MAX_INFLIGHT; k++) {
        vals[k] = k * 100 + r;
        EXPECT(c->start(c, COMM_ALL_REDUCE_MAX, &vals[k], 1, COMM_I32, 0, &many[k]) == TS_OK,
               "start of in-flight request %d failed", k);
    }
    int extra = 0;
    comm_req *one_more = NULL;
    log_set_quiet_errors(1);
    ts_status over = c->start(c, COMM_ALL_REDUCE_MAX, &extra, 1, COMM_I32, 0, &one_more);
    log_set_quiet_errors(0);
    EXPECT(over == TS_ERR_INTERNAL, "request %d returned %s, want internal error",
           COMM_MAX_INFLIGHT + 1, ts_status_name(over));
    int waited[COMM_MAX_INFLIGHT] = {0};
    for (int k = 0; k < COMM_MAX_INFLIGHT; k++) {
        // a different order on each rank (37 is prime to 64: k -> kk is a permutation)
        int kk = (k * 37 + r * 11) % COMM_MAX_INFLIGHT;
        EXPECT(!waited[kk], "bad permutation");
        waited[kk] = 1;
        EXPECT(c->wait(c, many[kk]) == TS_OK, "wait on in-flight request %d failed", kk);
    }
    for (int k = 0; k < COMM_MAX_INFLIGHT; k++)
        EXPECT(vals[k] == k * 100 + p - 1, "in-flight max %d = %d, want %d", k, vals[k],
               k * 100 + p - 1);
}

// caller bugs are reported before any rank waits, with TS_ERR_INTERNAL
static void test_misuse(comm *c) {
    unsigned char byte = 0;
    comm_req *q = NULL;
    log_set_quiet_errors(1);
    ts_status st = c->broadcast(c, &byte, 1, c->size);
    ts_status st2 = c->start(c, COMM_BARRIER, &byte, 1, COMM_F32, 0, &q);
    ts_status st3 = c->start(c, COMM_ALL_REDUCE_SUM, NULL, 5, COMM_F32, 0, &q);
    ts_status st4 = c->start(c, COMM_BARRIER, NULL, 0, COMM_F32, 0, &q);
    ts_status st5 = st4 == TS_OK ? c->wait(c, q) : st4;
    ts_status st6 = c->wait(c, q); // released by the wait above
    // the codecs' collectives: only through their own entry points, with a combine of a sane
    // element size, a block apart from the output
    unsigned char out[8];
    size_t lens[64];
    comm_combine none = {NULL, 4, NULL}, wide = {test_combine_fn, COMM_COMBINE_MAX_ESIZE + 1, NULL};
    ts_status st7 = c->start(c, COMM_ALL_GATHER_V, out, 8, COMM_I32, 0, &q);
    ts_status st8 = c->start(c, COMM_ALL_REDUCE_COMBINE, out, 2, COMM_I32, 0, &q);
    ts_status st9 = c->start_combine(c, COMM_ALL_REDUCE_COMBINE, out, 2, &none, &q);
    ts_status st10 = c->start_combine(c, COMM_ALL_REDUCE_COMBINE, out, 0, &wide, &q);
    ts_status st11 = c->start_combine(c, COMM_ALL_REDUCE_SUM, out, 2, &none, &q);
    ts_status st12 = c->start_all_gather_v(c, out + 2, 4, out, 8, lens, &q);
    ts_status st13 = c->start_all_gather_v(c, out, 4, NULL, 8, lens, &q);
    log_set_quiet_errors(0);
    EXPECT(st7 == TS_ERR_INTERNAL && st8 == TS_ERR_INTERNAL,
           "start() of the codecs' collectives returned %s, %s", ts_status_name(st7),
           ts_status_name(st8));
    EXPECT(st9 == TS_ERR_INTERNAL && st10 == TS_ERR_INTERNAL && st11 == TS_ERR_INTERNAL,
           "bad start_combine calls returned %s, %s, %s", ts_status_name(st9), ts_status_name(st10),
           ts_status_name(st11));
    EXPECT(st12 == TS_ERR_INTERNAL && st13 == TS_ERR_INTERNAL,
           "bad start_all_gather_v calls returned %s, %s", ts_status_name(st12),
           ts_status_name(st13));
    EXPECT(st == TS_ERR_INTERNAL, "broadcast from root %d returned %s", c->size,
           ts_status_name(st));
    EXPECT(st2 == TS_ERR_INTERNAL, "barrier with a buffer returned %s", ts_status_name(st2));
    EXPECT(st3 == TS_ERR_INTERNAL, "all-reduce on NULL returned %s", ts_status_name(st3));
    EXPECT(st5 == TS_OK, "barrier returned %s", ts_status_name(st5));
    EXPECT(st6 == TS_ERR_INTERNAL, "wait on a released request returned %s", ts_status_name(st6));
}

static int run_collectives(comm *c, const char *backend, int size) {
    EXPECT(strcmp(c->name, backend) == 0, "backend is %s, want %s", c->name, backend);
    EXPECT(c->size == size, "world size is %d, want %d", c->size, size);
    EXPECT(c->rank >= 0 && c->rank < c->size, "rank %d outside [0, %d)", c->rank, c->size);
    EXPECT(c->timeout_s == 300.0, "default deadline is %g s, want 300", c->timeout_s);
    if (g_failures) return 1; // wrong world: the collectives below would not line up
    c->timeout_s = 20;        // a hang becomes a failure long before ctest's timeout

    int p = c->size;
    // both sides of the small-message threshold (16381 and 16411 floats are primes just below
    // and above 64 KiB), lengths around the world size, and a few MB
    const size_t sizes[] = {0, 1, (size_t)p - 1, (size_t)p + 1, 16381, 16411, 1000003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        test_sum_f32(c, n);
        test_sum_f64(c, n);
        test_max_i32(c, n);
        test_reduce_scatter(c, n);
        test_all_gather(c, n);
        if (n < 1000003) test_broadcast(c, n);
    }
    test_sum_f64(c, 8191); // just below the threshold in doubles
    test_broadcast(c, 65537);
    test_broadcast(c, 1000003);
    // the combine: 4- and 7-byte elements (a 7-byte element never divides a ring segment), both
    // sides of the threshold, several ring segments
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int scatter = 0; scatter < 2; scatter++) {
            test_combine(c, sizes[k], 4, scatter);
            test_combine(c, sizes[k] == 1000003 ? 300007 : sizes[k], 7, scatter);
        }
    test_combine(c, 65536 / 7 - 1, 7, 0); // just below the threshold
    test_combine(c, 65536 / 7 + 1, 7, 0); // just above
    for (int k = 0; k < N_BLOCK_PATTERNS; k++)
        test_all_gather_v(c, k);
    for (int i = 0; i < 40; i++) // a race: once is not enough to see it
        test_all_gather_v(c, 4);
    test_sum_reproducible(c, 1000);
    test_sum_reproducible(c, 1000003); // several ring segments per chunk
    test_barrier(c);
    test_nonblocking(c);
    test_misuse(c);
    EXPECT(c->stats.wait_s >= 0, "wait time %g s", c->stats.wait_s);
    return g_failures ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// a rank that stops answering

static void write_pid(const char *dir, int rank) {
    char path[4096];
    snprintf(path, sizeof path, "%s/rank-%d.pid", dir, rank);
    FILE *f = fopen(path, "w");
    if (f) fprintf(f, "%ld\n", (long)getpid()), fclose(f);
}

// the collective the deadline test waits in: "sum" (all-reduce), "combine" (all-reduce with a
// combine), "gather-v" (all-gather of variable blocks)
static ts_status deadline_collective(comm *c, const char *which, float *buf, size_t n) {
    static size_t esize = 4;
    comm_combine cb = {test_combine_fn, esize, &esize};
    size_t lens[3];
    if (strcmp(which, "combine") == 0) return c->all_reduce_combine(c, buf, n, &cb);
    if (strcmp(which, "gather-v") == 0) { // the first third of buf from each rank, into the rest
        size_t third = n / 3 * sizeof(float);
        unsigned char *bytes = (unsigned char *)buf;
        return c->all_gather_v(c, bytes, third / 2 - (size_t)c->rank, bytes + third, 2 * third,
                               lens);
    }
    return c->all_reduce_sum_f32(c, buf, n);
}

static int run_deadline(comm *c, const char *dir, const char *which) {
    if (c->size != 3) {
        fprintf(stderr, "test_comm: the deadline test needs 3 ranks, got %d\n", c->size);
        return 1;
    }
    status_file_set_dir(dir);
    // a few collectives with the default deadline, so start-up skew does not count
    float warm[64] = {0};
    for (int k = 0; k < 3; k++)
        if (c->all_reduce_sum_f32(c, warm, 64) != TS_OK || c->barrier(c) != TS_OK) return 1;
    status_file_set_step(7);
    c->timeout_s = 2.0;
    if (c->rank == 2) {
        write_pid(dir, 2);
        raise(SIGSTOP); // the wrapper (or mpirun) kills this rank while it is stopped
        return 1;
    }
    size_t n = 100003; // the ring algorithm
    float *buf = calloc(n, sizeof *buf);
    double t0 = ts_now();
    ts_status st = deadline_collective(c, which, buf, n);
    double waited = ts_now() - t0;
    EXPECT(st == TS_ERR_PEER, "%s with a stopped peer returned %s", which, ts_status_name(st));
    EXPECT(waited >= c->timeout_s, "gave up after %.3f s, before the %.1f s deadline", waited,
           c->timeout_s);
    EXPECT(waited <= c->timeout_s + 1.0, "gave up after %.3f s, long after the %.1f s deadline",
           waited, c->timeout_s);
    t0 = ts_now();
    ts_status again = c->barrier(c);
    EXPECT(again == TS_ERR_PEER && ts_now() - t0 < 0.1,
           "a barrier after the failure returned %s after %.3f s, want peer lost at once",
           ts_status_name(again), ts_now() - t0);
    free(buf);
    if (g_failures) return 1;
    // the first survivor to exit makes mpirun end the job: give the other one time to write its
    // status file (it gives up at the same moment)
    sleep_s(1.0);
    return ts_exit_code(st);
}

static int run_finalize_watchdog(comm *c, const char *dir) {
    if (c->size != 2) {
        fprintf(stderr, "test_comm: the finalize test needs 2 ranks, got %d\n", c->size);
        return 1;
    }
    status_file_set_dir(dir);
    if (c->barrier(c) != TS_OK) return 1;
    if (c->rank == 1) {
        write_pid(dir, 1);
        raise(SIGSTOP);
        return 1;
    }
    sleep_s(0.2); // rank 1 is stopped by now
    c->timeout_s = 1.0;
    c->finalize(c); // waits for rank 1; the watchdog ends this process after 1 s
    fprintf(stderr, "test_comm[0]: FAIL: MPI_Finalize returned with a stopped peer\n");
    _exit(1);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    const char *dir = argc > 2 ? argv[2] : ".";
    double init_timeout = 60;
    if (strcmp(mode, "init-watchdog") == 0) {
        status_file_set_dir(dir);
        init_timeout = 0.001; // MPI_Init_thread takes longer than that
    }
    comm *c = NULL;
    ts_status st = comm_init(&c, &argc, &argv, init_timeout);
    if (st != TS_OK) return ts_exit_code(st);
    g_expect_rank = c->rank;
    log_init(c->rank, c->size);

    int rc;
    if (strcmp(mode, "collectives") == 0 && argc == 4) {
        rc = run_collectives(c, argv[2], atoi(argv[3]));
    } else if (strcmp(mode, "deadline") == 0 && (argc == 3 || argc == 4)) {
        rc = run_deadline(c, dir, argc == 4 ? argv[3] : "sum");
        if (rc == TS_EXIT_PEER_LOST) c->finalize(c); // skips MPI_Finalize: a peer is lost
        return rc;
    } else if (strcmp(mode, "finalize-watchdog") == 0 && argc == 3) {
        return run_finalize_watchdog(c, dir);
    } else if (strcmp(mode, "init-watchdog") == 0) {
        fprintf(stderr, "test_comm: FAIL: comm_init returned under a 1 ms watchdog\n");
        rc = 1;
    } else if (strcmp(mode, "init") == 0) {
        rc = 0;
    } else {
        fprintf(stderr, "usage: test_comm collectives BACKEND SIZE | deadline DIR [sum|combine|"
                        "gather-v] | "
                        "init-watchdog DIR | finalize-watchdog DIR | init\n");
        rc = 2;
    }
    if (rc == 0 && strcmp(mode, "collectives") == 0 && c->rank == 0)
        printf("test_comm: all checks passed (%s, %d ranks)\n", c->name, c->size);
    c->finalize(c);
    return rc;
}
