// test_comm.c — communicator tests, run as real processes (with or without mpirun).
//
//   test_comm collectives BACKEND SIZE   every collective against exact expectations; checks
//                                        that comm_init picked BACKEND ("self"/"mpi") with SIZE
//                                        ranks. Exits 0 when all checks pass on this rank, else 1.
//   test_comm deadline                   2 ranks, 1 s deadline: rank 1 stalls 4 s before an
//                                        all-reduce; rank 0 must give up with TS_ERR_PEER after
//                                        the deadline (and not much later) and exits 75.
//   test_comm init                       comm_init and finalize only; exits with the status's
//                                        exit code (for the TESSERA_COMM error test).
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collectives/comm.h"

static int g_failures = 0;
static int g_rank = 0;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (g_failures++ < 20) {                                                               \
                fprintf(stderr, "test_comm[%d]: FAIL line %d: %s: ", g_rank, __LINE__, #cond);     \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

// a deterministic value in [-1, 1) from (rank, index): every rank can rebuild every other rank's
// contribution to compute the expected sum itself
static float test_random(int rank, size_t i) {
    uint64_t z = ((uint64_t)rank << 40) ^ (uint64_t)i;
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 23) - 1.0);
}

// ---------------------------------------------------------------------------------------------
// sums with exact answers: rank r holds sign * (r + 1) * 2^e, so every partial sum in any order
// is k * 2^e with k <= size * (size + 1) / 2 and nothing rounds

static void test_sum_f32(comm *c, size_t n) {
    float *buf = ts_malloc(n * sizeof *buf, "test buffer");
    for (size_t i = 0; i < n; i++)
        buf[i] =
            (i % 3 == 0 ? -1.0f : 1.0f) * (float)(c->rank + 1) * ldexpf(1.0f, (int)(i % 17) - 8);
    ts_status st = c->all_reduce_sum_f32(c, buf, n);
    EXPECT(st == TS_OK, "all_reduce_sum_f32(n=%zu) returned %s", n, ts_status_name(st));
    float tri = (float)(c->size * (c->size + 1) / 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = (i % 3 == 0 ? -1.0f : 1.0f) * tri * ldexpf(1.0f, (int)(i % 17) - 8);
        if (buf[i] != want && bad++ == 0)
            EXPECT(buf[i] == want, "f32 sum n=%zu: [%zu] = %.9g, want %.9g", n, i, buf[i], want);
    }
    EXPECT(bad == 0, "f32 sum n=%zu: %zu wrong elements", n, bad);
    free(buf);
}

static void test_sum_f64(comm *c, size_t n) {
    double *buf = ts_malloc(n * sizeof *buf, "test buffer");
    for (size_t i = 0; i < n; i++)
        buf[i] = (i % 5 == 0 ? -1.0 : 1.0) * (double)(c->rank + 1) * ldexp(1.0, (int)(i % 61) - 30);
    ts_status st = c->all_reduce_sum_f64(c, buf, n);
    EXPECT(st == TS_OK, "all_reduce_sum_f64(n=%zu) returned %s", n, ts_status_name(st));
    double tri = (double)(c->size * (c->size + 1) / 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double want = (i % 5 == 0 ? -1.0 : 1.0) * tri * ldexp(1.0, (int)(i % 61) - 30);
        if (buf[i] != want && bad++ == 0)
            EXPECT(buf[i] == want, "f64 sum n=%zu: [%zu] = %.17g, want %.17g", n, i, buf[i], want);
    }
    EXPECT(bad == 0, "f64 sum n=%zu: %zu wrong elements", n, bad);
    free(buf);
}

static int test_max_value(int rank, int size, size_t i) {
    if (i == 0) return rank == size - 1 ? INT_MAX : INT_MIN + rank;
    if (i == 1) return INT_MIN;
    return (int)((i * 7919u + (size_t)rank * 104729u) % 2001u) - 1000;
}

