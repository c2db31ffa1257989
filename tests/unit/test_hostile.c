/* The host against a misbehaving server on loopback (hostile_server.h):
 * garbage instead of HTTP, a stall mid-response, a close right after the
 * headers, a chunked encoding error, a watch event that never ends. Each
 * call fails with an error naming the request and what went wrong, while a
 * well-behaved cluster on the same loop keeps being served; an informer
 * backs off and recovers once the server behaves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_apiserver.h"
#include "hostile_server.h"
#include "is_alloc.h"
#include "is_err.h"
#include "is_informer.h"
#include "is_kapi.h"
#include "is_loop.h"
#include "testing.h"

static const is_kres_t pods = { "", "v1", "pods", 1 };
static const is_kres_t configmaps = { "", "v1", "configmaps", 1 };

typedef struct {
    int calls;
    long code;
    char reason[64];
    char message[512];
} outcome_t;

static void on_done(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    (void)req;
    outcome_t *o = ud;
    o->calls++;
    o->code = res->code;
    snprintf(o->reason, sizeof o->reason, "%s", res->status ? res->status->reason : "");
    snprintf(o->message, sizeof o->message, "%s", res->error ? res->error : "");
}

static void run_until(is_loop_t *loop, const int *flag, uint64_t max_ms) {
    is_loop_update_time(loop);
    uint64_t deadline = is_loop_now(loop) + max_ms;
    while (!*flag && is_loop_now(loop) < deadline) {
        is_loop_run_once(loop, 20);
        is_loop_update_time(loop);
    }
}

static void good_route(const fake_req_t *req, int *status, char *body, size_t cap, void *ud) {
    (void)req;
    (void)ud;
    *status = 200;
    snprintf(body, cap, "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p1\"}}");
}

typedef struct {
    is_loop_t loop;
    hostile_t bad;
    fake_api_t api;
    is_cluster_t hostile, good;
} env_t;

/* One call to the hostile server in the given mode; the message must name
 * the request and contain want. */
