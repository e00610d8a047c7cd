// expect.h — the one check macro of tessera's C tests. A failing EXPECT prints the file, line,
// condition and a printf-style message (prefixed with the rank in multi-rank tests: set
// g_expect_rank), counts the failure and goes on; main() returns g_failures != 0. After 20
// failures the lines stop (a broken loop would print thousands) but the count goes on.
// CHECK(cond) is EXPECT without a message.
#ifndef TESSERA_TEST_EXPECT_H
#define TESSERA_TEST_EXPECT_H

#include <stdio.h>

static int g_failures;
static int g_expect_rank = -1; // >= 0: this process is that rank of a multi-rank test

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (g_failures++ < 20) {                                                               \
                if (g_expect_rank >= 0) fprintf(stderr, "[rank %d] ", g_expect_rank);              \
                fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                    \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK(cond) EXPECT(cond, "check failed")

#endif
