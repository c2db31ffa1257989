/* A minimal test harness: CHECK records a failure and continues, so one run
 * reports every broken assertion; main returns non-zero if any failed. */
#ifndef IS_TESTING_H
#define IS_TESTING_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int testing_failures__;
static int testing_checks__;

#define CHECK(cond) do { \
    testing_checks__++; \
    if (!(cond)) { \
        testing_failures__++; \
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    } } while (0)

#define CHECK_INT(a, b) do { \
    long long a__ = (long long)(a), b__ = (long long)(b); \
    testing_checks__++; \
    if (a__ != b__) { \
        testing_failures__++; \
        fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
                __FILE__, __LINE__, #a, #b, a__, b__); \
    } } while (0)

#define CHECK_STR(a, b) do { \
    const char *a__ = (a), *b__ = (b); \
    testing_checks__++; \
    if (!a__ || !b__ || strcmp(a__, b__) != 0) { \
        testing_failures__++; \
        fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", \
                __FILE__, __LINE__, #a, #b, a__ ? a__ : "(null)", b__ ? b__ : "(null)"); \
    } } while (0)

#define RUN(test) do { fprintf(stderr, "-- %s\n", #test); test(); } while (0)

#define TESTING_DONE() do { \
    fprintf(stderr, "%d checks, %d failed\n", testing_checks__, testing_failures__); \
    return testing_failures__ ? 1 : 0; } while (0)

/* Reads a fixture file under $IS_FIXTURES into a malloc'd NUL-terminated
 * buffer; exits the test when it is missing, as that is a broken checkout. */
static inline char *testing_fixture(const char *rel, size_t *len) {
    const char *dir = getenv("IS_FIXTURES");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", rel);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "missing fixture %s\n", path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "read %s\n", path); exit(2); }
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

#ifdef IS_METRICS_H
#include <stdarg.h>
/* The value of the first rendered sample line starting with the printf-
 * formatted text (name and labels, up to the space), or -1 if none. */
static inline double testing_sample(is_metrics_t *reg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline double testing_sample(is_metrics_t *reg, const char *fmt, ...) {
    char start[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(start, sizeof start, fmt, ap);
    va_end(ap);
    is_buf_t out;
    is_buf_init(&out);
    double v = -1;
    if (is_metrics_render(reg, &out) == 0 && out.data) {
        const char *p = strstr(out.data, start);
        if (p) v = strtod(p + strlen(start), NULL);
    }
    is_buf_free(&out);
    return v;
}
#endif

#endif
