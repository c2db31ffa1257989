/* Kubernetes Status decoding: real apiserver bodies, bodies that are not
 * Status objects, and the HTTP-code fallbacks. */
#include "is_alloc.h"
#include "is_err.h"
#include "is_json.h"
#include "is_kstatus.h"
#include "testing.h"

static void check_fixture(const char *name, long http_code, long code,
                          const char *reason, const char *message) {
    size_t len;
    char *body = testing_fixture(name, &len);
    is_kstatus_t st;
    CHECK_INT(is_kstatus_decode(&st, http_code, body, len), IS_OK);
    CHECK_INT(st.code, code);
    CHECK_STR(st.reason, reason);
    CHECK_STR(st.message, message);
    is_kstatus_free(&st);
    free(body);
}

static void test_fixtures(void) {
    check_fixture("status/notfound.json", 404, 404, "NotFound",
                  "internalrequests.appstudio.redhat.com \"req-1\" not found");
    /* 409 maps to Conflict, but the body's own reason wins. */
    check_fixture("status/alreadyexists.json", 409, 409, "AlreadyExists",
                  "pipelineruns.tekton.dev \"req-1-pipelinerun\" already exists");
    check_fixture("status/conflict.json", 409, 409, "Conflict",
                  "Operation cannot be fulfilled on internalrequests.appstudio.redhat.com "
                  "\"req-1\": the object has been modified; please apply your changes to "
                  "the latest version and try again");
    check_fixture("status/forbidden.json", 403, 403, "Forbidden",
                  "pipelineruns.tekton.dev is forbidden: User "
                  "\"system:serviceaccount:internal-services:controller\" cannot create "
                  "resource \"pipelineruns\" in API group \"tekton.dev\" in the namespace "
                  "\"team-a\"");
    check_fixture("status/invalid.json", 422, 422, "Invalid",
                  "InternalRequest.appstudio.redhat.com \"req-bad\" is invalid: "
                  "[spec.request: Required value, spec.timeout: Invalid value: \"-5m\": "
                  "spec.timeout in body should match '^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$']");
}

/* A watch reports an expired resourceVersion as an ERROR event inside a 200
 * response; the Status is the event's object and its code wins. */
static void test_watch_error_event(void) {
    size_t len;
    char *event = testing_fixture("status/expired-watch-event.json", &len);
    is_json_t doc;
    CHECK_INT(is_json_parse(&doc, event, len, NULL), IS_OK);
    size_t olen = 0;
    const char *obj = is_json_raw(&doc, is_json_get(&doc, 0, "object"), &olen);
    CHECK(obj != NULL);
    is_kstatus_t st;
    CHECK_INT(is_kstatus_decode(&st, 200, obj, olen), IS_OK);
    CHECK_INT(st.code, 410);
    CHECK_STR(st.reason, "Expired");
    CHECK_STR(st.message, "too old resource version: 1043 (2207)");
    is_kstatus_free(&st);
    is_json_free(&doc);
    free(event);
}

static void test_reason_table(void) {
    static const struct { long code; const char *reason; } table[] = {
        { 400, "BadRequest" }, { 401, "Unauthorized" }, { 403, "Forbidden" },
        { 404, "NotFound" }, { 405, "MethodNotAllowed" }, { 406, "NotAcceptable" },
        { 409, "Conflict" }, { 410, "Expired" }, { 413, "RequestEntityTooLarge" },
        { 415, "UnsupportedMediaType" }, { 422, "Invalid" }, { 429, "TooManyRequests" },
        { 500, "InternalError" }, { 503, "ServiceUnavailable" }, { 504, "Timeout" },
        { 0, "Unknown" }, { 200, "Unknown" }, { 418, "Unknown" }, { 502, "Unknown" },
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        CHECK_STR(is_kstatus_reason_for(table[i].code), table[i].reason);
        /* An empty answer falls back to the same reason. */
        is_kstatus_t st;
        CHECK_INT(is_kstatus_decode(&st, table[i].code, NULL, 0), IS_OK);
        CHECK_STR(st.reason, table[i].reason);
        char want[32];
        snprintf(want, sizeof want, "HTTP %ld", table[i].code);
        CHECK_STR(st.message, want);
        is_kstatus_free(&st);
    }
}

static void decode_text(is_kstatus_t *st, long code, const char *body) {
    CHECK_INT(is_kstatus_decode(st, code, body, strlen(body)), IS_OK);
}

