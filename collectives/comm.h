// comm.h — communicators: rank, size and collectives, every one with a deadline.
//
// Backends: "self" (a world of 1: collectives are copies or no-ops) and "mpi" (Open MPI, host
// memory). A collective that does not complete before the communicator's deadline returns
// TS_ERR_PEER after logging what it waited for; the caller exits with the "peer lost" code.
#ifndef TESSERA_COMM_H
#define TESSERA_COMM_H

#include <stddef.h>

#include "../runtime/common.h"

typedef struct comm comm;

struct comm {
    const char *name; // "self" or "mpi"
    int rank, size;
    double timeout_s; // deadline for each collective, seconds
    ts_status (*all_reduce_sum_f32)(comm *c, float *buf, size_t n);
    ts_status (*all_reduce_sum_f64)(comm *c, double *buf, size_t n);
    ts_status (*all_reduce_max_i32)(comm *c, int *buf, size_t n);
    ts_status (*broadcast)(comm *c, void *buf, size_t bytes, int root);
    ts_status (*barrier)(comm *c);
    void (*finalize)(comm *c); // MPI_Finalize for mpi; frees c
    void *impl;
};

// Pick the backend: "mpi" when tessera was built with MPI and started by mpirun (or when
// TESSERA_COMM=mpi), else "self". Calls MPI_Init_thread when MPI is used.
ts_status comm_init(comm **out, int *argc, char ***argv);

comm *comm_self_create(void);
#ifdef TESSERA_HAVE_MPI
ts_status comm_mpi_create(comm **out, int *argc, char ***argv);
#endif

#endif
