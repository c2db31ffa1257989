/* One JSON object (or one zap console line) per line on stderr. */
#include "is_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "is_err.h"

static int log_level = IS_LOG_INFO;
static int log_format = IS_LOG_JSON;
static int log_time = IS_LOG_TIME_ISO8601;
static const char *const level_names[] = { "debug", "info", "warn", "error" };
static const char *const level_caps[] = { "DEBUG", "INFO", "WARN", "ERROR" };
static const char *const time_names[] = { "iso8601", "rfc3339", "rfc3339nano",
                                          "epoch", "millis", "nano" };

void is_log_set_level(int level) { log_level = level; }
int is_log_level(void) { return log_level; }
void is_log_set_format(int format) { log_format = format; }
void is_log_set_time_encoding(int encoding) { log_time = encoding; }

static int lookup(const char *name, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

int is_log_parse_level(const char *name) { return lookup(name, level_names, 4); }

int is_log_parse_zap_level(const char *name) {
    if (!strcmp(name, "debug")) return IS_LOG_DEBUG;
    if (!strcmp(name, "info")) return IS_LOG_INFO;
    if (!strcmp(name, "error") || !strcmp(name, "panic")) return IS_LOG_ERROR;
    /* zap's V-levels: any positive verbosity is below info, so debug here. */
    char *end;
    long v = strtol(name, &end, 10);
    return *name && !*end && v > 0 ? IS_LOG_DEBUG : -1;
}

int is_log_parse_stacktrace_level(const char *name) {
    if (!strcmp(name, "info")) return IS_LOG_INFO;
    if (!strcmp(name, "error") || !strcmp(name, "panic")) return IS_LOG_ERROR;
    return -1;
}

int is_log_parse_format(const char *name) {
    if (!strcmp(name, "json")) return IS_LOG_JSON;
    if (!strcmp(name, "console")) return IS_LOG_CONSOLE;
    return -1;
}

int is_log_parse_time_encoding(const char *name) { return lookup(name, time_names, 6); }

/* The time as the encoding wants it; *quoted says whether it is a string. */
static int format_time(is_buf_t *b, const struct timespec *ts, int quoted) {
    struct tm tm;
    char when[40];
    gmtime_r(&ts->tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    const char *q = quoted ? "\"" : "";
    switch (log_time) {
    case IS_LOG_TIME_EPOCH:
        return is_buf_printf(b, "%lld.%06ld", (long long)ts->tv_sec, ts->tv_nsec / 1000);
    case IS_LOG_TIME_MILLIS:
        return is_buf_printf(b, "%lld.%06ld", (long long)ts->tv_sec * 1000 + ts->tv_nsec / 1000000,
                             ts->tv_nsec % 1000000);
    case IS_LOG_TIME_NANO:
        return is_buf_printf(b, "%lld", (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec);
    case IS_LOG_TIME_RFC3339:
        return is_buf_printf(b, "%s%sZ%s", q, when, q);
    case IS_LOG_TIME_RFC3339NANO: {
        /* Go's .999999999: trailing zeros, and a bare dot, are dropped. */
        char frac[12] = "";
        if (ts->tv_nsec > 0 && ts->tv_nsec < 1000000000L) {
            long ns = ts->tv_nsec;
            int digits = 9;
            while (ns % 10 == 0) {
                ns /= 10;
                digits--;
            }
            snprintf(frac, sizeof frac, ".%0*ld", digits, ns);
        }
        return is_buf_printf(b, "%s%s%sZ%s", q, when, frac, q);
    }
    default:
        return is_buf_printf(b, "%s%s.%03ldZ%s", q, when, ts->tv_nsec / 1000000, q);
    }
}

int is_log_format(is_buf_t *line, const struct timespec *ts, int level, const char *msg,
                  const char *fields) {
    int rc;
    if (log_format == IS_LOG_CONSOLE) {
        /* zap's console encoder: time, LEVEL, message, then the fields as
         * one JSON object, tab-separated. */
        rc = format_time(line, ts, 0);
        if (rc == IS_OK) rc = is_buf_printf(line, "\t%s\t%s", level_caps[level], msg);
        if (rc == IS_OK && fields && fields[0]) rc = is_buf_printf(line, "\t{%s}", fields);
        return rc == IS_OK ? is_buf_appends(line, "\n") : rc;
    }
    rc = is_buf_appends(line, "{\"ts\":");
    if (rc == IS_OK) rc = format_time(line, ts, 1);
    if (rc == IS_OK) rc = is_buf_printf(line, ",\"level\":\"%s\",\"msg\":", level_names[level]);
    if (rc == IS_OK) rc = is_buf_append_jsonstr(line, msg, strlen(msg));
    if (rc == IS_OK && fields && fields[0]) rc = is_buf_printf(line, ",%s", fields);
    return rc == IS_OK ? is_buf_appends(line, "}\n") : rc;
}

void is_log_write(int level, const char *msg, const char *fields) {
    if (level < log_level || level < 0 || level > IS_LOG_ERROR) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    is_buf_t line;
    is_buf_init(&line);
    /* Out of memory must not lose the message: write it unformatted. */
    if (is_log_format(&line, &ts, level, msg, fields) == IS_OK)
        fwrite(line.data, 1, line.len, stderr);
    else
        fprintf(stderr, "%lld %s %s\n", (long long)ts.tv_sec, level_names[level], msg);
    fflush(stderr);
    is_buf_free(&line);
}

void is_logf(int level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    if (level < log_level) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    is_log_write(level, msg, NULL);
}
