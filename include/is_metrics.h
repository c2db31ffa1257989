/* A metrics registry rendered in the Prometheus text format (0.0.4), with
 * counters, gauges and histograms, each a family of series told apart by
 * their label values, as client_golang's *Vec types.
 *
 * The caller owns the registry; families and series live until
 * is_metrics_free. A module that reports metrics registers its families
 * once (a second registration of the same name, type, labels and buckets
 * returns the existing family, so that two HTTP clients share
 * rest_client_requests_total) and keeps the family or series pointers.
 * Values that are only known when asked (a process's memory, how long the
 * oldest reconcile has run) are filled in by collectors, which render runs
 * first.
 *
 * Everything is capped: families, label and bucket counts, label value
 * length, series in the registry and rendered bytes; a cap returns IS_ELIMIT, an allocation
 * failure IS_ENOMEM, and nothing is half added. */
#ifndef IS_METRICS_H
#define IS_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "is_buf.h"

#define IS_METRICS_MAX_LABELS 8
#define IS_METRICS_MAX_BUCKETS 64
#define IS_METRICS_MAX_VALUE 512        /* bytes of one label value */
#define IS_METRICS_MAX_NAME 128         /* bytes of a metric or label name */
#define IS_METRICS_MAX_HELP 1024
#define IS_METRICS_DEFAULT_MAX_SERIES 10000
#define IS_METRICS_MAX_FAMILIES 1024
#define IS_METRICS_MAX_TEXT ((size_t)32 << 20)

typedef enum is_metric_type_e {
    IS_METRIC_COUNTER,
    IS_METRIC_GAUGE,
    IS_METRIC_HISTOGRAM
} is_metric_type_t;

typedef struct is_metrics_s is_metrics_t;
typedef struct is_metric_s is_metric_t;   /* one family */
typedef struct is_series_s is_series_t;   /* one labelled child */
typedef struct is_metrics_collector_s is_metrics_collector_t; /* internal */

/* Runs at the start of every render to set scrape-time values. */
typedef int (*is_metrics_collect_cb)(is_metrics_t *r, void *ud);

struct is_metrics_s {
    size_t max_series;          /* default IS_METRICS_DEFAULT_MAX_SERIES */
    /* internal */
    is_metric_t *families__;    /* sorted by name */
    size_t series__, families_n__;
    is_metrics_collector_t *collectors__;
};

int is_metrics_init(is_metrics_t *r);
void is_metrics_free(is_metrics_t *r);

/* Registers (or finds) a family. labels is NULL-terminated (NULL for none);
 * buckets are a histogram's strictly increasing upper bounds, +Inf
 * implied. help is copied. */
int is_metrics_counter(is_metrics_t *r, const char *name, const char *help,
                       const char *const *labels, is_metric_t **out);
int is_metrics_gauge(is_metrics_t *r, const char *name, const char *help,
                     const char *const *labels, is_metric_t **out);
int is_metrics_histogram(is_metrics_t *r, const char *name, const char *help,
                         const char *const *labels, const double *buckets, size_t nbuckets,
                         is_metric_t **out);

is_metric_type_t is_metric_type(const is_metric_t *m);
size_t is_metric_label_count(const is_metric_t *m);
/* The i-th label name, or NULL past the end. */
const char *is_metric_label(const is_metric_t *m, size_t i);
const char *is_metric_name(const is_metric_t *m);

/* The series of these label values (one per label, in the family's order),
 * created at zero when new. */
int is_metric_with(is_metric_t *m, const char *const *values, is_series_t **out);

/* Counter: delta >= 0 (else IS_EINVAL). Gauge: any delta. */
int is_series_add(is_series_t *s, double delta);
int is_series_set(is_series_t *s, double value);   /* gauges only */
int is_series_observe(is_series_t *s, double value); /* histograms only */
double is_series_value(const is_series_t *s);      /* counter/gauge value, histogram sum */
uint64_t is_series_count(const is_series_t *s);    /* histogram observations */

/* Shorthands: is_metric_with, then the operation. */
int is_metric_add(is_metric_t *m, const char *const *values, double delta);
int is_metric_set(is_metric_t *m, const char *const *values, double value);
int is_metric_observe(is_metric_t *m, const char *const *values, double value);

/* Collectors run in the order added; a failure stops the render. */
int is_metrics_add_collector(is_metrics_t *r, is_metrics_collect_cb cb, void *ud);
void is_metrics_remove_collector(is_metrics_t *r, is_metrics_collect_cb cb, void *ud);

/* Runs the collectors, then appends every family with # HELP and # TYPE
 * lines, families by name and series in creation order. */
int is_metrics_render(is_metrics_t *r, is_buf_t *out);

/* Appends v as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it (and
 * "+Inf", "-Inf", "NaN"), the form client_golang's text output uses. */
int is_metrics_format_double(is_buf_t *out, double v);

/* The process_* family of client_golang's process collector, read from
 * /proc at every render: CPU seconds, resident and virtual memory, open
 * and maximum file descriptors, start time. */
int is_metrics_register_process(is_metrics_t *r);

#endif
