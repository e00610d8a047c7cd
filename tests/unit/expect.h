// expect.h — the check macro of the single-process unit tests: a failing EXPECT prints the file,
// line, condition and a printf-style message, counts the failure and goes on; main() returns
// g_failures != 0.
#ifndef TESSERA_TEST_EXPECT_H
#define TESSERA_TEST_EXPECT_H

#include <stdio.h>

static int g_failures;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

#endif
