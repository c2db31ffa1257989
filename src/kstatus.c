/* Kubernetes API errors.
 *
 * A failed call may answer with a metav1.Status, with some other JSON, with
 * an HTML or text page from a proxy, or with nothing at all. Whatever came
 * back, the caller gets a code, a reason and a one-line message, so every
 * error log line and condition reads the same way. */
#include <stdio.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_json.h"
#include "is_kstatus.h"

/* A proxy's HTML error page is not worth more than this in a log line. */
#define KSTATUS_MAX_BODY_MESSAGE 1024

const char *is_kstatus_reason_for(long http_code) {
    /* The reasons k8s.io/apimachinery/pkg/api/errors uses for each code. */
    switch (http_code) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 406: return "NotAcceptable";
    case 409: return "Conflict";
    case 410: return "Expired";  /* "too old resource version" on list/watch */
    case 413: return "RequestEntityTooLarge";
    case 415: return "UnsupportedMediaType";
    case 422: return "Invalid";
    case 429: return "TooManyRequests";
    case 500: return "InternalError";
    case 503: return "ServiceUnavailable";
    case 504: return "Timeout";
    }
    return "Unknown";
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Reads an optional non-empty string field. Absent, empty, non-string and
 * undecodable fields leave *out NULL; only running out of memory fails. */
static int status_string(const is_json_t *doc, const char *key, char **out) {
    *out = NULL;
    int tok = is_json_get(doc, 0, key);
    if (tok < 0)
        return IS_OK;
    int rc = is_json_strdup(doc, tok, out);
    if (rc == IS_ENOMEM)
        return rc;
    if (rc == IS_OK && (*out)[0] == '\0') {
        is_free(*out);
        *out = NULL;
    }
    return IS_OK;
}

/* Fills code, reason and message from a Status object. A JSON object of
 * another kind (an aggregated API's own error, say) is not trusted. */
static int decode_status_json(is_kstatus_t *st, const char *text, size_t len) {
    is_json_t doc;
    int rc = is_json_parse(&doc, text, len, NULL);
    if (rc != IS_OK || doc.toks[0].type != IS_JSON_OBJECT) {
        is_json_free(&doc);
        return rc == IS_ENOMEM ? rc : IS_OK;
    }
    char *kind = NULL;
    rc = status_string(&doc, "kind", &kind);
    if (rc == IS_OK && (!kind || strcmp(kind, "Status") == 0)) {
        long long code;
        /* Trust only a plausible HTTP code; "code" means other things in
         * other APIs. */
        if (is_json_int(&doc, is_json_get(&doc, 0, "code"), &code) == IS_OK &&
            code >= 100 && code <= 599)
            st->code = (long)code;
        rc = status_string(&doc, "reason", &st->reason);
        if (rc == IS_OK)
            rc = status_string(&doc, "message", &st->message);
    }
    is_free(kind);
    is_json_free(&doc);
    return rc;
}

/* The body as a message: trimmed, one line (so a log line stays one line),
 * and cut at a character boundary when long. */
static char *body_message(const char *text, size_t len) {
    int truncated = 0;
    if (len > KSTATUS_MAX_BODY_MESSAGE) {
        len = KSTATUS_MAX_BODY_MESSAGE;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
            len--;  /* do not split a UTF-8 sequence */
        while (len > 0 && is_space(text[len - 1]))
            len--;
        truncated = 1;
    }
    char *msg = is_malloc(len + 4);
    if (!msg)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        msg[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    memcpy(msg + len, truncated ? "..." : "", truncated ? 4 : 1);
    return msg;
}

int is_kstatus_decode(is_kstatus_t *st, long http_code, const char *body, size_t len) {
    st->code = http_code;
    st->reason = NULL;
    st->message = NULL;

    if (!body)
        len = 0;
    while (len > 0 && is_space(body[0])) {
        body++;
        len--;
    }
    while (len > 0 && is_space(body[len - 1]))
        len--;

    int rc = IS_OK;
    if (len > 0 && body[0] == '{')
        rc = decode_status_json(st, body, len);
    if (rc == IS_OK && !st->reason) {
        st->reason = is_strdup(is_kstatus_reason_for(st->code));
        if (!st->reason)
            rc = IS_ENOMEM;
    }
    if (rc == IS_OK && !st->message) {
        if (len > 0) {
            st->message = body_message(body, len);
        } else {
            char text[32];
            snprintf(text, sizeof text, "HTTP %ld", st->code);
            st->message = is_strdup(text);
        }
        if (!st->message)
            rc = IS_ENOMEM;
    }
    if (rc != IS_OK)
        is_kstatus_free(st);
    return rc;
}

void is_kstatus_free(is_kstatus_t *st) {
    is_free(st->reason);
    is_free(st->message);
    st->reason = NULL;
    st->message = NULL;
}
