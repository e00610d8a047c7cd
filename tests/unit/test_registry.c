// test_registry.c — the backend registry (kernels/registry.h): its names agree with run.backend's
// choices, lookups, "auto", and every backend usable here comes out of its constructor complete:
// every entry of the struct filled, host_memory as its memory is, destroy working.
#include <stdio.h>
#include <string.h>

#include "kernels/registry.h"
#include "tests/unit/expect.h"

// every function pointer of the struct, by name, for the completeness check
#define BACKEND_ENTRIES(X)                                                                         \
    X(destroy)                                                                                     \
    X(alloc)                                                                                       \
    X(free)                                                                                        \
    X(zero)                                                                                        \
    X(to_device)                                                                                   \
    X(to_host)                                                                                     \
    X(synchronize)                                                                                 \
    X(mem_free)                                                                                    \
    X(act_to_host)                                                                                 \
    X(act_to_device)                                                                               \
    X(params_from_master)                                                                          \
    X(embed_forward)                                                                               \
    X(embed_backward)                                                                              \
    X(layernorm_forward)                                                                           \
    X(residual_layernorm_forward)                                                                  \
    X(layernorm_backward)                                                                          \
    X(matmul_forward)                                                                              \
    X(matmul_gelu_forward)                                                                         \
    X(matmul_backward)                                                                             \
    X(attention_state_bytes)                                                                       \
    X(attention_forward)                                                                           \
    X(attention_backward)                                                                          \
    X(gelu_forward)                                                                                \
    X(gelu_backward)                                                                               \
    X(add)                                                                                         \
    X(add_inplace)                                                                                 \
    X(classifier)                                                                                  \
    X(adamw)                                                                                       \
    X(sum_squares)                                                                                 \
    X(scale)

static void check_complete(const backend *be, const backend_entry *e) {
#define CHECK_ENTRY(f) EXPECT(be->f != NULL, "%s backend: entry " #f " is not filled", e->name);
    BACKEND_ENTRIES(CHECK_ENTRY)
#undef CHECK_ENTRY
    EXPECT(strcmp(be->name, e->name) == 0, "backend from entry %s calls itself %s", e->name,
           be->name);
    EXPECT(be->device && be->device[0], "%s backend: no device description", e->name);
    EXPECT(be->ctx != NULL, "%s backend: no context", e->name);
    // memory round trip, and host memory exactly when the backend says so
    char *p = be->alloc(be, 64), host[64];
    for (int i = 0; i < 64; i++)
        host[i] = (char)i;
    be->to_device(be, p, host, sizeof host);
    memset(host, 0, sizeof host);
    be->to_host(be, host, p, sizeof host);
    int same = 1;
    for (int i = 0; i < 64; i++)
        same &= host[i] == (char)i;
    EXPECT(same, "%s backend: to_device/to_host do not round-trip", e->name);
    if (be->host_memory) EXPECT(p[5] == 5, "%s backend: host_memory, but not readable", e->name);
    be->free(be, p);
}

int main(void) {
    log_init(0, 1);
    // run.backend's choices are "auto" and the registry's names, in table order
    char want[256] = "auto";
    for (int i = 0; i < backend_registry_count(); i++) {
        strcat(want, "|");
        strcat(want, backend_registry_at(i)->name);
    }
    EXPECT(strcmp(backend_registry_choices, want) == 0, "choices \"%s\", names give \"%s\"",
           backend_registry_choices, want);
    EXPECT(backend_registry_at(-1) == NULL && backend_registry_at(backend_registry_count()) == NULL,
           "entries outside the table");
    EXPECT(backend_registry_find("cpu") == &backend_entry_cpu, "cpu not found");
    EXPECT(backend_registry_find("gpu") == NULL, "an unknown name was found");

    // auto: a usable backend, none usable of higher preference
    int devices = 0;
    const backend_entry *a = backend_registry_auto(&devices);
    EXPECT(a != NULL && devices >= 1, "auto found nothing usable");
    for (int i = 0; a && i < backend_registry_count(); i++) {
        const backend_entry *e = backend_registry_at(i);
        char why[256] = "";
        const int n = e->missing ? 0 : e->probe(why, sizeof why);
        printf("backend %-6s %s, %d device%s%s%s\n", e->name, e->missing ? "not built" : "built", n,
               n == 1 ? "" : "s", why[0] ? ": " : "", why);
        EXPECT(e->missing || n > 0 || why[0], "%s: unusable without a reason", e->name);
        EXPECT(e->missing || (e->probe && e->create), "%s: built without probe or create", e->name);
        EXPECT(!e->missing || (!e->probe && !e->create), "%s: missing, yet callable", e->name);
        if (n > 0) EXPECT(e->preference <= a->preference, "auto passed over %s", e->name);
        if (n <= 0) continue;
        // every usable backend, in every precision it may be asked for
        static const ts_dtype modes[] = {TS_F32, TS_BF16};
        for (int m = 0; m < 2; m++) {
            const backend *be = NULL;
            EXPECT(e->create(&be, modes[m], 0) == TS_OK && be, "%s: create (%s) failed", e->name,
                   ts_dtype_name(modes[m]));
            if (!be) continue;
            check_complete(be, e);
            be->destroy(be);
        }
    }
    EXPECT(backend_entry_cpu.create != NULL && backend_entry_cpu.probe(NULL, 0) == 1,
           "the CPU backend is always usable");
    if (g_failures) {
        printf("test_registry: %d check(s) FAILED\n", g_failures);
        return 1;
    }
    printf("test_registry: all checks passed\n");
    return 0;
}
