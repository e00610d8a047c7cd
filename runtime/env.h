// env.h — the environment variables tessera reads, declared in one table (env.c).
//
// Configuration belongs in the config file; the environment only carries what the launcher
// knows (mpirun's rank variables) and debugging switches. env_get refuses (as a bug) a name that
// is not in the table, so every variable read is documented in docs/environment.md.
#ifndef TESSERA_ENV_H
#define TESSERA_ENV_H

typedef struct {
    const char *name;
    const char *help;
} env_knob;

extern const env_knob env_knobs[];
extern const int env_n_knobs;

// The variable's value, or NULL when unset. name must be in env_knobs.
const char *env_get(const char *name);

#endif
