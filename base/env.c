// env.c — the table of environment variables tessera reads (see env.h).
#include "base/env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const env_knob env_knobs[] = {
    {"TESSERA_LOG", ENV_CHOICE, "info|error|warn|debug",
     "log level: error, warn, info (default) or debug (adds a trace line per frame when an "
     "error propagates)"},
    {"TESSERA_HOST", ENV_STRING, NULL,
     "this rank's host name for checkpoints (<run_dir>/ckpt/<host>, which ranks write "
     "replicas); default: gethostname(). Lets one machine play several hosts"},
    {"TESSERA_FAULT", ENV_STRING, NULL,
     "fault injection for tests: RANK:STEP:MOMENT:ACTION (see runtime/fault.h)"},
    {"TESSERA_COMM", ENV_CHOICE, "|self|mpi",
     "communicator: mpi or self; default: mpi when started by mpirun"},
    {"TESSERA_COMM_SEGMENT", ENV_INT, NULL,
     "bytes per step of the ring collectives (the same on every rank); default: 524288 when "
     "every rank is on one host, else 64512"},
    {"TESSERA_COMM_WINDOW", ENV_INT, NULL,
     "ring steps a rank keeps in flight, 1 to 32; default: 2 when every rank is on one host, "
     "else 50 ms of the rate measured on the links (2 to 32; 8 before the first measurement)"},
    {"TESSERA_ATTENTION", ENV_CHOICE, "auto|flash|simple",
     "CUDA attention kernels: auto (default), flash or simple"},
    {"OMPI_COMM_WORLD_SIZE", ENV_STRING, NULL,
     "set by Open MPI's mpirun: tells tessera it runs under mpirun"},
    {"PMIX_RANK", ENV_INT, NULL, "set by PMIx launchers: tells tessera it runs under a launcher"},
    {"OMPI_COMM_WORLD_LOCAL_RANK", ENV_INT, NULL,
     "set by mpirun: this rank's index on its host, to pick a GPU"},
    {"OMPI_COMM_WORLD_LOCAL_SIZE", ENV_INT, NULL,
     "set by mpirun: ranks on this host, to share its cores when run.threads = 0"},
};
const int env_n_knobs = (int)(sizeof env_knobs / sizeof env_knobs[0]);

static const env_knob *env_find(const char *name, env_type type) {
    for (int i = 0; i < env_n_knobs; i++)
        if (strcmp(env_knobs[i].name, name) == 0) {
            if (env_knobs[i].type != type && type != ENV_STRING)
                ts_panic(__FILE__, __LINE__, "environment variable read with the wrong type");
            return &env_knobs[i];
        }
    ts_panic(__FILE__, __LINE__, "environment variable read without an entry in env_knobs");
}

const char *env_get(const char *name) {
    env_find(name, ENV_STRING);
    return getenv(name);
}

ts_status env_get_choice(const char *name, int *index) {
    const env_knob *k = env_find(name, ENV_CHOICE);
    const char *v = getenv(name);
    *index = 0;
    if (!v || !*v) return TS_OK;
    size_t len = strlen(v);
    int i = 0;
    char expected[256] = "";
    size_t used = 0;
    for (const char *c = k->choices;; i++) {
        const char *bar = strchr(c, '|');
        size_t n = bar ? (size_t)(bar - c) : strlen(c);
        if (n == len && strncmp(c, v, n) == 0) {
            *index = i;
            return TS_OK;
        }
        if (n > 0 && used < sizeof expected)
            used += (size_t)snprintf(expected + used, sizeof expected - used, "%s\"%.*s\"",
                                     used ? " or " : "", (int)n, c);
        if (!bar) break;
        c = bar + 1;
    }
    log_error("environment %s=%s: expected %s", name, v, expected);
    return TS_ERR_INPUT;
}

ts_status env_get_int(const char *name, long fallback, long *value) {
    env_find(name, ENV_INT);
    const char *v = getenv(name);
    *value = fallback;
    if (!v || !*v) return TS_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0') {
        log_error("environment %s=%s: expected an integer", name, v);
        return TS_ERR_INPUT;
    }
    *value = x;
    return TS_OK;
}
