/* Kubernetes API errors (metav1.Status) decoded for logs and conditions.
 *
 * The API server answers a failed call with a Status object; the host turns
 * any failed response (also non-Status bodies, e.g. from a proxy) into this
 * struct so that every error line names code, reason and message. */
#ifndef IS_KSTATUS_H
#define IS_KSTATUS_H

#include <stddef.h>

typedef struct is_kstatus_s {
    long code;      /* HTTP status code; from the body's "code" when present */
    char *reason;   /* e.g. "NotFound", "AlreadyExists", "Expired"; never NULL */
    char *message;  /* never NULL */
} is_kstatus_t;

/* Decodes body (may be NULL or not JSON) of a response with HTTP code
 * http_code. Missing fields are filled from the HTTP code: reason from the
 * standard mapping (404 -> NotFound, 409 -> Conflict, 410 -> Expired, 403 ->
 * Forbidden, 401 -> Unauthorized, ...), message from the body text. */
int is_kstatus_decode(is_kstatus_t *st, long http_code, const char *body, size_t len);
void is_kstatus_free(is_kstatus_t *st);
/* The reason Kubernetes uses for an HTTP code, "Unknown" when none. */
const char *is_kstatus_reason_for(long http_code);

#endif
