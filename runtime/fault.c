// fault.c — fault injection (see fault.h).
#include "runtime/fault.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/env.h"

static struct {
    int armed, rank, step;
    char moment[16], action[8];
} g_fault;

static const char *const fault_actions[] = {"kill", "stop", "panic", "exit70"};

static int fault_action_known(const char *action) {
    for (size_t i = 0; i < sizeof fault_actions / sizeof fault_actions[0]; i++)
        if (strcmp(action, fault_actions[i]) == 0) return 1;
    return 0;
}

ts_status fault_init(int rank) {
    const char *spec = env_get("TESSERA_FAULT");
    memset(&g_fault, 0, sizeof g_fault);
    if (!spec || !*spec) return TS_OK;
    int r, s;
    char moment[16], action[8];
    if (sscanf(spec, "%d:%d:%15[a-z]:%7[a-z0-9]", &r, &s, moment, action) != 4 || r < 0 || s < 1 ||
        (strcmp(moment, "before") && strcmp(moment, "inside") && strcmp(moment, "after") &&
         strcmp(moment, "ckpt")) ||
        !fault_action_known(action)) {
        log_error("TESSERA_FAULT=\"%s\": expected RANK:STEP:MOMENT:ACTION with MOMENT "
                  "before|inside|after|ckpt and ACTION kill|stop|panic|exit70 (e.g. "
                  "1:5:inside:kill)",
                  spec);
        return TS_ERR_INPUT;
    }
    if (r != rank) return TS_OK;
    g_fault.armed = 1;
    g_fault.rank = r;
    g_fault.step = s;
    snprintf(g_fault.moment, sizeof g_fault.moment, "%s", moment);
    snprintf(g_fault.action, sizeof g_fault.action, "%s", action);
    return TS_OK;
}

void fault_point(const char *moment, int step) {
    if (!g_fault.armed || step != g_fault.step || strcmp(moment, g_fault.moment) != 0) return;
    g_fault.armed = 0;
    if (strcmp(g_fault.action, "kill") == 0 || strcmp(g_fault.action, "stop") == 0) {
        log_all("fault injection: rank %d %ss itself at step %d (%s)", g_fault.rank, g_fault.action,
                step, moment);
        raise(strcmp(g_fault.action, "kill") == 0 ? SIGKILL : SIGSTOP);
        return;
    }
    log_all("fault injection: rank %d: %s at step %d (%s)", g_fault.rank, g_fault.action, step,
            moment);
    // panic: the one way to die (error line, status file "internal", exit 70)
    if (strcmp(g_fault.action, "panic") == 0)
        ts_fatal(TS_ERR_INTERNAL, "internal error injected at step %d (%s)", step, moment);
    _exit(TS_EXIT_INTERNAL); // exit70
}
