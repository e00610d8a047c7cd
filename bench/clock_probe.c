// clock_probe.c — measures the clock a core actually runs at (a benchmark tool, run by hand).
//
// A chain of dependent 64-bit multiplies takes 3 cycles per multiply on the x86 cores of the
// last decade (Intel since Sandy Bridge, AMD since Zen), so cycles per second follow from the
// time of a long chain. Adds would not do: recent Intel cores fold an add of a small immediate
// away at register renaming. The figure is the scalar clock of an idle core; under heavy AVX-512
// load a core may run somewhat slower, and on a shared machine another process can make the
// figure low (bench_cpu.py takes the best of several runs).
#include <stdio.h>
#include <time.h>

#define CHAIN   1000 // multiplies per asm block (the .rept count below)
#define BLOCKS  100000
#define LATENCY 3.0 // cycles per dependent imul
#define STR(x)  STR_(x)
#define STR_(x) #x

int main(void) {
    struct timespec a, b;
    long x = 1, one = 1;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < BLOCKS; i++)
            __asm__ volatile(".rept " STR(CHAIN) "\n\timulq %1, %0\n\t.endr" : "+r"(x) : "r"(one));
        clock_gettime(CLOCK_MONOTONIC, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        double ghz = LATENCY * CHAIN * BLOCKS / s / 1e9;
        if (ghz > best) best = ghz;
    }
    printf("%.3f\n", best + 0 * (double)x);
    return 0;
}
