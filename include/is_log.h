/* Structured logging: one JSON object per line on stderr, the format log
 * collectors on Kubernetes expect, with a level filter. The encoder and the
 * time format can be switched to what controller-runtime's zap flags ask
 * for (--zap-encoder, --zap-time-encoding), so a deployment's log pipeline
 * keeps parsing the lines it parsed before. */
#ifndef IS_LOG_H
#define IS_LOG_H

#include <time.h>
#include "is_buf.h"

enum { IS_LOG_DEBUG = 0, IS_LOG_INFO, IS_LOG_WARN, IS_LOG_ERROR };
enum { IS_LOG_JSON = 0, IS_LOG_CONSOLE };
/* iso8601 (the default) is "2006-01-02T15:04:05.000Z"; epoch and millis
 * are fractional numbers, nano an integer, as zap writes them. */
enum { IS_LOG_TIME_ISO8601 = 0, IS_LOG_TIME_RFC3339, IS_LOG_TIME_RFC3339NANO,
       IS_LOG_TIME_EPOCH, IS_LOG_TIME_MILLIS, IS_LOG_TIME_NANO };

void is_log_set_level(int level);
int is_log_level(void);
void is_log_set_format(int format);
void is_log_set_time_encoding(int encoding);
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int is_log_parse_level(const char *name);
/* --zap-log-level: "debug", "info", "error", "panic" (errors) or a positive
 * verbosity (debug); -1 when invalid. */
int is_log_parse_zap_level(const char *name);
/* --zap-stacktrace-level: "info", "error" or "panic"; -1 when invalid. */
int is_log_parse_stacktrace_level(const char *name);
/* "json" or "console"; -1 when unknown. */
int is_log_parse_format(const char *name);
/* "epoch", "millis", "nano", "iso8601", "rfc3339", "rfc3339nano". */
int is_log_parse_time_encoding(const char *name);
/* fields is a JSON object body without braces ("\"k\":\"v\",\"n\":1") or
 * NULL. Never fails: a line that cannot be formatted is written plainly. */
void is_log_write(int level, const char *msg, const char *fields);
/* Formats one line as is_log_write would at time ts (for tests). */
int is_log_format(is_buf_t *line, const struct timespec *ts, int level, const char *msg,
                  const char *fields);
/* printf-style message, no fields. */
void is_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