static void expect_failure(env_t *e, hostile_mode_t mode, const char *want) {
    hostile_set_mode(&e->bad, mode);
    outcome_t out = {0};
    CHECK_INT(is_kapi_get(&e->hostile, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p1" }, on_done,
                          &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 10000);
    CHECK_INT(out.calls, 1);
    CHECK_INT(out.code, 0);
    CHECK_STR(out.reason, "TransportError");
    char url[128];
    snprintf(url, sizeof url, "GET http://127.0.0.1:%d/api/v1/namespaces/ns/pods/p1: ", e->bad.port);
    if (getenv("IS_TEST_VERBOSE") || !strstr(out.message, url) || !strstr(out.message, want))
        fprintf(stderr, "mode %d: message %s\n", (int)mode, out.message);
    CHECK(strstr(out.message, url) == out.message);
    CHECK(strstr(out.message, want) != NULL);
}

static void test_requests(env_t *e) {
    expect_failure(e, HOSTILE_GARBAGE, "HTTP/0.9");
    expect_failure(e, HOSTILE_HEADERS_ONLY, "transfer closed with 100 bytes remaining to read");
    expect_failure(e, HOSTILE_BAD_CHUNK, "Illegal or missing hexadecimal sequence in chunked-encoding");

    /* A stall: the call in flight is abandoned after the idle timeout,
     * and meanwhile the other cluster is served on the same loop. */
    hostile_set_mode(&e->bad, HOSTILE_STALL);
    outcome_t stalled = {0}, served = {0};
    CHECK_INT(is_kapi_get(&e->hostile, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p1" }, on_done,
                          &stalled, NULL), IS_OK);
    CHECK_INT(is_kapi_get(&e->good, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p1" }, on_done,
                          &served, NULL), IS_OK);
    run_until(&e->loop, &served.calls, 5000);
    CHECK_INT(served.calls, 1);
    CHECK_INT(served.code, 200);
    CHECK_INT(stalled.calls, 0);
    run_until(&e->loop, &stalled.calls, 10000);
    CHECK_INT(stalled.calls, 1);
    CHECK_STR(stalled.reason, "TransportError");
    CHECK(strstr(stalled.message, "Operation too slow") != NULL);
}

typedef struct {
    int errors, adds;
    char reason[64], message[256];
    uint64_t retry_ms, last_retry_ms;
} seen_t;

static void on_add(is_informer_t *inf, const char *key, const char *obj, size_t len) {
    (void)key;
    (void)obj;
    (void)len;
    ((seen_t *)inf->data)->adds++;
}

static void on_error(is_informer_t *inf, const char *what, long code, const char *reason,
                     const char *message, uint64_t retry_ms) {
    (void)what;
    (void)code;
    seen_t *s = inf->data;
    s->last_retry_ms = retry_ms;
    if (s->errors++) return;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    snprintf(s->message, sizeof s->message, "%s", message);
    s->retry_ms = retry_ms;
}

static void test_informer(env_t *e) {
    hostile_set_mode(&e->bad, HOSTILE_ENDLESS_EVENT);
    static const is_informer_handlers_t h = { on_add, NULL, NULL, NULL, on_error };
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    is_informer_opts_t o = { .name = "cms", .cluster = &e->hostile, .resource = configmaps,
                             .backoff_base_ms = 100, .backoff_max_ms = 60000, .max_event = 64 * 1024 };
    is_informer_t inf;
    CHECK_INT(is_informer_init(&inf, &o, &h, &seen), IS_OK);
    CHECK_INT(is_informer_start(&inf), IS_OK);
    run_until(&e->loop, &seen.errors, 10000);
    CHECK_STR(seen.reason, "EventTooLarge");
    CHECK_STR(seen.message, "a watch event of configmaps exceeds the limit of 65536 bytes");
    /* It backs off rather than reconnecting at once, longer each time. */
    CHECK(seen.retry_ms >= 100);
    int three = 0;
    for (int i = 0; i < 100 && !three; i++) {
        run_until(&e->loop, &three, 100);
        three = seen.errors >= 3;
    }
    CHECK(three);
    CHECK(seen.last_retry_ms >= 400);
    /* The server behaves again: the informer gets there by itself. */
    hostile_set_mode(&e->bad, HOSTILE_GOOD);
    run_until(&e->loop, &seen.adds, 20000);
    CHECK_INT(seen.adds, 1);
    /* A healthy watch has forgotten the outage: the next break is retried
     * after the base delay, not after the longest one so far. */
    int before = seen.errors;
    hostile_set_mode(&e->bad, HOSTILE_GARBAGE);
    int more = 0;
    for (int i = 0; i < 100 && !more; i++) {
        run_until(&e->loop, &more, 100);
        more = seen.errors > before;
    }
    CHECK(more);
    CHECK(seen.last_retry_ms <= 200);
    is_informer_close(&inf);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    size_t before = is_alloc_used();
    env_t e;
    memset(&e, 0, sizeof e);
    CHECK_INT(is_loop_init(&e.loop), IS_OK);
    CHECK_INT(hostile_start(&e.bad, HOSTILE_GARBAGE), 0);
    CHECK_INT(fake_api_start(&e.api, good_route, NULL), 0);
    CHECK_INT(fake_cluster_init(&e.hostile, &e.loop, "hostile", e.bad.port), IS_OK);
    CHECK_INT(fake_cluster_init(&e.good, &e.loop, "good", e.api.port), IS_OK);
    e.hostile.idle_timeout_ms = 1000;
    fprintf(stderr, "-- test_requests\n");
    test_requests(&e);
    fprintf(stderr, "-- test_informer\n");
    test_informer(&e);
    is_cluster_close(&e.hostile);
    is_cluster_close(&e.good);
    fake_api_stop(&e.api);
    hostile_stop(&e.bad);
    is_loop_close(&e.loop);
    CHECK_INT(is_alloc_used(), before);
    curl_global_cleanup();
    TESTING_DONE();
}
