// balance.h — work that follows each rank's measured speed: the split of every step's global
// batch over ranks, re-balanced as speeds drift, the straggler deadline, and the queue of
// samples a late rank left undone.
//
// Every rank holds the same balance state: every input to it comes out of the step's collective
// (each rank's measurements, summed from one-hot slots, arrive bit-identical everywhere), and
// every decision is a pure function of it (design invariant 5 without an extra round trip).
//
// The samples of a step: the queue (samples a late rank gave back, in order) and then fresh
// samples from the cursor, global_batch in all; rank r takes list[offset[r] .. + share[r]).
// Without drops the queue stays empty and step s takes s*B .. (s+1)*B - 1 whatever the shares,
// so which samples a step sees never depends on speeds (design invariant 1).
//
// The speed model of a rank: a step takes fixed[r] + share[r] / speed[r] seconds of its own work
// (speed: samples/s of forward+backward; fixed: its per-step work that does not grow with the
// share — optimizer, bucket encoding). Shares minimise the slowest rank's predicted time, every
// rank keeping at least one sequence so it stays measured.
#ifndef TESSERA_BALANCE_H
#define TESSERA_BALANCE_H

#include <stdint.h>

#include "base/common.h"

typedef enum { BALANCE_WAIT = 0, BALANCE_DROP = 1 } balance_policy;

typedef struct {
    int on; // shares follow the measured speeds
    balance_policy policy;
    double threshold;       // re-balance when the predicted step time is this much above the best
    double smoothing;       // weight of the old estimate in each new one (0: the last step alone)
    double deadline;        // a rank is late past deadline x the expected step time of its work
    int late_steps;         // consecutive late steps that force a re-balance
    const double *declared; // balance.speeds: the starting speeds by rank, or NULL
} balance_params;

typedef struct {
    balance_params p;
    int world, global_batch;
    double *speed; // smoothed samples/s per rank (0: not measured yet)
    double *fixed; // smoothed seconds per step that do not grow with the share
    int *share, *offset;
    int *late;       // consecutive late steps per rank
    uint64_t cursor; // the next fresh sample
    uint64_t *queue; // samples given back by late ranks, taken first by the next step
    int n_queue;
    uint64_t *list; // the step's samples (global_batch of them), after balance_plan
    int measured;   // steps whose measurements went into the estimates
    uint64_t rebalances, drops, dropped; // shares changed; late ranks cut short; samples given back
    int slow_rank;                       // the rank that sets the pace with one sequence (-1: none)
    int slow_steps;                      // steps in a row it has
} balance;

// Equal shares (the first global_batch % world ranks one more), or shares from declared speeds;
// cursor at next_sample, the queue empty.
void balance_init(balance *b, const balance_params *p, int world, int global_batch,
                  uint64_t next_sample);
void balance_free(balance *b);

// Take these shares (summing to global_batch) and their offsets.
void balance_set_shares(balance *b, const int *share);

// The step's samples into list: the queue, then fresh ones from the cursor.
void balance_plan(balance *b);

// Below this much over the expected step time no rank counts as late: the scheduler's jitter on
// a shared machine, not a slow node.
#define BALANCE_LATE_FLOOR_S 0.05

// The slowest rank's expected time, fixed + share / speed (0 while a speed is unknown): what
// every rank waits for.
double balance_makespan_s(const balance *b, const int *share);

// After the step's collective, with every rank's measurements (the same on every rank): done[r]
// samples rank r finished (the first done[r] of its range), fb[r] its forward+backward seconds,
// fixed[r] its other work, late[r] 1 when it passed the deadline. The samples not done go to the
// queue (in list order), the cursor moves past the fresh ones, the estimates are updated and the
// shares of the next step chosen. measure = 0 keeps the estimates (a step that paid start-up
// costs). verbose: the decisions are logged (one rank). Returns the samples used.
int balance_commit(balance *b, const double *done, const double *fb, const double *fixed,
                   const double *late, int measure, int step, int verbose, const char *hosts,
                   int host_max);

// A hash of what the ranks must agree on: shares, the queue, the cursor.
uint64_t balance_digest(const balance *b);

// Shares minimising the predicted makespan for speeds v and fixed costs f (every rank at least
// one sequence; ties to the lower rank). v[r] must be > 0.
void balance_optimal(int world, int global_batch, const double *v, const double *f, int *share);

// Parse balance.speeds ("1,1,0.5,0.25": relative speeds by rank) into out[world]: 0 when the
// text is empty, 1 when it holds world positive numbers, -1 otherwise (a count that differs from
// world: n_out set to the count; a bad number: n_out -1).
int balance_parse_speeds(const char *text, int world, double *out, int *n_out);

#endif
