/* Newline framing of a watch stream.
 *
 * The API server sends one JSON event per line, and an HTTP chunk may end
 * anywhere, also inside a multi-byte character or a multi-megabyte event.
 * The framer accumulates bytes and hands out each complete line once. */
#ifndef IS_FRAMER_H
#define IS_FRAMER_H

#include <stddef.h>
#include "is_buf.h"

typedef struct is_framer_s {
    is_buf_t pending;   /* bytes after the last newline */
    size_t max_line;    /* lines longer than this are an error (0 = no cap) */
} is_framer_t;

/* Called once per complete line, without its "\n" (and without a "\r"
 * before it). A non-zero return stops the feed and is returned by it. */
typedef int (*is_framer_line_cb)(const char *line, size_t len, void *data);

void is_framer_init(is_framer_t *f, size_t max_line);
void is_framer_free(is_framer_t *f);
/* Feeds bytes; calls cb for each complete non-empty line. Returns IS_OK, the
 * callback's non-zero value, IS_ELIMIT for an over-long line, or IS_ENOMEM. */
int is_framer_feed(is_framer_t *f, const char *data, size_t len,
                   is_framer_line_cb cb, void *cbdata);
/* Drops any partial line (after a reconnect). */
void is_framer_reset(is_framer_t *f);

#endif
