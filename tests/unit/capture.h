// capture.h — the log lines a piece of code under test writes, captured instead of shown: the
// unit tests check error lines by their text and count.
//
//   capture_begin();  ...code that logs...;  char *text = capture_end();  (free it)
#ifndef TESSERA_TEST_CAPTURE_H
#define TESSERA_TEST_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/common.h"

static FILE *g_capture;

// every log line from now on goes to a temporary file; errors are not shown on stderr
static inline void capture_begin(void) {
    g_capture = tmpfile();
    log_set_file(g_capture);
    log_set_quiet_errors(1); // the lines are checked here, not shown
}

// the lines captured since capture_begin (malloc'ed, NUL-terminated); logging as before
static inline char *capture_end(void) {
    log_set_file(NULL);
    log_set_quiet_errors(0);
    long n = ftell(g_capture);
    rewind(g_capture);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, g_capture);
    b[got] = 0;
    fclose(g_capture);
    return b;
}

// how many times sub occurs in s
static inline int count_substr(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
        n++;
    return n;
}

#endif