static void test_fallbacks(void) {
    static const struct {
        long http_code;
        const char *body;
        long code;
        const char *reason, *message;
    } cases[] = {
        /* Whitespace only is empty. */
        { 503, " \r\n\t ", 503, "ServiceUnavailable", "HTTP 503" },
        /* Plain text from a non-resource path. */
        { 404, "404 page not found\n", 404, "NotFound", "404 page not found" },
        /* A proxy's HTML page becomes one line. */
        { 502, "\n<html>\r\n<body>Bad Gateway</body>\n</html>\n", 502, "Unknown",
          "<html>  <body>Bad Gateway</body> </html>" },
        /* A Status without reason and message: filled from the code, and
         * the body's code wins over the transport's. */
        { 500, "{\"kind\":\"Status\",\"status\":\"Failure\",\"code\":429}", 429,
          "TooManyRequests", "{\"kind\":\"Status\",\"status\":\"Failure\",\"code\":429}" },
        /* Empty strings count as missing. */
        { 500, "{\"kind\":\"Status\",\"reason\":\"\",\"message\":\"boom\",\"code\":500}",
          500, "InternalError", "boom" },
        /* Escapes in the message are decoded. */
        { 400, "{\"message\":\"bad \\\"x\\\" \\u00e9\",\"reason\":\"BadRequest\"}", 400,
          "BadRequest", "bad \"x\" \xc3\xa9" },
        /* Another kind of object, or an implausible code, is not trusted. */
        { 502, "{\"kind\":\"Error\",\"reason\":\"Nope\",\"code\":404}", 502, "Unknown",
          "{\"kind\":\"Error\",\"reason\":\"Nope\",\"code\":404}" },
        { 500, "{\"code\":7,\"message\":\"grpc says no\"}", 500, "InternalError",
          "grpc says no" },
        { 500, "{\"code\":\"404\",\"reason\":7,\"message\":null}", 500, "InternalError",
          "{\"code\":\"404\",\"reason\":7,\"message\":null}" },
        /* Broken JSON is just text. */
        { 500, "{\"kind\":\"Status\",\"message\":\"cut", 500, "InternalError",
          "{\"kind\":\"Status\",\"message\":\"cut" },
        /* Transport failures have no HTTP code at all. */
        { 0, "", 0, "Unknown", "HTTP 0" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        is_kstatus_t st;
        decode_text(&st, cases[i].http_code, cases[i].body);
        CHECK_INT(st.code, cases[i].code);
        CHECK_STR(st.reason, cases[i].reason);
        CHECK_STR(st.message, cases[i].message);
        is_kstatus_free(&st);
    }
}

static void test_long_body_truncated(void) {
    /* 1000 ASCII bytes then 'é' (2 bytes) straddling the 1 KiB cut. */
    char body[4000];
    memset(body, 'a', 1023);
    memcpy(body + 1023, "\xc3\xa9", 2);
    memset(body + 1025, 'b', sizeof body - 1026);
    body[sizeof body - 1] = 0;
    is_kstatus_t st;
    decode_text(&st, 500, body);
    CHECK_INT(strlen(st.message), 1023 + 3);
    CHECK(strncmp(st.message, body, 1023) == 0);
    CHECK_STR(st.message + 1023, "...");
    is_kstatus_free(&st);
    /* Exactly at the cap: kept whole. */
    body[1024] = 0;
    memset(body, 'c', 1024);
    decode_text(&st, 500, body);
    CHECK_INT(strlen(st.message), 1024);
    is_kstatus_free(&st);
}

/* Each allocation fails in turn: IS_ENOMEM, nothing leaked, and the struct
 * safe to free again. */
static void test_oom(void) {
    size_t len;
    char *body = testing_fixture("status/invalid.json", &len);
    const char *text = "plain text error";
    size_t base = is_alloc_used();
    for (int which = 0; which < 3; which++) {
        int failures = 0;
        for (long fail = 1;; fail++) {
            is_kstatus_t st;
            is_alloc_fail_after(fail);
            int rc = which == 0 ? is_kstatus_decode(&st, 422, body, len)
                   : which == 1 ? is_kstatus_decode(&st, 500, text, strlen(text))
                   : is_kstatus_decode(&st, 404, NULL, 0);
            is_alloc_fail_after(0);
            if (rc == IS_OK) {
                CHECK(st.reason && st.message);
                is_kstatus_free(&st);
                break;
            }
            CHECK_INT(rc, IS_ENOMEM);
            CHECK(st.reason == NULL && st.message == NULL);
            is_kstatus_free(&st);
            failures++;
            CHECK_INT(is_alloc_used(), base);
        }
        CHECK(failures >= 2);
    }
    free(body);
}

int main(void) {
    RUN(test_fixtures);
    RUN(test_watch_error_event);
    RUN(test_reason_table);
    RUN(test_fallbacks);
    RUN(test_long_body_truncated);
    RUN(test_oom);
    TESTING_DONE();
}
