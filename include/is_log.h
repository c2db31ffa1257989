/* Structured logging: one JSON object per line on stderr, the format log
 * collectors on Kubernetes expect, with a level filter. */
#ifndef IS_LOG_H
#define IS_LOG_H

#include "is_buf.h"

enum { IS_LOG_DEBUG = 0, IS_LOG_INFO, IS_LOG_WARN, IS_LOG_ERROR };

void is_log_set_level(int level);
int is_log_level(void);
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int is_log_parse_level(const char *name);
/* fields is a JSON object body without braces ("\"k\":\"v\",\"n\":1") or
 * NULL. Never fails: a line that cannot be formatted is written plainly. */
void is_log_write(int level, const char *msg, const char *fields);
/* printf-style message, no fields. */
void is_logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
