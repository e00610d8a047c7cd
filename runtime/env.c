// env.c — the table of environment variables tessera reads (see env.h).
#include "env.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

const env_knob env_knobs[] = {
    {"TESSERA_LOG", "log level: error, warn, info (default) or debug (adds a trace line per "
                    "frame when an error propagates)"},
    {"TESSERA_HOST", "this rank's host name for checkpoints (<run_dir>/ckpt/<host>, which ranks "
                     "write replicas); default: gethostname(). Lets one machine play several "
                     "hosts"},
    {"TESSERA_FAULT", "fault injection for tests: RANK:STEP:MOMENT:ACTION makes that rank "
                      "SIGKILL or SIGSTOP itself (see runtime/fault.h)"},
    {"TESSERA_COMM", "communicator: mpi or self; default: mpi when started by mpirun"},
    {"OMPI_COMM_WORLD_SIZE", "set by Open MPI's mpirun: tells tessera it runs under mpirun"},
    {"PMIX_RANK", "set by PMIx launchers: tells tessera it runs under a launcher"},
    {"OMPI_COMM_WORLD_LOCAL_RANK", "set by mpirun: this rank's index on its host, to pick a GPU"},
    {"OMPI_COMM_WORLD_LOCAL_SIZE", "set by mpirun: ranks on this host, to share its cores "
                                   "when run.threads = 0"},
};
const int env_n_knobs = (int)(sizeof env_knobs / sizeof env_knobs[0]);

const char *env_get(const char *name) {
    for (int i = 0; i < env_n_knobs; i++)
        if (strcmp(env_knobs[i].name, name) == 0) return getenv(name);
    ts_panic(__FILE__, __LINE__, "environment variable read without an entry in env_knobs");
}
