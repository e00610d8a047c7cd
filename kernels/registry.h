// registry.h — the backends this build of tessera knows, by name: how to tell whether one is
// usable here, and how to make one. The trainer picks `run.backend` through it, so adding a
// backend touches kernels/ and CMake only (docs/architecture.md, "A new backend").
//
// The table (registry.c) is filled at build time: each backend's CMake target defines
// TESSERA_HAVE_<NAME> for what links it, and registry.c lists the entry of every backend that
// was built, or a stub saying how to build it (so `run.backend = cuda` in a build without CUDA
// says what to do). The table's order is the order `tessera help` lists the backends in; "auto"
// takes the usable backend of highest preference.
#ifndef TESSERA_REGISTRY_H
#define TESSERA_REGISTRY_H

#include <stddef.h>

#include "base/common.h"
#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;  // as in run.backend: "cpu", "cuda"
    const char *title; // as in messages: "CPU", "CUDA"
    int preference;    // "auto" takes the usable backend with the highest (ties: table order)
    // How many devices of this kind are usable on this host (>= 1), or 0 with a one-line reason
    // in why ("no CUDA device is usable on this host"). Cheap, and it starts nothing.
    int (*probe)(char *why, size_t why_len);
    // A new backend on device 0 .. probe()-1, computing in act_dtype where the backend offers a
    // choice (CUDA: TS_BF16 or TS_F32; the CPU computes in its own type whatever is asked).
    // Freed by be->destroy. Errors: one logged line; TS_ERR_INPUT when the user asked for
    // something this machine cannot do, TS_ERR_SYSTEM otherwise.
    ts_status (*create)(const backend **out, ts_dtype act_dtype, int device);
    // NULL for a backend this build has; otherwise probe and create are NULL and this says how
    // to get it ("build where the CUDA toolkit is installed")
    const char *missing;
} backend_entry;

// the entries, in table order: i in 0 .. backend_registry_count()-1
int backend_registry_count(void);
const backend_entry *backend_registry_at(int i);
// the entry named `name`, or NULL when tessera knows no such backend
const backend_entry *backend_registry_find(const char *name);
// "auto": the built backend of highest preference whose probe finds a device, with that count
// in *devices; NULL when none is usable (cannot happen while the CPU backend is built)
const backend_entry *backend_registry_auto(int *devices);

// run.backend's choices for the config table: "auto|" and every name, in table order
extern const char backend_registry_choices[];

// the entries each backend provides (registry.c lists those that were built)
extern const backend_entry backend_entry_cpu;

#ifdef __cplusplus
}
#endif

#endif
