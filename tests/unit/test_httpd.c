/* The probes server's bind addresses in every form Go accepts (IPv4,
 * bracketed IPv6, the empty host for both stacks) and the errors for the
 * forms it refuses; each bound server answers a real GET from the loop. */
#include <string.h>

#include <curl/curl.h>

#include "is_err.h"
#include "is_httpd.h"
#include "is_loop.h"
#include "testing.h"

static int handler(const char *path, is_buf_t *body, const char **type, void *ud) {
    (void)type;
    (void)ud;
    is_buf_printf(body, "path %s\n", path);
    return 200;
}

typedef struct {
    long code;
    CURLcode result;
    int done;
    is_buf_t body;
} fetch_t;

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    fetch_t *f = ud;
    is_buf_append(&f->body, p, size * n);
    return size * n;
}

static void on_done(CURL *easy, CURLcode result, void *data) {
    fetch_t *f = data;
    f->result = result;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &f->code);
    f->done = 1;
}

/* GETs url through the loop's own multi handle, so the server and the
 * client share the one thread as in the controller. */
static void fetch(is_loop_t *loop, const char *url, fetch_t *f) {
    memset(f, 0, sizeof *f);
    is_buf_init(&f->body);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    CHECK_INT(is_loop_add_transfer(loop, e, on_done, f), IS_OK);
    for (int i = 0; i < 500 && !f->done; i++) is_loop_run_once(loop, 10);
    curl_easy_cleanup(e);
}

static void serve_and_get(const char *addr, const char *url_host) {
    is_loop_t loop;
    is_httpd_t s;
    char err[256] = "";
    fprintf(stderr, "   %s\n", addr);
    CHECK_INT(is_loop_init(&loop), IS_OK);
    CHECK_INT(is_httpd_start(&s, &loop, addr, handler, NULL, err, sizeof err), IS_OK);
    int port = is_httpd_port(&s);
    CHECK(port > 0);
    char url[128];
    snprintf(url, sizeof url, "http://%s:%d/healthz", url_host, port);
    fetch_t f;
    fetch(&loop, url, &f);
    CHECK_INT(f.result, CURLE_OK);
    CHECK_INT(f.code, 200);
    CHECK_STR(f.body.data, "path /healthz\n");
    is_buf_free(&f.body);
    is_httpd_stop(&s);
    is_loop_close(&loop);
}

static void test_addresses(void) {
    serve_and_get("127.0.0.1:0", "127.0.0.1");
    serve_and_get("localhost:0", "127.0.0.1");
    serve_and_get("[::1]:0", "[::1]");
    /* Both stacks on one socket, as Go listens for "[::]" and ":port". */
    serve_and_get("[::]:0", "[::1]");
    serve_and_get("[::]:0", "127.0.0.1");
    serve_and_get(":0", "[::1]");
    serve_and_get(":0", "127.0.0.1");
}

static void expect_error(const char *addr, const char *text) {
    is_loop_t loop;
    is_httpd_t s;
    char err[256] = "";
    CHECK_INT(is_loop_init(&loop), IS_OK);
    CHECK_INT(is_httpd_start(&s, &loop, addr, handler, NULL, err, sizeof err), IS_EINVAL);
    if (!strstr(err, text)) {
        fprintf(stderr, "   %s: \"%s\" does not contain \"%s\"\n", addr, err, text);
        CHECK(0);
    }
    is_loop_close(&loop);
}

static void test_bad_addresses(void) {
    expect_error("8080", "expected [host]:port");
    expect_error(":http", "bad port");
    expect_error(":70000", "bad port");
    expect_error("::1:8080", "needs brackets");
    expect_error("[::1:8080", "missing ]");
    expect_error("[1.2.3.4]:80", "1.2.3.4 is not an IPv6 address");
    expect_error("example.com:80", "example.com is not an IP address");
}

static void test_disabled(void) {
    is_loop_t loop;
    is_httpd_t s;
    char err[64];
    CHECK_INT(is_loop_init(&loop), IS_OK);
    CHECK_INT(is_httpd_start(&s, &loop, "0", handler, NULL, err, sizeof err), IS_OK);
    CHECK_INT(is_httpd_port(&s), 0);
    is_httpd_stop(&s);
    is_loop_close(&loop);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_addresses);
    RUN(test_bad_addresses);
    RUN(test_disabled);
    curl_global_cleanup();
    TESTING_DONE();
}
