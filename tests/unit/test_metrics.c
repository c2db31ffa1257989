/* The metrics registry and its Prometheus text output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_metrics.h"
#include "testing.h"

/* The registry's text, valid until the next call; NULL frees it. */
static char *render(is_metrics_t *r) {
    static is_buf_t out;
    is_buf_free(&out);
    if (!r) return NULL;
    CHECK_INT(is_metrics_render(r, &out), IS_OK);
    return out.data ? out.data : "";
}

static void test_format_double(void) {
    /* What Go's strconv.FormatFloat(v, 'g', -1, 64) prints. */
    static const struct { double v; const char *go; } cases[] = {
        { 0, "0" }, { 1, "1" }, { -1, "-1" }, { 0.005, "0.005" }, { 0.1, "0.1" },
        { 2.5, "2.5" }, { 60, "60" }, { 3600, "3600" }, { 100000, "100000" },
        { 1e6, "1e+06" }, { 1234567, "1.234567e+06" }, { 1e-8, "1e-08" },
        { 1e-5, "1e-05" }, { 0.0001, "0.0001" }, { 1e3, "1000" }, { 1.7643e9, "1.7643e+09" },
        { 0.30000000000000004, "0.30000000000000004" }, { 12.345, "12.345" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_buf_t b;
        is_buf_init(&b);
        CHECK_INT(is_metrics_format_double(&b, cases[i].v), IS_OK);
        CHECK_STR(b.data, cases[i].go);
        is_buf_free(&b);
    }
    is_buf_t b;
    is_buf_init(&b);
    is_metrics_format_double(&b, INFINITY);
    is_metrics_format_double(&b, -INFINITY);
    is_metrics_format_double(&b, NAN);
    CHECK_STR(b.data, "+Inf-InfNaN");
    is_buf_free(&b);
}

static void test_counter_and_gauge(void) {
    is_metrics_t r;
    is_metrics_init(&r);
    is_metric_t *c, *g, *again;
    const char *const labels[] = { "controller", "result", NULL };
    CHECK_INT(is_metrics_counter(&r, "controller_runtime_reconcile_total",
                                 "Total number of reconciliations per controller", labels, &c), IS_OK);
    CHECK_INT(is_metrics_gauge(&r, "active_workers", "Workers \\ in use\nnow", NULL, &g), IS_OK);
    /* The same family again is the same object; a different shape is refused. */
    CHECK_INT(is_metrics_counter(&r, "controller_runtime_reconcile_total", "other help", labels, &again), IS_OK);
    CHECK(again == c);
    CHECK_INT(is_metrics_gauge(&r, "controller_runtime_reconcile_total", "x", labels, &again), IS_EINVAL);
    const char *const fewer[] = { "controller", NULL };
    CHECK_INT(is_metrics_counter(&r, "controller_runtime_reconcile_total", "x", fewer, &again), IS_EINVAL);

    const char *const ok[] = { "internalrequest", "success" };
    const char *const err[] = { "internalrequest", "error" };
    CHECK_INT(is_metric_add(c, ok, 1), IS_OK);
    CHECK_INT(is_metric_add(c, ok, 2), IS_OK);
    CHECK_INT(is_metric_add(c, err, 1), IS_OK);
    CHECK_INT(is_metric_add(c, err, -1), IS_EINVAL);   /* counters only go up */
    CHECK_INT(is_metric_set(c, err, 5), IS_EINVAL);
    CHECK_INT(is_metric_observe(c, err, 5), IS_EINVAL);
    CHECK_INT(is_metric_add(g, NULL, 3), IS_OK);
    CHECK_INT(is_metric_add(g, NULL, -1), IS_OK);
    is_series_t *s;
    CHECK_INT(is_metric_with(c, ok, &s), IS_OK);
    CHECK(is_series_value(s) == 3);

    CHECK_STR(render(&r),
              "# HELP active_workers Workers \\\\ in use\\nnow\n"
              "# TYPE active_workers gauge\n"
              "active_workers 2\n"
              "# HELP controller_runtime_reconcile_total Total number of reconciliations per controller\n"
              "# TYPE controller_runtime_reconcile_total counter\n"
              "controller_runtime_reconcile_total{controller=\"internalrequest\",result=\"success\"} 3\n"
              "controller_runtime_reconcile_total{controller=\"internalrequest\",result=\"error\"} 1\n");
    is_metrics_free(&r);
}

static void test_label_values_escaped(void) {
    is_metrics_t r;
    is_metrics_init(&r);
    is_metric_t *c;
    const char *const labels[] = { "request", NULL };
    CHECK_INT(is_metrics_counter(&r, "x_total", "h", labels, &c), IS_OK);
    const char *const v[] = { "a\"b\\c\nd" };
    CHECK_INT(is_metric_add(c, v, 1), IS_OK);
    /* A missing value is the empty string, as Prometheus reads it. */
    const char *const none[] = { NULL };
    CHECK_INT(is_metric_add(c, none, 1), IS_OK);
    CHECK(strstr(render(&r), "x_total{request=\"a\\\"b\\\\c\\nd\"} 1\nx_total{request=\"\"} 1\n") != NULL);
    is_metrics_free(&r);
}

static void test_histogram(void) {
    is_metrics_t r;
    is_metrics_init(&r);
    is_metric_t *h;
    static const double b[] = { 10, 20, 40, 60, 150, 300, 450, 900, 1800, 3600 };
    const char *const labels[] = { "request", "namespace", "reason", "succeeded", NULL };
    CHECK_INT(is_metrics_histogram(&r, "internal_request_attempt_duration_seconds",
                                   "Time from the moment the InternalRequest starts being processed until it completes",
                                   labels, b, 10, &h), IS_OK);
    const char *const v[] = { "sign-release", "tenant-a", "Succeeded", "true" };
    CHECK_INT(is_metric_observe(h, v, 5), IS_OK);
    CHECK_INT(is_metric_observe(h, v, 20), IS_OK);   /* le is inclusive */
    CHECK_INT(is_metric_observe(h, v, 5000), IS_OK); /* only +Inf */
    CHECK_INT(is_metric_add(h, v, 1), IS_EINVAL);
    const char *text = render(&r);
    static const char want[] =
        "# TYPE internal_request_attempt_duration_seconds histogram\n"
        "internal_request_attempt_duration_seconds_bucket{request=\"sign-release\",namespace=\"tenant-a\",reason=\"Succeeded\",succeeded=\"true\",le=\"10\"} 1\n"
        "internal_request_attempt_duration_seconds_bucket{request=\"sign-release\",namespace=\"tenant-a\",reason=\"Succeeded\",succeeded=\"true\",le=\"20\"} 2\n"
        "internal_request_attempt_duration_seconds_bucket{request=\"sign-release\",namespace=\"tenant-a\",reason=\"Succeeded\",succeeded=\"true\",le=\"40\"} 2\n";
    CHECK(strstr(text, want) != NULL);
    CHECK(strstr(text, "le=\"3600\"} 2\n") != NULL);
    CHECK(strstr(text, "le=\"+Inf\"} 3\n") != NULL);
    CHECK(strstr(text, "internal_request_attempt_duration_seconds_sum{request=\"sign-release\",namespace=\"tenant-a\",reason=\"Succeeded\",succeeded=\"true\"} 5025\n") != NULL);
    CHECK(strstr(text, "internal_request_attempt_duration_seconds_count{request=\"sign-release\",namespace=\"tenant-a\",reason=\"Succeeded\",succeeded=\"true\"} 3\n") != NULL);

    /* Bad bucket layouts and the reserved le label. */
    static const double unsorted[] = { 1, 1 };
    is_metric_t *bad;
    CHECK_INT(is_metrics_histogram(&r, "h2", "h", NULL, unsorted, 2, &bad), IS_EINVAL);
    const char *const le[] = { "le", NULL };
    CHECK_INT(is_metrics_histogram(&r, "h3", "h", le, b, 2, &bad), IS_EINVAL);
    CHECK_INT(is_metrics_histogram(&r, "h4", "h", NULL, b, IS_METRICS_MAX_BUCKETS + 1, &bad), IS_ELIMIT);
    /* A histogram with no label: le alone in the braces. */
    CHECK_INT(is_metrics_histogram(&r, "plain_seconds", "h", NULL, b, 1, &bad), IS_OK);
    CHECK_INT(is_metric_observe(bad, NULL, 0.5), IS_OK);
    CHECK(strstr(render(&r), "plain_seconds_bucket{le=\"10\"} 1\nplain_seconds_bucket{le=\"+Inf\"} 1\n"
                             "plain_seconds_sum 0.5\nplain_seconds_count 1\n") != NULL);
    is_metrics_free(&r);
}

static void test_names_validated(void) {
    is_metrics_t r;
    is_metrics_init(&r);
    is_metric_t *m;
    CHECK_INT(is_metrics_counter(&r, "9lives", "h", NULL, &m), IS_EINVAL);
    CHECK_INT(is_metrics_counter(&r, "has space", "h", NULL, &m), IS_EINVAL);
    CHECK_INT(is_metrics_counter(&r, "", "h", NULL, &m), IS_EINVAL);
    CHECK_INT(is_metrics_counter(&r, "ok:name_total", "h", NULL, &m), IS_OK);
    const char *const colon[] = { "a:b", NULL };
    CHECK_INT(is_metrics_counter(&r, "c1", "h", colon, &m), IS_EINVAL);
    const char *const reserved[] = { "__name", NULL };
    CHECK_INT(is_metrics_counter(&r, "c2", "h", reserved, &m), IS_EINVAL);
    const char *const dup[] = { "a", "a", NULL };
    CHECK_INT(is_metrics_counter(&r, "c3", "h", dup, &m), IS_EINVAL);
    const char *const many[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", NULL };
    CHECK_INT(is_metrics_counter(&r, "c4", "h", many, &m), IS_ELIMIT);
    is_metrics_free(&r);
}

static void test_caps(void) {
    is_metrics_t r;
    is_metrics_init(&r);
    r.max_series = 3;
    is_metric_t *c;
    const char *const labels[] = { "k", NULL };
    CHECK_INT(is_metrics_counter(&r, "capped_total", "h", labels, &c), IS_OK);
    char name[16];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "v%d", i);
        const char *const v[] = { name };
        CHECK_INT(is_metric_add(c, v, 1), IS_OK);
    }
    const char *const extra[] = { "v9" };
    CHECK_INT(is_metric_add(c, extra, 1), IS_ELIMIT);
    const char *const old[] = { "v1" };
    CHECK_INT(is_metric_add(c, old, 1), IS_OK);  /* existing series still count */
    is_metrics_free(&r);

    is_metrics_init(&r);
    CHECK_INT(is_metrics_counter(&r, "long_total", "h", labels, &c), IS_OK);
    char *big = malloc(IS_METRICS_MAX_VALUE + 2);
    memset(big, 'x', IS_METRICS_MAX_VALUE + 1);
    big[IS_METRICS_MAX_VALUE + 1] = 0;
    const char *const v[] = { big };
    CHECK_INT(is_metric_add(c, v, 1), IS_ELIMIT);
    big[IS_METRICS_MAX_VALUE] = 0;
    CHECK_INT(is_metric_add(c, v, 1), IS_OK);
    free(big);
    is_metrics_free(&r);

    is_metrics_init(&r);
    int rc = IS_OK, made = 0;
    while (rc == IS_OK && made <= IS_METRICS_MAX_FAMILIES) {
        snprintf(name, sizeof name, "f%d", made);
        if ((rc = is_metrics_gauge(&r, name, "h", NULL, &c)) == IS_OK) made++;
    }
    CHECK_INT(rc, IS_ELIMIT);
    CHECK_INT(made, IS_METRICS_MAX_FAMILIES);
    CHECK_INT(is_metrics_gauge(&r, "f7", "h", NULL, &c), IS_OK); /* found, not made */
    is_metrics_free(&r);
}

