// env.h — the environment variables tessera reads, declared in one typed table (env.c).
//
// Configuration belongs in the config file; the environment only carries what the launcher
// knows (mpirun's rank variables) and debugging switches. Nothing else in tessera calls getenv:
// every read goes through this table, so every variable is documented (docs/environment.md) and
// checked the same way. Reading a name that is not in the table is a bug (ts_panic).
#ifndef TESSERA_ENV_H
#define TESSERA_ENV_H

#include "base/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ENV_STRING, // any text
    ENV_CHOICE, // one of `choices` ("a|b|c"); unset or empty: the first
    ENV_INT,    // a decimal integer
} env_type;

typedef struct {
    const char *name;
    env_type type;
    const char *choices; // ENV_CHOICE: "a|b|c"
    const char *help;
} env_knob;

extern const env_knob env_knobs[];
extern const int env_n_knobs;

// The variable's value, or NULL when unset.
const char *env_get(const char *name);
// ENV_CHOICE: the index of the value in the knob's choices (0 when unset or empty). Any other
// value logs "environment NAME=VALUE: expected one of a, b, c" and returns TS_ERR_INPUT.
ts_status env_get_choice(const char *name, int *index);
// ENV_INT: the value, or `fallback` when unset or empty. Text that is not an integer logs one
// error line and returns TS_ERR_INPUT.
ts_status env_get_int(const char *name, long fallback, long *value);

#ifdef __cplusplus
}
#endif

#endif
