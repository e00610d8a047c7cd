// registry.c — the table of backends (registry.h), filled at build time: an entry for each
// backend this build has, a stub for each it lacks.
#include "kernels/registry.h"

#include <string.h>

#ifdef TESSERA_HAVE_CUDA
#include "kernels/cuda/backend_cuda.h" // backend_entry_cuda
#define CUDA_ENTRY &backend_entry_cuda
#else
static const backend_entry cuda_missing = {
    .name = "cuda",
    .title = "CUDA",
    .preference = 1,
    .missing = "build where the CUDA toolkit is installed",
};
#define CUDA_ENTRY &cuda_missing
#endif

// in the order `tessera help` lists them; keep backend_registry_choices in step (test_registry
// checks it)
static const backend_entry *const registry[] = {&backend_entry_cpu, CUDA_ENTRY};

const char backend_registry_choices[] = "auto|cpu|cuda";

int backend_registry_count(void) { return (int)(sizeof registry / sizeof registry[0]); }

const backend_entry *backend_registry_at(int i) {
    return i >= 0 && i < backend_registry_count() ? registry[i] : NULL;
}

const backend_entry *backend_registry_find(const char *name) {
    for (int i = 0; i < backend_registry_count(); i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

const backend_entry *backend_registry_auto(int *devices) {
    const backend_entry *best = NULL;
    int best_n = 0;
    for (int i = 0; i < backend_registry_count(); i++) {
        const backend_entry *e = registry[i];
        if (e->missing || (best && e->preference <= best->preference)) continue;
        char why[256];
        const int n = e->probe(why, sizeof why);
        if (n > 0) best = e, best_n = n;
    }
    *devices = best_n;
    return best;
}