static int collected;
static is_series_t *collected_series;

static int collect(is_metrics_t *r, void *ud) {
    (void)r;
    collected += *(int *)ud;
    return is_series_set(collected_series, collected);
}

static void test_collectors(void) {
    is_metrics_t r;
    is_metrics_init(&r);
    is_metric_t *g;
    CHECK_INT(is_metrics_gauge(&r, "scrapes", "h", NULL, &g), IS_OK);
    CHECK_INT(is_metric_with(g, NULL, &collected_series), IS_OK);
    int step = 1;
    collected = 0;
    CHECK_INT(is_metrics_add_collector(&r, collect, &step), IS_OK);
    CHECK(strstr(render(&r), "scrapes 1\n") != NULL);
    CHECK(strstr(render(&r), "scrapes 2\n") != NULL);
    is_metrics_remove_collector(&r, collect, &step);
    CHECK(strstr(render(&r), "scrapes 2\n") != NULL);
    is_metrics_free(&r);
}

static void test_process(void) {
    is_metrics_t r;
    is_metrics_init(&r);
    CHECK_INT(is_metrics_register_process(&r), IS_OK);
    CHECK(strstr(render(&r), "# TYPE process_cpu_seconds_total counter\n") != NULL);
    CHECK(testing_sample(&r, "\n%s ", "process_resident_memory_bytes") > 1024 * 1024 / 4);
    CHECK(testing_sample(&r, "\n%s ", "process_open_fds") >= 3);
    CHECK(testing_sample(&r, "\n%s ", "process_max_fds") >= testing_sample(&r, "\n%s ", "process_open_fds"));
    double start = testing_sample(&r, "\n%s ", "process_start_time_seconds");
    CHECK(start > 1.6e9 && start <= (double)time(NULL) + 1);
    CHECK(testing_sample(&r, "\n%s ", "process_cpu_seconds_total") >= 0);
    CHECK(testing_sample(&r, "\n%s ", "process_virtual_memory_bytes") > testing_sample(&r, "\n%s ", "process_resident_memory_bytes"));
    is_metrics_free(&r);
}

