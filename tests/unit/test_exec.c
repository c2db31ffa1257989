/* Exec credential plugins: the ExecCredential checks, KUBERNETES_EXEC_INFO,
 * running the fixture plugin beside a live loop (args, env, exit status,
 * stderr, timeout, a missing command), and requests to a fake API server
 * that wait for the plugin, share one run, keep the credential until it
 * expires and run the plugin again after a 401. */
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#include "fake_apiserver.h"
#include "is_exec.h"
#include "is_kubeconfig.h"
#include "is_log.h"
#include "testing.h"

static char fixtures[4096];
static char tmp[64];

static int contains(const char *haystack, const char *needle) {
    int found = haystack && strstr(haystack, needle) != NULL;
    if (!found) fprintf(stderr, "   \"%s\" does not contain \"%s\"\n", haystack ? haystack : "(null)", needle);
    return found;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) exit(2);
}

static char *read_text(const char *path) {
    static char buf[8192];
    FILE *f = fopen(path, "r");
    buf[0] = 0;
    if (!f) return buf;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static int count_lines(const char *path) {
    const char *t = read_text(path);
    int n = 0;
    for (; *t; t++) n += *t == '\n';
    return n;
}

/* ---- the credential ---- */

#define V1 "client.authentication.k8s.io/v1"

static void expect_bad(const char *json, const char *text) {
    is_exec_cred_t c;
    char err[256] = "";
    size_t before = is_alloc_used();
    CHECK_INT(is_exec_parse_credential(json, strlen(json), V1, &c, err, sizeof err), IS_EPARSE);
    CHECK(contains(err, text));
    CHECK(c.token == NULL && c.cert.data == NULL);
    CHECK_INT(is_alloc_used(), before);
}

static void test_parse_credential(void) {
    is_exec_cred_t c;
    char err[256];
    const char *tok = "{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":"
                      "{\"token\":\"abc\",\"expirationTimestamp\":\"2026-12-02T06:00:00Z\"}}";
    CHECK_INT(is_exec_parse_credential(tok, strlen(tok), V1, &c, err, sizeof err), IS_OK);
    CHECK_STR(c.token, "abc");
    CHECK_INT(c.expires_ms, 1796191200000LL);
    is_exec_cred_free(&c);

    const char *cert = "{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1beta1\","
                       "\"spec\":{},\"status\":{\"clientCertificateData\":\"-----BEGIN CERTIFICATE-----\\nX\\n\","
                       "\"clientKeyData\":\"KEY\",\"expirationTimestamp\":\"2026-12-02T07:00:00.250+01:00\"}}";
    CHECK_INT(is_exec_parse_credential(cert, strlen(cert), "client.authentication.k8s.io/v1beta1", &c, err,
                                       sizeof err), IS_OK);
    CHECK(c.token == NULL);
    CHECK_INT(c.cert.len, strlen("-----BEGIN CERTIFICATE-----\nX\n"));
    CHECK(c.cert.data && !memcmp(c.cert.data, "-----BEGIN CERTIFICATE-----\nX\n", c.cert.len));
    CHECK(c.key.data && c.key.len == 3 && !memcmp(c.key.data, "KEY", 3));
    CHECK_INT(c.expires_ms, 1796191200250LL);
    is_exec_cred_free(&c);

    expect_bad("not json", "not an ExecCredential JSON object");
    expect_bad("[]", "not an ExecCredential JSON object");
    expect_bad("{\"apiVersion\":\"" V1 "\",\"kind\":\"Secret\",\"status\":{\"token\":\"a\"}}",
               "it returned kind \"Secret\", not ExecCredential");
    expect_bad("{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\","
               "\"status\":{\"token\":\"a\"}}",
               "configured for " V1 " but returned apiVersion \"client.authentication.k8s.io/v1beta1\"");
    expect_bad("{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\"}", "it returned no status");
    expect_bad("{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{}}",
               "neither a token nor a client certificate and key");
    expect_bad("{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"\"}}",
               "neither a token nor a client certificate and key");
    expect_bad("{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{\"clientKeyData\":\"k\"}}",
               "a client key without a client certificate");
    expect_bad("{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{\"token\":7}}",
               "a field that is not a string");
    expect_bad("{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"a\","
               "\"expirationTimestamp\":\"tomorrow\"}}",
               "status.expirationTimestamp \"tomorrow\" is not an RFC 3339 time");
}

static void test_exec_info(void) {
    is_kubeconfig_t kc;
    char err[512], path[4200];
    snprintf(path, sizeof path, "%s/kubeconfig/exec.yaml", fixtures);
    CHECK_INT(is_kubeconfig_load(&kc, path, NULL, err, sizeof err), IS_OK);
    is_buf_t b;
    is_buf_init(&b);
    CHECK_INT(is_exec_info(&kc, &b), IS_OK);
    CHECK_STR(b.data, "{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"spec\":{\"interactive\":false,"
                      "\"cluster\":{\"server\":\"https://127.0.0.1:6443\",\"tls-server-name\":\"kubernetes\","
                      "\"certificate-authority-data\":\"QUJDRA==\",\"proxy-url\":\"socks5://127.0.0.1:1080\"}}}");
    is_buf_reset(&b);
    kc.exec.provide_cluster_info = 0;
    CHECK_INT(is_exec_info(&kc, &b), IS_OK);
    CHECK_STR(b.data, "{\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"spec\":{\"interactive\":false}}");
    is_buf_free(&b);
    is_kubeconfig_free(&kc);
}

/* ---- running it ---- */

typedef struct {
    int done, status;
    char token[256];
    long long expires_ms;
    char err[1024];
} result_t;

static void on_done(is_exec_t *x, int status, is_exec_cred_t *cred, const char *err, void *ud) {
    result_t *r = ud;
    (void)x;
    r->done = 1;
    r->status = status;
    snprintf(r->token, sizeof r->token, "%s", cred->token ? cred->token : "");
    r->expires_ms = cred->expires_ms;
    snprintf(r->err, sizeof r->err, "%s", err ? err : "");
}

typedef struct {
    is_timer_t t;
    int ticks;
} ticker_t;

static void on_tick(is_timer_t *t) {
    ticker_t *k = t->data;
    k->ticks++;
    is_timer_start(t, 20);
}

/* A kubeconfig whose user runs the fixture plugin with extra env lines. */
static int exec_kubeconfig(is_kubeconfig_t *kc, int port, const char *env_yaml, const char *mode) {
    char yaml[8192], err[512];
    snprintf(yaml, sizeof yaml,
             "current-context: c\n"
             "clusters: [{name: k, cluster: {server: 'http://127.0.0.1:%d'}}]\n"
             "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
             "users:\n- name: u\n  user:\n    exec:\n"
             "      apiVersion: " V1 "\n      command: %s/kubeconfig/plugins/cred.sh\n"
             "      args: [one, two words]\n      interactiveMode: %s\n"
             "      installHint: see the README\n      env:\n%s",
             port, fixtures, mode, env_yaml);
    int rc = is_kubeconfig_parse(kc, yaml, strlen(yaml), NULL, NULL, err, sizeof err);
    if (rc != IS_OK) fprintf(stderr, "   kubeconfig: %s\n", err);
    return rc;
}

static void run(is_kubeconfig_t *kc, long timeout_ms, result_t *r, int *ticks) {
    is_loop_t loop;
    is_exec_t x;
    ticker_t k = { .ticks = 0 };
    char err[512] = "";
    memset(r, 0, sizeof *r);
    is_loop_init(&loop);
    is_timer_init(&loop, &k.t, on_tick, &k);
    is_timer_start(&k.t, 20);
    int rc = is_exec_start(&x, &loop, kc, timeout_ms, on_done, r, err, sizeof err);
    if (rc != IS_OK) {
        r->done = 1;
        r->status = rc;
        snprintf(r->err, sizeof r->err, "%s", err);
    }
    for (int i = 0; i < 1000 && !r->done; i++) is_loop_run_once(&loop, 20);
    CHECK(!is_exec_running(&x));
    is_timer_stop(&k.t);
    is_loop_close(&loop);
    if (ticks) *ticks = k.ticks;
}

static void test_run_plugin(void) {
    is_kubeconfig_t kc;
    result_t r;
    char env[2048], record[128];
    snprintf(record, sizeof record, "%s/record", tmp);
    size_t before = is_alloc_used();

    /* The kubeconfig's env wins over ours; args and KUBERNETES_EXEC_INFO
     * reach the plugin. */
    setenv("CRED_TOKEN", "from-our-env", 1);
    snprintf(env, sizeof env, "      - {name: CRED_TOKEN, value: from-kubeconfig}\n"
                              "      - {name: CRED_RECORD, value: '%s'}\n"
                              "      - {name: CRED_EXPIRES, value: '2030-01-01T00:00:00Z'}\n", record);
    CHECK_INT(exec_kubeconfig(&kc, 1, env, "Never"), IS_OK);
    run(&kc, 5000, &r, NULL);
    CHECK_INT(r.status, IS_OK);
    CHECK_STR(r.token, "from-kubeconfig");
    CHECK_INT(r.expires_ms, 1893456000000LL);
    const char *rec = read_text(record);
    CHECK(contains(rec, "args: one two words\n"));
    CHECK(contains(rec, "info: {\"apiVersion\":\"" V1 "\",\"kind\":\"ExecCredential\",\"spec\":{\"interactive\":false}}"));
    is_kubeconfig_free(&kc);
    unsetenv("CRED_TOKEN");

    /* A plugin that takes its time does not hold the loop up. */
    int ticks = 0;
    CHECK_INT(exec_kubeconfig(&kc, 1, "      - {name: CRED_SLEEP, value: '0.5'}\n"
                                      "      - {name: CRED_TOKEN, value: slow}\n", "IfAvailable"), IS_OK);
    run(&kc, 5000, &r, &ticks);
    CHECK_INT(r.status, IS_OK);
    CHECK_STR(r.token, "slow");
    CHECK(ticks >= 10);
    is_kubeconfig_free(&kc);

    /* Failure, with the first line of its stderr. */
    CHECK_INT(exec_kubeconfig(&kc, 1, "      - {name: CRED_EXIT, value: '3'}\n"
                                      "      - {name: CRED_STDERR, value: 'login expired'}\n", "Never"), IS_OK);
    run(&kc, 5000, &r, NULL);
    CHECK_INT(r.status, IS_EINVAL);
    CHECK(contains(r.err, "plugins/cred.sh: exit status 3: login expired"));
    is_kubeconfig_free(&kc);

    /* Output that is no credential. */
    CHECK_INT(exec_kubeconfig(&kc, 1, "      - {name: CRED_RAW, value: 'hello'}\n", "Never"), IS_OK);
    run(&kc, 5000, &r, NULL);
    CHECK_INT(r.status, IS_EPARSE);
    CHECK(contains(r.err, "cred.sh: its output is not an ExecCredential JSON object"));
    is_kubeconfig_free(&kc);

    /* Too slow: killed at the timeout. */
    CHECK_INT(exec_kubeconfig(&kc, 1, "      - {name: CRED_SLEEP, value: '10'}\n", "Never"), IS_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run(&kc, 300, &r, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK_INT(r.status, IS_ELIMIT);
    CHECK(contains(r.err, "no answer within 0.3s, killed"));
    CHECK(t1.tv_sec - t0.tv_sec < 3);
    is_kubeconfig_free(&kc);

    /* interactiveMode Always cannot be honoured without a terminal. */
    CHECK_INT(exec_kubeconfig(&kc, 1, "      - {name: A, value: b}\n", "Always"), IS_OK);
    run(&kc, 5000, &r, NULL);
    CHECK_INT(r.status, IS_EINVAL);
    CHECK(contains(r.err, "interactiveMode Always needs a terminal"));
    is_kubeconfig_free(&kc);

    /* A command that is not there, with the kubeconfig's install hint. */
    const char *missing = "current-context: c\nclusters: [{name: k, cluster: {server: 'http://x'}}]\n"
                          "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                          "users: [{name: u, user: {exec: {apiVersion: " V1 ", command: no-such-plugin-here,"
                          " interactiveMode: Never, installHint: 'apt-get install it'}}}]\n";
    char err[256];
    CHECK_INT(is_kubeconfig_parse(&kc, missing, strlen(missing), NULL, NULL, err, sizeof err), IS_OK);
    run(&kc, 5000, &r, NULL);
    CHECK_INT(r.status, IS_ENOTFOUND);
    CHECK_STR(r.err, "exec plugin no-such-plugin-here: executable not found: apt-get install it");
    is_kubeconfig_free(&kc);
    CHECK_INT(is_alloc_used(), before);
}

/* ---- requests through the plugin ---- */

static pthread_mutex_t valid_mu = PTHREAD_MUTEX_INITIALIZER;
static char valid[128]; /* the one Authorization header the server takes */

static void route(const fake_req_t *req, int *status, char *body, size_t cap, void *ud) {
    (void)ud;
    pthread_mutex_lock(&valid_mu);
    int ok = !strcmp(req->authorization, valid);
    pthread_mutex_unlock(&valid_mu);
    *status = ok ? 200 : 401;
    snprintf(body, cap, ok ? "{\"kind\":\"Status\",\"status\":\"Success\"}"
                           : "{\"kind\":\"Status\",\"status\":\"Failure\",\"reason\":\"Unauthorized\","
                             "\"code\":401,\"message\":\"Unauthorized\"}");
}

static void accept_token(const char *token) {
    pthread_mutex_lock(&valid_mu);
    snprintf(valid, sizeof valid, "Bearer %s", token);
    pthread_mutex_unlock(&valid_mu);
}

typedef struct {
    int done;
    long code;
    char error[1024];
} got_t;

static void on_response(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    got_t *g = ud;
    (void)req;
    g->done = 1;
    g->code = res->code;
    snprintf(g->error, sizeof g->error, "%s", res->error ? res->error : "");
}

/* Answers like on_response, then cancels another request. */
typedef struct {
    got_t got;
    is_http_req_t *other;
} canceller_t;

static void on_response_cancel(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    canceller_t *k = ud;
    on_response(req, res, &k->got);
    if (k->other) is_http_cancel(k->other);
    k->other = NULL;
}

static void get(is_loop_t *loop, is_cluster_t *c, int n, got_t *g) {
    is_http_opts_t o = { .method = "GET", .path = "/api", .timeout_ms = 5000 };
    memset(g, 0, (size_t)n * sizeof *g);
    for (int i = 0; i < n; i++) CHECK_INT(is_http_request(c, &o, on_response, &g[i], NULL), IS_OK);
    for (int i = 0; i < 1000; i++) {
        int all = 1;
        for (int j = 0; j < n; j++) all &= g[j].done;
        if (all) break;
        is_loop_run_once(loop, 10);
    }
}

static void test_requests(void) {
    fake_api_t api;
    CHECK_INT(fake_api_start(&api, route, NULL), 0);
    char env[2048], runs[160], token_file[128];
    snprintf(runs, sizeof runs, "%s/rec.runs", tmp);
    snprintf(token_file, sizeof token_file, "%s/token", tmp);
    snprintf(env, sizeof env, "      - {name: CRED_RECORD, value: '%s/rec'}\n"
                              "      - {name: CRED_TOKEN_FILE, value: '%s'}\n", tmp, token_file);
    unlink(runs);
    write_text(token_file, "t1");
    accept_token("t1");
    is_log_set_level(IS_LOG_ERROR);

    size_t before = is_alloc_used();
    is_loop_t loop;
    is_cluster_t c;
    is_kubeconfig_t kc;
    is_loop_init(&loop);
    CHECK_INT(exec_kubeconfig(&kc, api.port, env, "Never"), IS_OK);
    CHECK_INT(is_cluster_init(&c, &loop, "remote", &kc), IS_OK);

    /* Three requests at once wait for one run of the plugin. */
    got_t g[3];
    get(&loop, &c, 3, g);
    for (int i = 0; i < 3; i++) CHECK_INT(g[i].code, 200);
    CHECK_INT(count_lines(runs), 1);
    CHECK_STR(fake_api_req(&api, 0).authorization, "Bearer t1");

    /* Without an expiry the credential is kept. */
    get(&loop, &c, 1, g);
    CHECK_INT(g[0].code, 200);
    CHECK_INT(count_lines(runs), 1);

    /* Revoked: the 401 runs the plugin again and the request is retried. */
    write_text(token_file, "t2");
    accept_token("t2");
    get(&loop, &c, 2, g);
    CHECK_INT(g[0].code, 200);
    CHECK_INT(g[1].code, 200);
    CHECK_INT(count_lines(runs), 2);

    /* A plugin whose answer is still refused: one retry, then the 401. */
    accept_token("never");
    get(&loop, &c, 1, g);
    CHECK_INT(g[0].code, 401);
    CHECK_INT(count_lines(runs), 3);
    is_cluster_close(&c);

    /* An expired credential is not reused. */
    accept_token("t2");
    char env2[2400];
    snprintf(env2, sizeof env2, "%s      - {name: CRED_EXPIRES, value: '2001-01-01T00:00:00Z'}\n", env);
    CHECK_INT(exec_kubeconfig(&kc, api.port, env2, "Never"), IS_OK);
    CHECK_INT(is_cluster_init(&c, &loop, "remote", &kc), IS_OK);
    get(&loop, &c, 1, g);
    get(&loop, &c, 1, g);
    CHECK_INT(g[0].code, 200);
    CHECK_INT(count_lines(runs), 5);
    is_cluster_close(&c);

    /* An unexpired one is. */
    snprintf(env2, sizeof env2, "%s      - {name: CRED_EXPIRES, value: '2999-01-01T00:00:00Z'}\n", env);
    CHECK_INT(exec_kubeconfig(&kc, api.port, env2, "Never"), IS_OK);
    CHECK_INT(is_cluster_init(&c, &loop, "remote", &kc), IS_OK);
    get(&loop, &c, 1, g);
    get(&loop, &c, 1, g);
    CHECK_INT(g[0].code, 200);
    CHECK_INT(count_lines(runs), 6);
    is_cluster_close(&c);

    /* A failing plugin fails its requests with its own words, and a
     * request cancelled while waiting is never answered. */
    snprintf(env2, sizeof env2, "%s      - {name: CRED_EXIT, value: '1'}\n"
                                "      - {name: CRED_STDERR, value: 'no session'}\n", env);
    CHECK_INT(exec_kubeconfig(&kc, api.port, env2, "Never"), IS_OK);
    CHECK_INT(is_cluster_init(&c, &loop, "remote", &kc), IS_OK);
    is_http_opts_t o = { .method = "GET", .path = "/api", .timeout_ms = 5000 };
    is_http_req_t *cancelled;
    got_t never = { 0 };
    CHECK_INT(is_http_request(&c, &o, on_response, &never, &cancelled), IS_OK);
    is_http_cancel(cancelled);
    get(&loop, &c, 1, g);
    CHECK_INT(g[0].code, 0);
    CHECK(contains(g[0].error, "GET http://127.0.0.1:"));
    CHECK(contains(g[0].error, "cred.sh: exit status 1: no session"));
    CHECK_INT(never.done, 0);

    /* A failure callback may cancel another request of the same batch. */
    canceller_t k = { { 0 }, NULL };
    got_t spared = { 0 };
    CHECK_INT(is_http_request(&c, &o, on_response_cancel, &k, NULL), IS_OK);
    CHECK_INT(is_http_request(&c, &o, on_response, &spared, &k.other), IS_OK);
    for (int i = 0; i < 500 && !k.got.done; i++) is_loop_run_once(&loop, 10);
    CHECK_INT(k.got.done, 1);
    CHECK(contains(k.got.error, "no session"));
    for (int i = 0; i < 5; i++) is_loop_run_once(&loop, 10);
    CHECK_INT(spared.done, 0);
    is_cluster_close(&c);

    /* One that cannot start fails from the loop, not inside the call. */
    const char *missing = "current-context: c\nclusters: [{name: k, cluster: {server: 'http://127.0.0.1:1'}}]\n"
                          "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                          "users: [{name: u, user: {exec: {apiVersion: " V1 ", command: /nonexistent/plugin,"
                          " interactiveMode: Never}}}]\n";
    char err[256];
    CHECK_INT(is_kubeconfig_parse(&kc, missing, strlen(missing), NULL, NULL, err, sizeof err), IS_OK);
    CHECK_INT(is_cluster_init(&c, &loop, "remote", &kc), IS_OK);
    got_t late = { 0 };
    CHECK_INT(is_http_request(&c, &o, on_response, &late, NULL), IS_OK);
    CHECK_INT(late.done, 0);
    for (int i = 0; i < 100 && !late.done; i++) is_loop_run_once(&loop, 10);
    CHECK_INT(late.done, 1);
    CHECK(contains(late.error, "exec plugin /nonexistent/plugin: executable not found"));
    is_cluster_close(&c);

    is_loop_close(&loop);
    CHECK_INT(is_alloc_used(), before);
    fake_api_stop(&api);
}

int main(void) {
    const char *f = getenv("IS_FIXTURES");
    snprintf(fixtures, sizeof fixtures, "%s", f ? f : "tests/fixtures");
    snprintf(tmp, sizeof tmp, "/tmp/is-exec-test-XXXXXX");
    if (!mkdtemp(tmp)) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_parse_credential);
    RUN(test_exec_info);
    RUN(test_run_plugin);
    RUN(test_requests);
    curl_global_cleanup();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) return 2;
    TESTING_DONE();
}