static void test_max_i32(comm *c, size_t n) {
    int *buf = ts_malloc(n * sizeof *buf, "test buffer");
    for (size_t i = 0; i < n; i++)
        buf[i] = test_max_value(c->rank, c->size, i);
    ts_status st = c->all_reduce_max_i32(c, buf, n);
    EXPECT(st == TS_OK, "all_reduce_max_i32(n=%zu) returned %s", n, ts_status_name(st));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int want = INT_MIN;
        for (int r = 0; r < c->size; r++) {
            int v = test_max_value(r, c->size, i);
            if (v > want) want = v;
        }
        if (buf[i] != want && bad++ == 0)
            EXPECT(buf[i] == want, "max n=%zu: [%zu] = %d, want %d", n, i, buf[i], want);
    }
    EXPECT(bad == 0, "max n=%zu: %zu wrong elements", n, bad);
    free(buf);
}

// ---------------------------------------------------------------------------------------------
// random float sums: the same inputs must give the same bits twice in a row and on every rank,
// and stay within the float rounding bound of the exact (double) sum

static void test_sum_reproducible(comm *c, size_t n) {
    size_t bytes = n * sizeof(float);
    float *a = ts_malloc(bytes, "test buffer"), *b = ts_malloc(bytes, "test buffer");
    float *from0 = ts_malloc(bytes, "test buffer");
    for (size_t i = 0; i < n; i++)
        a[i] = b[i] = test_random(c->rank, i);
    EXPECT(c->all_reduce_sum_f32(c, a, n) == TS_OK, "first random all-reduce failed");
    EXPECT(c->all_reduce_sum_f32(c, b, n) == TS_OK, "second random all-reduce failed");
    EXPECT(memcmp(a, b, bytes) == 0, "two all-reduces of the same %zu floats differ bitwise", n);
    memcpy(from0, a, bytes);
    EXPECT(c->broadcast(c, from0, bytes, 0) == TS_OK, "broadcast of the sum failed");
    EXPECT(memcmp(a, from0, bytes) == 0, "rank %d's sum differs bitwise from rank 0's", c->rank);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double exact = 0, mag = 0;
        for (int r = 0; r < c->size; r++) {
            double v = test_random(r, i);
            exact += v;
            mag += fabs(v);
        }
        // each of the size - 1 additions rounds by at most half an ulp of a partial sum <= mag
        double tol = (double)(c->size - 1) * (FLT_EPSILON / 2) * mag;
        if (fabs((double)a[i] - exact) > tol && bad++ == 0)
            EXPECT(0, "random sum [%zu] = %.9g, exact %.9g, tolerance %.3g", i, a[i], exact, tol);
    }
    EXPECT(bad == 0, "random sums: %zu elements outside the rounding bound", bad);
    free(a), free(b), free(from0);
}

static void test_broadcast(comm *c, size_t bytes) {
    unsigned char *buf = ts_malloc(bytes, "test buffer");
    for (int root = 0; root < c->size; root++) {
        for (size_t j = 0; j < bytes; j++)
            buf[j] = c->rank == root ? (unsigned char)(j * 31 + (size_t)root * 7 + 1) : 0xEE;
        ts_status st = c->broadcast(c, buf, bytes, root);
        EXPECT(st == TS_OK, "broadcast(%zu bytes, root %d) returned %s", bytes, root,
               ts_status_name(st));
        size_t bad = 0;
        for (size_t j = 0; j < bytes; j++)
            if (buf[j] != (unsigned char)(j * 31 + (size_t)root * 7 + 1)) bad++;
        EXPECT(bad == 0, "broadcast(%zu bytes, root %d): %zu wrong bytes", bytes, root, bad);
    }
    free(buf);
}