/* Every allocation on the way fails in turn: each failure is IS_ENOMEM
 * and leaves the registry usable and leak-free (ASan/valgrind check). */
static void test_out_of_memory(void) {
    static const double b[] = { 1, 2 };
    for (long n = 1; n < 200; n++) {
        is_metrics_t r;
        is_metrics_init(&r);
        is_alloc_fail_after(n);
        is_metric_t *c = NULL, *h = NULL;
        const char *const labels[] = { "a", "b", NULL };
        const char *const v[] = { "x", "y" };
        is_buf_t out;
        is_buf_init(&out);
        int rc = is_metrics_counter(&r, "c_total", "help", labels, &c);
        if (rc == IS_OK) rc = is_metrics_histogram(&r, "h_seconds", "help", labels, b, 2, &h);
        if (rc == IS_OK) rc = is_metric_add(c, v, 1);
        if (rc == IS_OK) rc = is_metric_observe(h, v, 1);
        if (rc == IS_OK) rc = is_metrics_register_process(&r);
        if (rc == IS_OK) rc = is_metrics_render(&r, &out);
        is_alloc_fail_after(0);
        CHECK(rc == IS_OK || rc == IS_ENOMEM);
        if (rc == IS_OK) {
            CHECK(strstr(out.data, "c_total{a=\"x\",b=\"y\"} 1\n") != NULL);
            is_buf_free(&out);
            is_metrics_free(&r);
            break;
        }
        /* Still usable after the failure. */
        if (!c) CHECK_INT(is_metrics_counter(&r, "c_total", "help", labels, &c), IS_OK);
        CHECK_INT(is_metric_add(c, v, 1), IS_OK);
        is_buf_free(&out);
        is_metrics_free(&r);
    }
}

int main(void) {
    RUN(test_format_double);
    RUN(test_counter_and_gauge);
    RUN(test_label_values_escaped);
    RUN(test_histogram);
    RUN(test_names_validated);
    RUN(test_caps);
    RUN(test_collectors);
    RUN(test_process);
    RUN(test_out_of_memory);
    render(NULL);
    TESTING_DONE();
}
