/* Growable byte buffer. The caller owns the struct; is_buf_free releases the
 * bytes. data is always NUL-terminated when non-NULL (the NUL is not counted
 * in len), so a buffer holding text can be passed to C string functions. */
#ifndef IS_BUF_H
#define IS_BUF_H

#include <stddef.h>

typedef struct is_buf_s {
    char *data;
    size_t len;
    size_t cap;
} is_buf_t;

void is_buf_init(is_buf_t *b);
void is_buf_free(is_buf_t *b);
void is_buf_reset(is_buf_t *b);  /* len = 0, keeps capacity */
int is_buf_reserve(is_buf_t *b, size_t extra);
int is_buf_append(is_buf_t *b, const void *data, size_t len);
int is_buf_appends(is_buf_t *b, const char *s);
int is_buf_printf(is_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s percent-encoded for use in a URL query or path segment. */
int is_buf_append_urlenc(is_buf_t *b, const char *s);
/* Appends s as a JSON string literal, quotes included. */
int is_buf_append_jsonstr(is_buf_t *b, const char *s, size_t len);
/* Removes the first n bytes. */
void is_buf_consume(is_buf_t *b, size_t n);
/* Appends the whole file at path: IS_EIO (errno says why) when it cannot be
 * read, IS_ELIMIT when it holds more than max bytes; b is unchanged then. */
int is_buf_append_file(is_buf_t *b, const char *path, size_t max);
/* Hands the bytes to the caller (who frees them with is_free) and resets b. */
char *is_buf_steal(is_buf_t *b, size_t *len);

#endif
