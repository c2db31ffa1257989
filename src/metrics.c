/* The metrics registry and its text rendering. See is_metrics.h.
 *
 * A family keeps its series in a map from an unambiguous key of the label
 * values (each value's length, a colon, the value) and in a list in
 * creation order, which is the order they are rendered in. */
#include "is_metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_map.h"

struct is_series_s {
    is_metric_t *family;
    double value;              /* counter/gauge value, histogram sum */
    uint64_t count;            /* histogram observations */
    uint64_t *buckets;         /* per bucket, not cumulative; +Inf is count */
    is_series_t *next;
    char *values[];            /* one per label */
};

struct is_metric_s {
    is_metrics_t *registry;
    is_metric_type_t type;
    char *name, *help;
    char *labels[IS_METRICS_MAX_LABELS];
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    is_map_t index;            /* key -> is_series_t* */
    is_series_t *head, *tail;
    is_metric_t *next;
};

struct is_metrics_collector_s {
    is_metrics_collect_cb cb;
    void *ud;
    int owns_ud;               /* freed with the registry */
    is_metrics_collector_t *next;
};

int is_metrics_init(is_metrics_t *r) {
    memset(r, 0, sizeof *r);
    r->max_series = IS_METRICS_DEFAULT_MAX_SERIES;
    return IS_OK;
}

static void series_free(is_series_t *s) {
    for (size_t i = 0; i < s->family->nlabels; i++) is_free(s->values[i]);
    is_free(s->buckets);
    is_free(s);
}

static void family_free(is_metric_t *m) {
    is_series_t *s = m->head;
    while (s) {
        is_series_t *next = s->next;
        series_free(s);
        s = next;
    }
    is_map_free(&m->index, NULL);
    for (size_t i = 0; i < m->nlabels; i++) is_free(m->labels[i]);
    is_free(m->bounds);
    is_free(m->name);
    is_free(m->help);
    is_free(m);
}

void is_metrics_free(is_metrics_t *r) {
    is_metric_t *m = r->families__;
    while (m) {
        is_metric_t *next = m->next;
        family_free(m);
        m = next;
    }
    is_metrics_collector_t *c = r->collectors__;
    while (c) {
        is_metrics_collector_t *next = c->next;
        if (c->owns_ud) is_free(c->ud);
        is_free(c);
        c = next;
    }
    memset(r, 0, sizeof *r);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metric names; labels without the colon. */
static int valid_name(const char *s, int colon) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > IS_METRICS_MAX_NAME) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static int same_family(const is_metric_t *m, is_metric_type_t type, const char *const *labels,
                       size_t nlabels, const double *bounds, size_t nbounds) {
    if (m->type != type || m->nlabels != nlabels || m->nbounds != nbounds) return 0;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(m->labels[i], labels[i]) != 0) return 0;
    for (size_t i = 0; i < nbounds; i++)
        if (m->bounds[i] != bounds[i]) return 0;
    return 1;
}

