/* One JSON object per line on stderr. */
#include "is_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int log_level = IS_LOG_INFO;
static const char *const level_names[] = { "debug", "info", "warn", "error" };

void is_log_set_level(int level) { log_level = level; }
int is_log_level(void) { return log_level; }

int is_log_parse_level(const char *name) {
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void is_log_write(int level, const char *msg, const char *fields) {
    if (level < log_level || level < 0 || level > IS_LOG_ERROR) return;
    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);

    is_buf_t line;
    is_buf_init(&line);
    int rc = is_buf_printf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", when, level_names[level]);
    if (rc == 0) rc = is_buf_append_jsonstr(&line, msg, strlen(msg));
    if (rc == 0 && fields && fields[0]) rc = is_buf_printf(&line, ",%s", fields);
    if (rc == 0) rc = is_buf_appends(&line, "}\n");
    /* Out of memory must not lose the message: write it unformatted. */
    if (rc == 0) fwrite(line.data, 1, line.len, stderr);
    else fprintf(stderr, "%s %s %s\n", when, level_names[level], msg);
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
