/* Growable byte buffer.
 *
 * Appends either succeed completely or leave the buffer as it was, so a
 * caller that gets IS_ENOMEM can still free or reuse the buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "is_alloc.h"
#include "is_buf.h"
#include "is_err.h"

void is_buf_init(is_buf_t *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void is_buf_free(is_buf_t *b) {
    is_free(b->data);
    is_buf_init(b);
}

void is_buf_reset(is_buf_t *b) {
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

int is_buf_reserve(is_buf_t *b, size_t extra) {
    /* One byte more than asked for, for the terminating NUL. */
    if (extra > SIZE_MAX - 1 - b->len)
        return IS_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return IS_OK;
    /* Doubling keeps a long run of small appends linear overall. */
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = is_realloc(b->data, cap);
    if (!p)
        return IS_ENOMEM;
    if (!b->data)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return IS_OK;
}

int is_buf_append(is_buf_t *b, const void *data, size_t len) {
    int rc = is_buf_reserve(b, len);
    if (rc != IS_OK)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return IS_OK;
}

int is_buf_appends(is_buf_t *b, const char *s) {
    return is_buf_append(b, s, strlen(s));
}

int is_buf_printf(is_buf_t *b, const char *fmt, ...) {
    va_list ap;
    /* Try in the space already there; most messages fit. */
    size_t room = b->cap > b->len ? b->cap - b->len : 0;
    va_start(ap, fmt);
    int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (b->data)
            b->data[b->len] = '\0';
        return IS_EINVAL;
    }
    if ((size_t)n < room) {
        b->len += (size_t)n;
        return IS_OK;
    }
    /* vsnprintf may have overwritten the NUL with a partial result. */
    if (b->data)
        b->data[b->len] = '\0';
    int rc = is_buf_reserve(b, (size_t)n);
    if (rc != IS_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return IS_OK;
}

static const char hex_digits[] = "0123456789ABCDEF";

int is_buf_append_urlenc(is_buf_t *b, const char *s) {
    size_t n = strlen(s);
    /* Reserve the worst case up front so a failure leaves b untouched. */
    if (n > (SIZE_MAX - 1) / 3)
        return IS_ENOMEM;
    int rc = is_buf_reserve(b, n * 3);
    if (rc != IS_OK)
        return rc;
    char *out = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* RFC 3986 unreserved characters pass; everything else is encoded,
         * which is safe in both a path segment and a query value. */
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
            *out++ = (char)c;
        } else {
            *out++ = '%';
            *out++ = hex_digits[c >> 4];
            *out++ = hex_digits[c & 15];
        }
    }
    b->len = (size_t)(out - b->data);
    b->data[b->len] = '\0';
    return IS_OK;
}

int is_buf_append_jsonstr(is_buf_t *b, const char *s, size_t len) {
    /* Worst case: every byte becomes \u00XX, plus two quotes. */
    if (len > (SIZE_MAX - 3) / 6)
        return IS_ENOMEM;
    int rc = is_buf_reserve(b, len * 6 + 2);
    if (rc != IS_OK)
        return rc;
    char *out = b->data + b->len;
    *out++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': *out++ = '\\'; *out++ = '"'; break;
        case '\\': *out++ = '\\'; *out++ = '\\'; break;
        case '\n': *out++ = '\\'; *out++ = 'n'; break;
        case '\r': *out++ = '\\'; *out++ = 'r'; break;
        case '\t': *out++ = '\\'; *out++ = 't'; break;
        case '\b': *out++ = '\\'; *out++ = 'b'; break;
        case '\f': *out++ = '\\'; *out++ = 'f'; break;
        default:
            if (c < 0x20) {
                memcpy(out, "\\u00", 4);
                out += 4;
                *out++ = hex_digits[c >> 4];
                *out++ = hex_digits[c & 15];
            } else {
                /* Bytes >= 0x80 are copied: the text is UTF-8 already. */
                *out++ = (char)c;
            }
        }
    }
    *out++ = '"';
    b->len = (size_t)(out - b->data);
    b->data[b->len] = '\0';
    return IS_OK;
}

void is_buf_consume(is_buf_t *b, size_t n) {
    if (n >= b->len) {
        is_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *is_buf_steal(is_buf_t *b, size_t *len) {
    char *p = b->data;
    size_t n = b->len;
    /* An untouched buffer still hands out a real empty string, so NULL
     * always means out of memory to the caller. */
    if (!p) {
        p = is_strdup("");
        n = 0;
    }
    is_buf_init(b);
    if (len)
        *len = p ? n : 0;
    return p;
}

int is_buf_append_file(is_buf_t *b, const char *path, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) return IS_EIO;
    size_t start = b->len;
    int rc = IS_OK;
    char chunk[8192];
    for (;;) {
        size_t got = fread(chunk, 1, sizeof chunk, f);
        if (got == 0) {
            if (ferror(f)) rc = IS_EIO;
            break;
        }
        if (b->len - start + got > max) {
            rc = IS_ELIMIT;
            break;
        }
        if ((rc = is_buf_append(b, chunk, got)) != IS_OK) break;
    }
    int saved = errno;
    fclose(f);
    errno = saved;
    if (rc != IS_OK) {
        b->len = start;
        if (b->data) b->data[start] = '\0';
    }
    return rc;
}
