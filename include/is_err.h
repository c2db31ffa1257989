/* Status codes shared by every module.
 *
 * Every function that can fail returns one of these: IS_OK (zero) on success,
 * a negative code otherwise. Out-of-memory is an ordinary error (IS_ENOMEM),
 * never an abort: a controller that serves thousands of requests must shed one
 * request, not the process. */
#ifndef IS_ERR_H
#define IS_ERR_H

#include <stddef.h>

enum {
    IS_OK = 0,
    IS_ENOMEM = -1,    /* an allocation failed */
    IS_EINVAL = -2,    /* bad argument or malformed input */
    IS_EPARSE = -3,    /* input did not parse (JSON, YAML, flags) */
    IS_EIO = -4,       /* a file could not be read */
    IS_ENOTFOUND = -5, /* the named thing does not exist */
    IS_ETLS = -6,      /* TLS or certificate problem */
    IS_EHTTP = -7,     /* transport error talking to an API server */
    IS_ELUA = -8,      /* a Lua script failed */
    IS_ELIMIT = -9,    /* a configured limit was reached */
    IS_EAGAIN = -10    /* try again later (queue empty, no data yet) */
};

/* A short, static, human-readable name for a status code. */
const char *is_strerror(int err);
/* Writes one sentence to err (when err and errlen are set) and returns
 * code, so a failure reads "return is_errf(err, len, IS_EIO, ...)". */
int is_errf(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
