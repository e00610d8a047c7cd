// test_balance_state.c — the balancing state a resume reads from a checkpoint's /balance group
// (runtime/train_balance.c): what a good one gives back, and one error line for each way a
// damaged or hostile one can be wrong.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/train_internal.h"
#include "tests/unit/expect.h"

enum { W = 3, GB = 12 };

typedef struct {
    uint64_t queue[GB + 2];
    int n_queue;
    int32_t share[W + 1];
    double speed[W + 1], fixed[W + 1];
    int n_share, n_speed, n_fixed;
    int no_queue;
} state_spec;

static void good(state_spec *x) {
    memset(x, 0, sizeof *x);
    x->queue[0] = 40, x->queue[1] = 41, x->queue[2] = 47;
    x->n_queue = 3;
    x->share[0] = 6, x->share[1] = 4, x->share[2] = 2;
    x->speed[0] = 60, x->speed[1] = 40, x->speed[2] = 20;
    x->fixed[0] = 0.01, x->fixed[1] = 0.02, x->fixed[2] = 0;
    x->n_share = x->n_speed = x->n_fixed = W;
}

// the state as a checkpoint holds it, checked as the holder checks it (next_sample 48)
static ts_status check(const state_spec *x, const char *name, int world, int saved_world,
                       uint64_t *queue, int *nq, int *share, double *speed, int *same) {
    unsigned char *blob = NULL;
    size_t len = 0;
    if (!x->no_queue)
        CHECK(codec_state_append(&blob, &len, "queue", x->queue,
                                 (size_t)x->n_queue * sizeof(uint64_t)) == TS_OK);
    CHECK(codec_state_append(&blob, &len, "share", x->share, (size_t)x->n_share * 4) == TS_OK);
    CHECK(codec_state_append(&blob, &len, "speed", x->speed, (size_t)x->n_speed * 8) == TS_OK);
    CHECK(codec_state_append(&blob, &len, "fixed", x->fixed, (size_t)x->n_fixed * 8) == TS_OK);
    size_t lens[1] = {len};
    ckpt_codec_state s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "%s", name);
    s.world = 1;
    s.all = blob;
    s.lens = lens;
    double fixed[W];
    log_set_quiet_errors(1);
    ts_status st = train_balance_check(&s, 48, saved_world, world, GB, queue, nq, share, speed,
                                       fixed, same, "ckpt/step-00000004");
    log_set_quiet_errors(0);
    free(blob);
    return st;
}

int main(void) {
    uint64_t queue[GB];
    int nq, share[W], same;
    double speed[W];
    state_spec x;

    // good: the queue, and at the same world size the shares and speeds
    good(&x);
    ts_status st = check(&x, "balance", W, W, queue, &nq, share, speed, &same);
    EXPECT(st == TS_OK && nq == 3 && queue[2] == 47 && same && share[0] == 6 && speed[2] == 20,
           "a good state: %s, queue of %d, same %d", ts_status_name(st), nq, same);
    // another world size: the queue only (the speeds are measured again)
    st = check(&x, "balance", 2, W, queue, &nq, share, speed, &same);
    EXPECT(st == TS_OK && nq == 3 && !same, "another world size: %s, same %d", ts_status_name(st),
           same);
    // no state (a checkpoint from before balancing): nothing given back
    st = check(&x, "", W, W, queue, &nq, share, speed, &same);
    EXPECT(st == TS_OK && nq == 0 && !same, "no state: %s", ts_status_name(st));

    // refused, each with one error line
    static const char *const bad[] = {
        "queue missing",
        "queue longer than the global batch",
        "queue not increasing",
        "queue reaching next_sample",
        "shares not summing to the global batch",
        "a share of 0",
        "a denormal speed",
        "a negative speed",
        "a NaN fixed time",
        "2 shares for 3 ranks",
        "another state's name",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        good(&x);
        const char *name = "balance";
        switch (k) {
        case 0: x.no_queue = 1; break;
        case 1: x.n_queue = GB + 1; break;
        case 2: x.queue[2] = 41; break;
        case 3: x.queue[2] = 48; break;
        case 4: x.share[2] = 3; break;
        case 5: x.share[1] = 0, x.share[0] = 10; break;
        case 6: x.speed[1] = 1e-300; break;
        case 7: x.speed[1] = -1; break;
        case 8: x.fixed[0] = NAN; break;
        case 9: x.n_share = 2; break;
        case 10: name = "int8"; break;
        }
        st = check(&x, name, W, W, queue, &nq, share, speed, &same);
        EXPECT(st == TS_ERR_INPUT, "%s: accepted (%s)", bad[k], ts_status_name(st));
    }
    if (g_failures) return 1;
    printf("test_balance_state: all checks passed\n");
    return 0;
}