static void test_barrier(comm *c) {
    for (int k = 0; k < 3; k++)
        EXPECT(c->barrier(c) == TS_OK, "barrier %d failed", k);
    if (c->size == 1) return;
    // the ranks leave the barrier above together; rank 0 then arrives 0.3 s late, so everyone
    // else must wait for it
    if (c->rank == 0) sleep_s(0.3);
    double t0 = ts_now();
    EXPECT(c->barrier(c) == TS_OK, "timed barrier failed");
    double waited = ts_now() - t0;
    if (c->rank != 0)
        EXPECT(waited >= 0.2, "barrier returned after %.3f s, before rank 0 came", waited);
}

static int run_collectives(comm *c, const char *backend, int size) {
    EXPECT(strcmp(c->name, backend) == 0, "backend is %s, want %s", c->name, backend);
    EXPECT(c->size == size, "world size is %d, want %d", c->size, size);
    EXPECT(c->rank >= 0 && c->rank < c->size, "rank %d outside [0, %d)", c->rank, c->size);
    EXPECT(c->timeout_s == 300.0, "default deadline is %g s, want 300", c->timeout_s);
    if (g_failures) return 1; // wrong world: the collectives below would not line up
    c->timeout_s = 30;        // a hang becomes a failure long before ctest's timeout

    const size_t sizes[] = {0, 1, 7, 300007};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        test_sum_f32(c, sizes[k]);
        test_sum_f64(c, sizes[k]);
        test_max_i32(c, sizes[k]);
    }
    test_sum_reproducible(c, 200003);
    test_broadcast(c, 0);
    test_broadcast(c, 1);
    test_broadcast(c, 1000003);
    test_barrier(c);

    // a root outside the world is a caller bug, reported before any rank waits
    unsigned char byte = 0;
    log_set_quiet_errors(1);
    ts_status st = c->broadcast(c, &byte, 1, c->size);
    log_set_quiet_errors(0);
    EXPECT(st == TS_ERR_INTERNAL, "broadcast from root %d returned %s", c->size,
           ts_status_name(st));
    return g_failures ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// deadline

static int run_deadline(comm *c) {
    if (c->size != 2) {
        fprintf(stderr, "test_comm: the deadline test needs 2 ranks, got %d\n", c->size);
        return 1;
    }
    // meet once with the default deadline so start-up skew does not count
    if (c->barrier(c) != TS_OK) return 1;
    c->timeout_s = 1.0;
    float buf[1024] = {0};
    if (c->rank == 1) {
        sleep_s(4.0); // mpirun normally ends this rank before it wakes up
        ts_status st = c->all_reduce_sum_f32(c, buf, 1024);
        return ts_exit_code(st);
    }
    double t0 = ts_now();
    ts_status st = c->all_reduce_sum_f32(c, buf, 1024);
    double waited = ts_now() - t0;
    EXPECT(st == TS_ERR_PEER, "all-reduce with a stalled peer returned %s", ts_status_name(st));
    EXPECT(waited >= c->timeout_s, "gave up after %.3f s, before the %.1f s deadline", waited,
           c->timeout_s);
    EXPECT(waited <= c->timeout_s + 1.0, "gave up after %.3f s, long after the %.1f s deadline",
           waited, c->timeout_s);
    if (g_failures) return 1;
    return ts_exit_code(st);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    comm *c = NULL;
    ts_status st = comm_init(&c, &argc, &argv);
    if (st != TS_OK) return ts_exit_code(st);
    g_rank = c->rank;
    log_init(c->rank, c->size);

    int rc;
    if (strcmp(mode, "collectives") == 0 && argc == 4) {
        rc = run_collectives(c, argv[2], atoi(argv[3]));
    } else if (strcmp(mode, "deadline") == 0) {
        rc = run_deadline(c);
    } else if (strcmp(mode, "init") == 0) {
        rc = 0;
    } else {
        fprintf(stderr, "usage: test_comm collectives BACKEND SIZE | deadline | init\n");
        rc = 2;
    }
    if (rc == 0 && strcmp(mode, "collectives") == 0 && c->rank == 0)
        printf("test_comm: all checks passed (%s, %d ranks)\n", c->name, c->size);
    c->finalize(c);
    return rc;
}
