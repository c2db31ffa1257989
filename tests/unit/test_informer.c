/* The informer against the fake API server: a watch event longer than the
 * informer's cap ends the stream with an error that names the resource and
 * the limit, and the informer retries instead of buffering without bound. */
#include <stdio.h>
#include <string.h>

#include "fake_apiserver.h"
#include "is_alloc.h"
#include "is_err.h"
#include "is_informer.h"
#include "is_loop.h"
#include "testing.h"

static void route(const fake_req_t *req, int *status, char *body, size_t cap, void *ud) {
    (void)ud;
    *status = 200;
    if (strstr(req->uri, "watch=")) {
        /* One event of 400 bytes that never ends in a newline. */
        size_t n = snprintf(body, cap, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"");
        while (n < 400 && n + 1 < cap) body[n++] = 'x';
        body[n] = 0;
    } else {
        snprintf(body, cap, "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"7\"},\"items\":[]}");
    }
}

typedef struct {
    int errors;
    char what[16], reason[64], message[256];
    int synced;
} seen_t;

static void on_synced(is_informer_t *inf) { ((seen_t *)inf->data)->synced++; }

static void on_error(is_informer_t *inf, const char *what, long code, const char *reason,
                     const char *message, uint64_t retry_ms) {
    (void)code;
    (void)retry_ms;
    seen_t *s = inf->data;
    if (s->errors++) return;
    snprintf(s->what, sizeof s->what, "%s", what);
    snprintf(s->reason, sizeof s->reason, "%s", reason ? reason : "");
    snprintf(s->message, sizeof s->message, "%s", message ? message : "");
}

static void test_event_cap(void) {
    size_t before = is_alloc_used();
    is_loop_t loop;
    fake_api_t api;
    is_cluster_t c;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    if (fake_api_start(&api, route, NULL) != 0) {
        CHECK(!"fake API server did not start");
        return;
    }
    CHECK_INT(fake_cluster_init(&c, &loop, "test", api.port), IS_OK);
    static const is_informer_handlers_t h = { NULL, NULL, NULL, on_synced, on_error };
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    is_informer_opts_t o = { .name = "cms", .cluster = &c,
                             .resource = { "", "v1", "configmaps", 1 },
                             .backoff_base_ms = 5000, .max_event = 100 };
    is_informer_t inf;
    CHECK_INT(is_informer_init(&inf, &o, &h, &seen), IS_OK);
    CHECK_INT(inf.framer__.max_line, 100);
    CHECK_INT(is_informer_start(&inf), IS_OK);
    is_loop_update_time(&loop);
    uint64_t deadline = is_loop_now(&loop) + 5000;
    while (!seen.errors && is_loop_now(&loop) < deadline) {
        is_loop_run_once(&loop, 20);
        is_loop_update_time(&loop);
    }
    CHECK_INT(seen.synced, 1);
    CHECK_INT(seen.errors, 1);
    CHECK_STR(seen.what, "watch");
    CHECK_STR(seen.reason, "EventTooLarge");
    CHECK_STR(seen.message, "a watch event of configmaps exceeds the limit of 100 bytes");
    /* Nothing of the event is kept while the informer waits to retry. */
    CHECK_INT(inf.framer__.pending.len, 0);
    is_informer_stop(&inf);
    is_informer_close(&inf);

    /* Without a cap of its own an informer gets the default. */
    o.max_event = 0;
    CHECK_INT(is_informer_init(&inf, &o, &h, &seen), IS_OK);
    CHECK_INT(inf.framer__.max_line, IS_INFORMER_MAX_EVENT);
    is_informer_close(&inf);

    is_cluster_close(&c);
    fake_api_stop(&api);
    is_loop_close(&loop);
    CHECK_INT(is_alloc_used(), before);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_event_cap);
    curl_global_cleanup();
    TESTING_DONE();
}
