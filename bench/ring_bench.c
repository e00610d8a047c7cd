// ring_bench.c — back-to-back all-reduces of one bucket size through tessera's MPI communicator,
// timed against the wall clock, for bench/lab_ring.sh to compare with the links' byte counters.
//
//   mpirun -np P ring_bench BYTES [SAMPLES] [REPS]      (default 5 samples of 1 all-reduce)
//
// After one checked all-reduce (rank r contributes r + 1; every element must come back as the
// exact sum) and one untimed warm-up, each sample is REPS all-reduces of BYTES (floats), started
// together after a barrier and ended by a barrier. Rank 0 prints one line per sample:
//   sample K T0 T1 SENT RECV
// T0 and T1 the sample's start and end (CLOCK_REALTIME seconds, so that a sampler of interface
// counters on the same machine can cut its series at them), SENT and RECV the payload bytes
// every rank's communicator moved during the sample, summed over ranks. The closing line says
// how the communicator cut the all-reduce (comm_sched.h: algorithm, segment size, steps in
// flight).
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_util.h"
#include "collectives/comm.h"
#include "collectives/comm_sched.h"

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int all_reduce(comm *c, float *buf, size_t n) {
    if (c->all_reduce_sum_f32(c, buf, n) == TS_OK) return 0;
    log_error("ring_bench: the all-reduce failed");
    MPI_Abort(MPI_COMM_WORLD, 75);
    return 1;
}

int main(int argc, char **argv) {
    comm *c = NULL;
    if (comm_init(&c, &argc, &argv, 60) != TS_OK) return 1;
    log_init(c->rank, c->size);
    int bytes_i = 0, samples = 5, reps = 1;
    if (argc < 2 || argc > 4 || bench_parse_int("BYTES", argv[1], 4, &bytes_i) ||
        (argc > 2 && bench_parse_int("SAMPLES", argv[2], 1, &samples)) ||
        (argc > 3 && bench_parse_int("REPS", argv[3], 1, &reps))) {
        if (c->rank == 0) fprintf(stderr, "usage: ring_bench BYTES [SAMPLES] [REPS]\n");
        c->finalize(c);
        return 2;
    }
    if (strcmp(c->name, "mpi") != 0) {
        fprintf(stderr, "ring_bench: run it under mpirun (got the %s communicator)\n", c->name);
        return 2;
    }
    c->timeout_s = 600;
    int p = c->size;
    size_t n = (size_t)bytes_i / sizeof(float);
    float *buf = malloc(n * sizeof(float));
    if (!buf) return 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(c->rank + 1);
    all_reduce(c, buf, n);
    for (size_t i = 0; i < n; i++)
        if (buf[i] != (float)(p * (p + 1) / 2)) {
            fprintf(stderr, "ring_bench: wrong sum at [%zu]\n", i);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
    memset(buf, 0, n * sizeof(float)); // sums of zeros stay zeros over every repetition
    all_reduce(c, buf, n);             // warm-up

    for (int s = 0; s < samples; s++) {
        uint64_t before[2] = {c->stats.bytes_sent, c->stats.bytes_recv}, moved[2], total[2];
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = wall_now();
        for (int k = 0; k < reps; k++)
            all_reduce(c, buf, n);
        MPI_Barrier(MPI_COMM_WORLD);
        double t1 = wall_now();
        moved[0] = c->stats.bytes_sent - before[0];
        moved[1] = c->stats.bytes_recv - before[1];
        MPI_Reduce(moved, total, 2, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
        if (c->rank == 0) {
            printf("sample %d %.6f %.6f %llu %llu\n", s, t0, t1, (unsigned long long)total[0],
                   (unsigned long long)total[1]);
            fflush(stdout);
        }
    }
    comm_sched sc;
    comm_ring_cut cut = {c->ring_segment, c->ring_window};
    comm_sched_init(&sc, COMM_ALL_REDUCE_SUM, n, sizeof(float), p, c->rank, 0, &cut);
    if (c->rank == 0)
        printf("schedule %s: %d ranks, %zu bytes, %d steps, segments of %zu bytes, %d in flight\n",
               comm_algo_name(sc.algo), p, n * sizeof(float), sc.steps,
               sc.seg_elems * sizeof(float), sc.window);
    free(buf);
    c->finalize(c);
    return 0;
}