static int family_new(is_metrics_t *r, is_metric_type_t type, const char *name, const char *help,
                      const char *const *labels, const double *bounds, size_t nbounds,
                      is_metric_t **out) {
    size_t nlabels = 0;
    *out = NULL;
    if (!valid_name(name, 1) || !help || strlen(help) > IS_METRICS_MAX_HELP) return IS_EINVAL;
    while (labels && labels[nlabels]) {
        if (nlabels == IS_METRICS_MAX_LABELS) return IS_ELIMIT;
        if (!valid_name(labels[nlabels], 0) || strncmp(labels[nlabels], "__", 2) == 0) return IS_EINVAL;
        /* le is the bucket label of a histogram. */
        if (type == IS_METRIC_HISTOGRAM && strcmp(labels[nlabels], "le") == 0) return IS_EINVAL;
        for (size_t j = 0; j < nlabels; j++)
            if (strcmp(labels[j], labels[nlabels]) == 0) return IS_EINVAL;
        nlabels++;
    }
    if (nbounds > IS_METRICS_MAX_BUCKETS) return IS_ELIMIT;
    for (size_t i = 0; i < nbounds; i++)
        if (isnan(bounds[i]) || isinf(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) return IS_EINVAL;

    is_metric_t **link = &r->families__;
    while (*link && strcmp((*link)->name, name) < 0) link = &(*link)->next;
    if (*link && strcmp((*link)->name, name) == 0) {
        if (!same_family(*link, type, labels, nlabels, bounds, nbounds)) return IS_EINVAL;
        *out = *link;
        return IS_OK;
    }

    if (r->families_n__ >= IS_METRICS_MAX_FAMILIES) return IS_ELIMIT;
    is_metric_t *m = is_calloc(1, sizeof *m);
    if (!m) return IS_ENOMEM;
    m->registry = r;
    m->type = type;
    is_map_init(&m->index);
    m->name = is_strdup(name);
    m->help = is_strdup(help);
    int ok = m->name && m->help;
    for (size_t i = 0; ok && i < nlabels; i++) {
        if (!(m->labels[i] = is_strdup(labels[i]))) ok = 0;
        else m->nlabels = i + 1;
    }
    if (ok && nbounds) {
        m->bounds = is_malloc(nbounds * sizeof *m->bounds);
        if (!m->bounds) ok = 0;
        else {
            memcpy(m->bounds, bounds, nbounds * sizeof *bounds);
            m->nbounds = nbounds;
        }
    }
    if (!ok) {
        family_free(m);
        return IS_ENOMEM;
    }
    m->next = *link;
    *link = m;
    r->families_n__++;
    *out = m;
    return IS_OK;
}

int is_metrics_counter(is_metrics_t *r, const char *name, const char *help,
                       const char *const *labels, is_metric_t **out) {
    return family_new(r, IS_METRIC_COUNTER, name, help, labels, NULL, 0, out);
}

int is_metrics_gauge(is_metrics_t *r, const char *name, const char *help,
                     const char *const *labels, is_metric_t **out) {
    return family_new(r, IS_METRIC_GAUGE, name, help, labels, NULL, 0, out);
}

int is_metrics_histogram(is_metrics_t *r, const char *name, const char *help,
                         const char *const *labels, const double *buckets, size_t nbuckets,
                         is_metric_t **out) {
    return family_new(r, IS_METRIC_HISTOGRAM, name, help, labels, buckets, nbuckets, out);
}

is_metric_type_t is_metric_type(const is_metric_t *m) { return m->type; }
size_t is_metric_label_count(const is_metric_t *m) { return m->nlabels; }
const char *is_metric_label(const is_metric_t *m, size_t i) { return i < m->nlabels ? m->labels[i] : NULL; }
const char *is_metric_name(const is_metric_t *m) { return m->name; }

static int series_key(const is_metric_t *m, const char *const *values, is_buf_t *key) {
    int rc = is_buf_appends(key, "");
    for (size_t i = 0; rc == IS_OK && i < m->nlabels; i++) {
        const char *v = values && values[i] ? values[i] : "";
        size_t n = strlen(v);
        if (n > IS_METRICS_MAX_VALUE) return IS_ELIMIT;
        rc = is_buf_printf(key, "%zu:", n);
        if (rc == IS_OK) rc = is_buf_append(key, v, n);
    }
    return rc;
}

int is_metric_with(is_metric_t *m, const char *const *values, is_series_t **out) {
    is_buf_t key;
    is_buf_init(&key);
    *out = NULL;
    int rc = series_key(m, values, &key);
    is_series_t *s = rc == IS_OK ? is_map_get(&m->index, key.data) : NULL;
    if (rc == IS_OK && !s) {
        if (m->registry->series__ >= m->registry->max_series) rc = IS_ELIMIT;
        else if (!(s = is_calloc(1, sizeof *s + m->nlabels * sizeof(char *)))) rc = IS_ENOMEM;
        if (rc == IS_OK) {
            s->family = m;
            for (size_t i = 0; rc == IS_OK && i < m->nlabels; i++)
                if (!(s->values[i] = is_strdup(values && values[i] ? values[i] : ""))) rc = IS_ENOMEM;
            if (rc == IS_OK && m->nbounds && !(s->buckets = is_calloc(m->nbounds, sizeof *s->buckets)))
                rc = IS_ENOMEM;
            if (rc == IS_OK) rc = is_map_set(&m->index, key.data, s, NULL);
            if (rc != IS_OK) {
                series_free(s);
                s = NULL;
            }
        }
        if (s) {
            if (m->tail) m->tail->next = s;
            else m->head = s;
            m->tail = s;
            m->registry->series__++;
        }
    }
    is_buf_free(&key);
    *out = s;
    return rc;
}

int is_series_add(is_series_t *s, double delta) {
    if (s->family->type == IS_METRIC_HISTOGRAM || isnan(delta)) return IS_EINVAL;
    if (s->family->type == IS_METRIC_COUNTER && delta < 0) return IS_EINVAL;
    s->value += delta;
    return IS_OK;
}

int is_series_set(is_series_t *s, double value) {
    if (s->family->type != IS_METRIC_GAUGE) return IS_EINVAL;
    s->value = value;
    return IS_OK;
}

int is_series_observe(is_series_t *s, double value) {
    const is_metric_t *m = s->family;
    if (m->type != IS_METRIC_HISTOGRAM || isnan(value)) return IS_EINVAL;
    size_t i = 0;
    while (i < m->nbounds && value > m->bounds[i]) i++;
    if (i < m->nbounds) s->buckets[i]++;
    s->count++;
    s->value += value;
    return IS_OK;
}

double is_series_value(const is_series_t *s) { return s->value; }
uint64_t is_series_count(const is_series_t *s) { return s->count; }

int is_metric_add(is_metric_t *m, const char *const *values, double delta) {
    is_series_t *s;
    int rc = is_metric_with(m, values, &s);
    return rc == IS_OK ? is_series_add(s, delta) : rc;
}

int is_metric_set(is_metric_t *m, const char *const *values, double value) {
    is_series_t *s;
    int rc = is_metric_with(m, values, &s);
    return rc == IS_OK ? is_series_set(s, value) : rc;
}

int is_metric_observe(is_metric_t *m, const char *const *values, double value) {
    is_series_t *s;
    int rc = is_metric_with(m, values, &s);
    return rc == IS_OK ? is_series_observe(s, value) : rc;
}

static int add_collector(is_metrics_t *r, is_metrics_collect_cb cb, void *ud, int owns_ud) {
    is_metrics_collector_t *c = is_calloc(1, sizeof *c);
    if (!c) return IS_ENOMEM;
    c->cb = cb;
    c->ud = ud;
    c->owns_ud = owns_ud;
    is_metrics_collector_t **link = &r->collectors__;
    while (*link) link = &(*link)->next;
    *link = c;
    return IS_OK;
}

int is_metrics_add_collector(is_metrics_t *r, is_metrics_collect_cb cb, void *ud) {
    return add_collector(r, cb, ud, 0);
}

void is_metrics_remove_collector(is_metrics_t *r, is_metrics_collect_cb cb, void *ud) {
    for (is_metrics_collector_t **link = &r->collectors__; *link; link = &(*link)->next) {
        if ((*link)->cb == cb && (*link)->ud == ud) {
            is_metrics_collector_t *c = *link;
            *link = c->next;
            if (c->owns_ud) is_free(c->ud);
            is_free(c);
            return;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Text format                                                            */

/* Go's shortest 'g' form: the fewest significant digits that read back as
 * v; exponent form when the decimal exponent is below -4 or at least 6
 * (strconv's rule for the shortest precision), else plain decimals. */
int is_metrics_format_double(is_buf_t *out, double v) {
    if (isnan(v)) return is_buf_appends(out, "NaN");
    if (isinf(v)) return is_buf_appends(out, v > 0 ? "+Inf" : "-Inf");
    if (v == 0) return is_buf_appends(out, signbit(v) ? "-0" : "0");
    char digits[40];
    int prec;
    for (prec = 0; prec < 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec, v);
        if (strtod(digits, NULL) == v) break;
    }
    const char *e = strchr(digits, 'e');
    int exp = e ? atoi(e + 1) : 0;
    if (exp < -4 || exp >= 6) return is_buf_appends(out, digits);
    int decimals = prec - exp;
    if (decimals < 0) decimals = 0;
    return is_buf_printf(out, "%.*f", decimals, v);
}

static int append_escaped(is_buf_t *out, const char *s, int quote) {
    int rc = IS_OK;
    const char *run = s;
    for (const char *p = s; *p && rc == IS_OK; p++) {
        const char *rep = NULL;
        if (*p == '\\') rep = "\\\\";
        else if (*p == '\n') rep = "\\n";
        else if (quote && *p == '"') rep = "\\\"";
        if (!rep) continue;
        rc = is_buf_append(out, run, (size_t)(p - run));
        if (rc == IS_OK) rc = is_buf_appends(out, rep);
        run = p + 1;
    }
    if (rc == IS_OK) rc = is_buf_appends(out, run);
    return rc;
}

/* {a="x",b="y"} with an optional extra le="..." pair; nothing when empty. */
static int append_labels(is_buf_t *out, const is_series_t *s, const char *le) {
    const is_metric_t *m = s->family;
    if (m->nlabels == 0 && !le) return IS_OK;
    int rc = is_buf_appends(out, "{");
    for (size_t i = 0; rc == IS_OK && i < m->nlabels; i++) {
        rc = is_buf_printf(out, "%s%s=\"", i ? "," : "", m->labels[i]);
        if (rc == IS_OK) rc = append_escaped(out, s->values[i], 1);
        if (rc == IS_OK) rc = is_buf_appends(out, "\"");
    }
    if (rc == IS_OK && le) rc = is_buf_printf(out, "%sle=\"%s\"", m->nlabels ? "," : "", le);
    if (rc == IS_OK) rc = is_buf_appends(out, "}");
    return rc;
}

static int append_sample(is_buf_t *out, const is_series_t *s, const char *suffix, const char *le,
                         double v) {
    int rc = is_buf_printf(out, "%s%s", s->family->name, suffix);
    if (rc == IS_OK) rc = append_labels(out, s, le);
    if (rc == IS_OK) rc = is_buf_appends(out, " ");
    if (rc == IS_OK) rc = is_metrics_format_double(out, v);
    if (rc == IS_OK) rc = is_buf_appends(out, "\n");
    return rc;
}

static int render_series(is_buf_t *out, const is_series_t *s) {
    const is_metric_t *m = s->family;
    if (m->type != IS_METRIC_HISTOGRAM) return append_sample(out, s, "", NULL, s->value);
    int rc = IS_OK;
    uint64_t cumulative = 0;
    for (size_t i = 0; rc == IS_OK && i < m->nbounds; i++) {
        is_buf_t le;
        is_buf_init(&le);
        cumulative += s->buckets[i];
        rc = is_metrics_format_double(&le, m->bounds[i]);
        if (rc == IS_OK) rc = append_sample(out, s, "_bucket", le.data, (double)cumulative);
        is_buf_free(&le);
    }
    if (rc == IS_OK) rc = append_sample(out, s, "_bucket", "+Inf", (double)s->count);
    if (rc == IS_OK) rc = append_sample(out, s, "_sum", NULL, s->value);
    if (rc == IS_OK) rc = append_sample(out, s, "_count", NULL, (double)s->count);
    return rc;
}

int is_metrics_render(is_metrics_t *r, is_buf_t *out) {
    static const char *const types[] = { "counter", "gauge", "histogram" };
    int rc = IS_OK;
    for (is_metrics_collector_t *c = r->collectors__; c && rc == IS_OK; c = c->next) rc = c->cb(r, c->ud);
    size_t start = out->len;
    for (const is_metric_t *m = r->families__; m && rc == IS_OK; m = m->next) {
        rc = is_buf_printf(out, "# HELP %s ", m->name);
        if (rc == IS_OK) rc = append_escaped(out, m->help, 0);
        if (rc == IS_OK) rc = is_buf_printf(out, "\n# TYPE %s %s\n", m->name, types[m->type]);
        for (const is_series_t *s = m->head; s && rc == IS_OK; s = s->next) {
            rc = render_series(out, s);
            if (rc == IS_OK && out->len - start > IS_METRICS_MAX_TEXT) rc = IS_ELIMIT;
        }
    }
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Process metrics, from /proc as client_golang's process collector       */

typedef struct process_metrics_s {
    is_series_t *cpu, *rss, *vsize, *open_fds, *max_fds, *start, *vmax;
} process_metrics_t;

static int count_fds(double *out) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return IS_EIO;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    *out = n - 1; /* the directory stream's own descriptor */
    return IS_OK;
}

static double boot_time(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return bt;
}

static int collect_process(is_metrics_t *r, void *ud) {
    (void)r;
    process_metrics_t *p = ud;
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return IS_OK; /* not Linux: the series stay at zero */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may hold spaces and parentheses: fields start
     * after the last ')'. Field 3 is the state. */
    char *rest = strrchr(buf, ')');
    if (!rest) return IS_OK;
    rest += 2;
    double field[64] = { 0 };
    int i = 3;
    for (char *tok = strtok(rest, " "); tok && i < 64; tok = strtok(NULL, " "), i++)
        field[i] = strtod(tok, NULL);
    double ticks = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
    if (ticks <= 0) ticks = 100;
    /* A counter that only the kernel advances: set, not added to. */
    p->cpu->value = (field[14] + field[15]) / ticks;
    is_series_set(p->vsize, field[23]);
    is_series_set(p->rss, field[24] * page);
    is_series_set(p->start, boot_time() + field[22] / ticks);
    double fds;
    if (count_fds(&fds) == IS_OK) is_series_set(p->open_fds, fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        is_series_set(p->max_fds, rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
    if (getrlimit(RLIMIT_AS, &rl) == 0)
        is_series_set(p->vmax, rl.rlim_cur == RLIM_INFINITY ? 1.8446744073709552e19 : (double)rl.rlim_cur);
    return IS_OK;
}

int is_metrics_register_process(is_metrics_t *r) {
    static const struct {
        const char *name, *help;
        is_metric_type_t type;
        size_t offset;
    } defs[] = {
        { "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
          IS_METRIC_COUNTER, offsetof(process_metrics_t, cpu) },
        { "process_max_fds", "Maximum number of open file descriptors.", IS_METRIC_GAUGE,
          offsetof(process_metrics_t, max_fds) },
        { "process_open_fds", "Number of open file descriptors.", IS_METRIC_GAUGE,
          offsetof(process_metrics_t, open_fds) },
        { "process_resident_memory_bytes", "Resident memory size in bytes.", IS_METRIC_GAUGE,
          offsetof(process_metrics_t, rss) },
        { "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
          IS_METRIC_GAUGE, offsetof(process_metrics_t, start) },
        { "process_virtual_memory_bytes", "Virtual memory size in bytes.", IS_METRIC_GAUGE,
          offsetof(process_metrics_t, vsize) },
        { "process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.",
          IS_METRIC_GAUGE, offsetof(process_metrics_t, vmax) },
    };
    process_metrics_t *p = is_calloc(1, sizeof *p);
    if (!p) return IS_ENOMEM;
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        is_metric_t *m;
        int rc = family_new(r, defs[i].type, defs[i].name, defs[i].help, NULL, NULL, 0, &m);
        if (rc == IS_OK) rc = is_metric_with(m, NULL, (is_series_t **)((char *)p + defs[i].offset));
        if (rc != IS_OK) {
            is_free(p);
            return rc;
        }
    }
    int rc = add_collector(r, collect_process, p, 1);
    if (rc != IS_OK) is_free(p);
    return rc;
}
