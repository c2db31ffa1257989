/* The HTTP client's kubeconfig proxy-url: every request goes through the
 * proxy it names. */
#include "fake_apiserver.h"
#include "testing.h"

static void route(const fake_req_t *req, int *status, char *body, size_t cap, void *ud) {
    (void)req;
    (void)ud;
    *status = 200;
    snprintf(body, cap, "{\"kind\":\"APIResourceList\"}");
}

typedef struct {
    int done;
    long code;
} got_t;

static void on_done(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    got_t *g = ud;
    (void)req;
    g->done = 1;
    g->code = res->code;
}

static void test_proxy_url(void) {
    fake_api_t proxy;
    CHECK_INT(fake_api_start(&proxy, route, NULL), 0);
    size_t before = is_alloc_used();
    is_loop_t loop;
    is_loop_init(&loop);
    /* The server itself refuses connections: only the proxy can answer. */
    int refused = fake_refused_port();
    char yaml[512], err[256];
    snprintf(yaml, sizeof yaml,
             "current-context: c\n"
             "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:%d', proxy-url: 'http://127.0.0.1:%d'}}]\n"
             "contexts: [{name: c, context: {cluster: k}}]\n",
             refused, proxy.port);
    is_kubeconfig_t kc;
    CHECK_INT(is_kubeconfig_parse(&kc, yaml, strlen(yaml), NULL, NULL, err, sizeof err), IS_OK);
    is_cluster_t c;
    CHECK_INT(is_cluster_init(&c, &loop, "remote", &kc), IS_OK);
    is_http_opts_t o = { .method = "GET", .path = "/apis", .timeout_ms = 5000 };
    got_t g = { 0 };
    CHECK_INT(is_http_request(&c, &o, on_done, &g, NULL), IS_OK);
    for (int i = 0; i < 500 && !g.done; i++) is_loop_run_once(&loop, 10);
    CHECK_INT(g.code, 200);
    /* A proxy is asked for the absolute URL. */
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/apis", refused);
    CHECK_STR(fake_api_req(&proxy, 0).uri, want);
    is_cluster_close(&c);
    is_loop_close(&loop);
    CHECK_INT(is_alloc_used(), before);
    fake_api_stop(&proxy);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    RUN(test_proxy_url);
    curl_global_cleanup();
    TESTING_DONE();
}
