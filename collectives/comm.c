// comm.c — comm_init: picks the communicator backend for this process.
//
// The choice, in order:
//   TESSERA_COMM=self  -> "self" (a world of 1), even under mpirun
//   TESSERA_COMM=mpi   -> "mpi" (an error when tessera was built without MPI)
//   started by mpirun  -> "mpi"; Open MPI's launcher exports OMPI_COMM_WORLD_SIZE to every rank,
//                         and PMIx-based launchers export PMIX_RANK
//   otherwise          -> "self"
// Calling MPI_Init in a process that was not started by a launcher would make it a singleton
// MPI world, which only costs start-up time, so plain runs stay on "self".
#include "comm.h"

#include <stdlib.h>
#include <string.h>

#include "../runtime/env.h"

static int comm_started_by_launcher(void) {
    return env_get("OMPI_COMM_WORLD_SIZE") != NULL || env_get("PMIX_RANK") != NULL;
}

ts_status comm_init(comm **out, int *argc, char ***argv) {
    *out = NULL;
    const char *forced = env_get("TESSERA_COMM");
    int want_mpi;
    if (forced && forced[0] != '\0') {
        if (strcmp(forced, "self") == 0) {
            want_mpi = 0;
        } else if (strcmp(forced, "mpi") == 0) {
            want_mpi = 1;
        } else {
            log_error("environment TESSERA_COMM=%s: expected \"self\" or \"mpi\"", forced);
            return TS_ERR_INPUT;
        }
    } else {
        want_mpi = comm_started_by_launcher();
    }

    if (!want_mpi) {
        (void)argc, (void)argv;
        *out = comm_self_create();
        return TS_OK;
    }
#ifdef TESSERA_HAVE_MPI
    return comm_mpi_create(out, argc, argv);
#else
    // N copies of a world-of-1 trainer would each train alone and overwrite each other's
    // checkpoints, so refuse rather than fall back to "self".
    if (forced)
        log_error("environment TESSERA_COMM=mpi: this tessera was built without MPI "
                  "(install libopenmpi-dev and rebuild, or set TESSERA_COMM=self)");
    else
        log_error("started by mpirun, but this tessera was built without MPI "
                  "(install libopenmpi-dev and rebuild, or set TESSERA_COMM=self)");
    return TS_ERR_INPUT;
#endif
}
