// comm_bench.c — all-reduce bandwidth of tessera's MPI communicator beside MPI_Allreduce.
//
//   mpirun -np P comm_bench [MAX_BYTES]
//
// For message sizes 4 B, 16 B, ... up to MAX_BYTES (default 64 MiB), in floats, it times our
// all-reduce (collectives/comm_mpi.c: point-to-point schedules) and Open MPI's MPI_Allreduce on
// the same buffer in the same run, alternating between the two so that both see the same
// machine state. A sample is `reps` back-to-back all-reduces (more for small messages, so a
// sample lasts a few milliseconds), started together after a barrier; its time is the slowest
// rank's, divided by reps. The table shows the median of the samples, as
//   algbw = bytes / time,   busbw = algbw * 2 (p - 1) / p
// the bus bandwidth of nccl-tests: the rate at which each rank's link moves data in a ring
// all-reduce, comparable across world sizes. Before timing each size, our result is checked
// against the exact sum.
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/comm.h"
#include "collectives/comm_sched.h"

#define SAMPLES 9

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// one sample: reps all-reduces, seconds per all-reduce on the slowest rank
static double bench_sample(comm *c, int ours, float *buf, size_t n, int reps) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    for (int k = 0; k < reps; k++) {
        if (ours) {
            if (c->all_reduce_sum_f32(c, buf, n) != TS_OK) MPI_Abort(MPI_COMM_WORLD, 75);
        } else {
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        }
    }
    double t = (MPI_Wtime() - t0) / reps, slowest = 0;
    MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return slowest;
}

int main(int argc, char **argv) {
    size_t max_bytes = argc > 1 ? strtoull(argv[1], NULL, 10) : (size_t)64 << 20;
    comm *c = NULL;
    if (comm_init(&c, &argc, &argv, 60) != TS_OK) return 1;
    if (strcmp(c->name, "mpi") != 0) {
        fprintf(stderr, "comm_bench: run it under mpirun (got the %s communicator)\n", c->name);
        return 2;
    }
    log_init(c->rank, c->size);
    c->timeout_s = 120;
    int p = c->size;
    float *buf = malloc(max_bytes);
    if (!buf) return 1;

    if (c->rank == 0) {
        printf("all-reduce (sum, float), %d ranks; time = median of %d samples, slowest rank\n", p,
               SAMPLES);
        printf("%10s  %-18s  %10s %9s  %10s %9s  %7s\n", "bytes", "ours: algorithm", "ours us",
               "busbw", "MPI us", "busbw", "ratio");
    }
    for (size_t bytes = 4; bytes <= max_bytes; bytes *= 4) {
        size_t n = bytes / sizeof(float);
        // check: rank r contributes r + 1 everywhere
        for (size_t i = 0; i < n; i++)
            buf[i] = (float)(c->rank + 1);
        if (c->all_reduce_sum_f32(c, buf, n) != TS_OK) return 75;
        for (size_t i = 0; i < n; i++)
            if (buf[i] != (float)(p * (p + 1) / 2)) {
                fprintf(stderr, "comm_bench: wrong sum at [%zu] for %zu bytes\n", i, bytes);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
        memset(buf, 0, bytes); // sums of zeros stay zeros over every repetition

        int reps = (int)(((size_t)4 << 20) / bytes);
        reps = reps < 1 ? 1 : reps > 500 ? 500 : reps;
        double ours[SAMPLES], theirs[SAMPLES];
        for (int s = 0; s < SAMPLES; s++) {
            ours[s] = bench_sample(c, 1, buf, n, reps);
            theirs[s] = bench_sample(c, 0, buf, n, reps);
        }
        qsort(ours, SAMPLES, sizeof(double), cmp_double);
        qsort(theirs, SAMPLES, sizeof(double), cmp_double);
        double t_ours = ours[SAMPLES / 2], t_mpi = theirs[SAMPLES / 2];
        double factor = 2.0 * (p - 1) / p;
        double bw_ours = (double)bytes / t_ours * factor / 1e9;
        double bw_mpi = (double)bytes / t_mpi * factor / 1e9;
        comm_sched s;
        comm_sched_init(&s, COMM_ALL_REDUCE_SUM, n, sizeof(float), p, c->rank, 0, NULL);
        if (c->rank == 0)
            printf("%10zu  %-18s  %10.1f %9.3f  %10.1f %9.3f  %7.2f\n", bytes,
                   comm_algo_name(s.algo), t_ours * 1e6, bw_ours, t_mpi * 1e6, bw_mpi,
                   t_mpi / t_ours);
        fflush(stdout);
    }
    if (c->rank == 0) printf("busbw in GB/s; ratio = MPI time / ours (above 1: ours is faster)\n");
    free(buf);
    c->finalize(c);
    return 0;
}
