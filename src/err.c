/* Names of the status codes in is_err.h, for log lines, and error sentences. */
#include "is_err.h"

#include <stdarg.h>
#include <stdio.h>

const char *is_strerror(int err) {
    switch (err) {
    case IS_OK: return "ok";
    case IS_ENOMEM: return "out of memory";
    case IS_EINVAL: return "invalid argument";
    case IS_EPARSE: return "parse error";
    case IS_EIO: return "I/O error";
    case IS_ENOTFOUND: return "not found";
    case IS_ETLS: return "TLS error";
    case IS_EHTTP: return "HTTP transport error";
    case IS_ELUA: return "Lua error";
    case IS_ELIMIT: return "limit reached";
    case IS_EAGAIN: return "try again";
    }
    /* Callbacks may return their own non-zero codes through our APIs, so an
     * unknown value is not a bug worth crashing on. */
    return "unknown error";
}

int is_errf(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
