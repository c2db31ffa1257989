/* Helpers shared by the C benchmarks: a monotonic clock, a small
 * deterministic random generator (so every run feeds the same chunk sizes),
 * positive integer arguments, and the "figure" lines bench/run collects.
 *
 * Benchmarks print; they never judge. A figure line is
 *   FIGURE <name> <value> <unit>
 * so the summary table can be built without parsing prose. */
#ifndef IS_BENCH_H
#define IS_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds this process used, all threads. */
static inline double bench_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: fast, and the same sequence on every run. */
static inline uint64_t bench_rand(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [lo, hi]. */
static inline size_t bench_between(uint64_t *state, size_t lo, size_t hi) {
    return lo + (size_t)(bench_rand(state) % (uint64_t)(hi - lo + 1));
}

/* argv[i] as a positive count, or def when absent; exits on garbage so a
 * typo never produces a plausible-looking figure. */
static inline long bench_arg(int argc, char **argv, int i, long def) {
    if (argc <= i) return def;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*end || v <= 0) {
        fprintf(stderr, "%s: argument %d must be a positive integer, not \"%s\"\n", argv[0], i, argv[i]);
        exit(2);
    }
    return v;
}

static inline void bench_figure(const char *name, double value, const char *unit) {
    printf("FIGURE %s %.6g %s\n", name, value, unit);
}

/* The benchmark's own scratch memory comes from libc, not is_malloc, so
 * that is_alloc_used() shows only what the modules under test hold. */
static inline void *bench_xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

#endif
