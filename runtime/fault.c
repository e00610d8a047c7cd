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

ts_status fault_init(int rank) {
    const char *spec = env_get("TESSERA_FAULT");
    memset(&g_fault, 0, sizeof g_fault);
    if (!spec || !*spec) return TS_OK;
    int r, s;
    char moment[16], action[8];
    if (sscanf(spec, "%d:%d:%15[a-z]:%7[a-z]", &r, &s, moment, action) != 4 || r < 0 || s < 1 ||
        (strcmp(moment, "before") && strcmp(moment, "inside") && strcmp(moment, "after") &&
         strcmp(moment, "ckpt")) ||
        (strcmp(action, "kill") && strcmp(action, "stop"))) {
        log_error("TESSERA_FAULT=\"%s\": expected RANK:STEP:MOMENT:ACTION with MOMENT "
                  "before|inside|after|ckpt and ACTION kill|stop (e.g. 1:5:inside:kill)",
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
    log_all("fault injection: rank %d %ss itself at step %d (%s)", g_fault.rank, g_fault.action,
            step, moment);
    raise(strcmp(g_fault.action, "kill") == 0 ? SIGKILL : SIGSTOP);
}
