/* Newline framing of a watch stream.
 *
 * Invariant between feeds: pending never holds a "\n", because every
 * complete line is handed out before is_framer_feed returns. So each new
 * chunk is searched once, by itself, and a multi-megabyte event arriving in
 * thousands of small chunks costs linear time, not a rescan of everything
 * buffered so far on each chunk. A line that arrives whole inside one chunk
 * is passed straight from the chunk without being copied. */
#include <string.h>

#include "is_err.h"
#include "is_framer.h"

/* Past this size the buffer of one giant event is given back once the event
 * is out, rather than held for the life of the watch. */
#define FRAMER_KEEP_CAPACITY (1024 * 1024)

void is_framer_init(is_framer_t *f, size_t max_line) {
    is_buf_init(&f->pending);
    f->max_line = max_line;
}

void is_framer_free(is_framer_t *f) {
    is_buf_free(&f->pending);
}

void is_framer_reset(is_framer_t *f) {
    if (f->pending.cap > FRAMER_KEEP_CAPACITY)
        is_buf_free(&f->pending);
    else
        is_buf_reset(&f->pending);
}

/* Whether a partial line of n bytes may still become a line within the cap;
 * one byte of slack for a "\r" that the coming "\n" will strip. */
static int framer_partial_fits(const is_framer_t *f, size_t n) {
    return f->max_line == 0 || n <= f->max_line + 1;
}

/* On any error the partial line is dropped: the stream is out of step and
 * the caller reconnects, resuming from its last resourceVersion. The same
 * goes for a callback that stops the feed: the rest of the chunk is not
 * kept, since the caller is tearing the stream down. */
int is_framer_feed(is_framer_t *f, const char *data, size_t len,
                   is_framer_line_cb cb, void *cbdata) {
    int rc = IS_OK;
    size_t pos = 0;
    while (pos < len) {
        const char *start = data + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t seg = nl ? (size_t)(nl - start) : len - pos;

        if (!framer_partial_fits(f, f->pending.len + seg)) {
            rc = IS_ELIMIT;
            break;
        }
        if (!nl) {
            rc = is_buf_append(&f->pending, start, seg);
            if (rc != IS_OK)
                break;
            return IS_OK;
        }

        const char *line = start;
        size_t line_len = seg;
        if (f->pending.len > 0) {
            rc = is_buf_append(&f->pending, start, seg);
            if (rc != IS_OK)
                break;
            line = f->pending.data;
            line_len = f->pending.len;
        }
        pos += seg + 1;
        if (line_len > 0 && line[line_len - 1] == '\r')
            line_len--;
        if (f->max_line && line_len > f->max_line) {
            rc = IS_ELIMIT;
            break;
        }
        if (line_len > 0)
            rc = cb(line, line_len, cbdata);
        is_framer_reset(f);
        if (rc != 0)
            return rc;
    }
    if (rc != IS_OK)
        is_framer_reset(f);
    return rc;
}
