/* HTTPS requests to one API server over the loop's libcurl multi handle. */
#include "is_http.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_log.h"

/* client-go sets no bound; a controller must not wait forever on one. */
#define EXEC_TIMEOUT_MS 30000

static void on_exec_start_failed(is_timer_t *t);

struct is_http_req_s {
    is_cluster_t *cluster;
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *connect_to; /* for tls-server-name */
    char *url;
    char *method;
    char *content_type;
    char *req_body;          /* kept for the one retry after a 401 */
    size_t req_body_len;
    long timeout_ms;
    is_http_data_cb on_data;
    is_http_done_cb done;
    void *ud;
    is_buf_t body;
    long code;               /* known once the first body byte arrives */
    int retried_unauthorized;
    unsigned long cred_gen;  /* the exec credential this attempt used */
    is_http_req_t *next_waiting; /* in cluster->waiting__ */
    int waiting;
    int write_failed;        /* IS_ENOMEM while buffering */
    int recorded;            /* this attempt is in the metrics */
    struct timespec started; /* this attempt's start */
    int too_large;           /* the body passed cluster->max_body */
    char errbuf[CURL_ERROR_SIZE];
};

int is_cluster_init(is_cluster_t *c, is_loop_t *loop, const char *name, is_kubeconfig_t *kc) {
    memset(c, 0, sizeof *c);
    c->name = is_strdup(name);
    if (!c->name) return IS_ENOMEM;
    c->loop = loop;
    c->kc = *kc;
    memset(kc, 0, sizeof *kc);
    c->connect_timeout_ms = 10000;
    c->exec_timeout_ms = EXEC_TIMEOUT_MS;
    is_timer_init(loop, &c->fail_timer__, on_exec_start_failed, c);
    c->idle_timeout_ms = 180000;
    c->max_body = IS_HTTP_MAX_BODY;
    c->max_list = IS_HTTP_MAX_LIST;
    return IS_OK;
}

static void req_free(is_http_req_t *r);

void is_cluster_close(is_cluster_t *c) {
    is_exec_cancel(&c->exec__);
    is_timer_stop(&c->fail_timer__);
    /* Requests still waiting belong to owners that are going away too. */
    for (int i = 0; i < 2; i++) {
        is_http_req_t **list = i ? &c->releasing__ : &c->waiting__;
        while (*list) {
            is_http_req_t *r = *list;
            *list = r->next_waiting;
            req_free(r);
        }
    }
    is_exec_cred_free(&c->cred__);
    is_free(c->exec_error__);
    is_free(c->name);
    is_free(c->metrics_host__);
    is_kubeconfig_free(&c->kc);
    memset(c, 0, sizeof *c);
}

int is_cluster_set_metrics(is_cluster_t *c, is_metrics_t *reg) {
    /* component-base's layout (k8s.io/component-base/metrics/prometheus/restclient). */
    static const double buckets[] = { 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60 };
    static const char *const result_labels[] = { "code", "method", "host", NULL };
    static const char *const latency_labels[] = { "verb", "host", NULL };
    if (!c->kc.server) return IS_EINVAL;
    is_metric_t *requests, *latency;
    int rc = is_metrics_counter(reg, "rest_client_requests_total",
                                "Number of HTTP requests, partitioned by status code, method, and host.",
                                result_labels, &requests);
    if (rc == IS_OK)
        rc = is_metrics_histogram(reg, "rest_client_request_duration_seconds",
                                  "Request latency in seconds. Broken down by verb, and host.", latency_labels,
                                  buckets, sizeof buckets / sizeof buckets[0], &latency);
    if (rc != IS_OK) return rc;
    /* client-go's host label is the URL's host:port. */
    const char *host = strstr(c->kc.server, "://");
    host = host ? host + 3 : c->kc.server;
    char *copy = is_strndup(host, strcspn(host, "/"));
    if (!copy) return IS_ENOMEM;
    is_free(c->metrics_host__);
    c->metrics_host__ = copy;
    c->requests_metric__ = requests;
    c->latency_metric__ = latency;
    return IS_OK;
}

/* Once per attempt: at the first byte of a streamed response (a watch
 * lasts minutes; client-go times it to its headers), else at its end. A
 * transport failure has code "<error>", as in client-go. */
static void record_attempt(is_http_req_t *r, long code) {
    is_cluster_t *c = r->cluster;
    if (r->recorded || !c->requests_metric__) return;
    r->recorded = 1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double seconds = (double)(now.tv_sec - r->started.tv_sec) + (double)(now.tv_nsec - r->started.tv_nsec) / 1e9;
    char code_text[24];
    if (code > 0) snprintf(code_text, sizeof code_text, "%ld", code);
    else snprintf(code_text, sizeof code_text, "<error>");
    const char *const result[] = { code_text, r->method, c->metrics_host__ };
    const char *const latency[] = { r->method, c->metrics_host__ };
    /* A full registry drops the sample; the request goes on. */
    (void)is_metric_add(c->requests_metric__, result, 1);
    (void)is_metric_observe(c->latency_metric__, latency, seconds < 0 ? 0 : seconds);
}

static void req_free(is_http_req_t *r) {
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    curl_slist_free_all(r->connect_to);
    is_free(r->url);
    is_free(r->method);
    is_free(r->content_type);
    is_free(r->req_body);
    is_buf_free(&r->body);
    is_free(r);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
    is_http_req_t *r = userdata;
    size_t n = size * nmemb;
    if (r->code == 0) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->code);
    /* Only a successful response is streamed; an error body is buffered so
     * that it can be decoded as a Status when the transfer ends. */
    if (r->on_data && r->code >= 200 && r->code < 300) {
        record_attempt(r, r->code);
        return r->on_data(r, ptr, n, r->ud) == 0 ? n : 0;
    }
    if (r->body.len + n > r->cluster->max_body) {
        r->too_large = 1;
        return 0;
    }
    if (is_buf_append(&r->body, ptr, n) != IS_OK) {
        r->write_failed = 1;
        return 0;
    }
    return n;
}

static int append_header(struct curl_slist **list, const char *name, const char *value) {
    is_buf_t line;
    is_buf_init(&line);
    if (is_buf_printf(&line, "%s: %s", name, value) != IS_OK) return IS_ENOMEM;
    struct curl_slist *next = curl_slist_append(*list, line.data);
    is_buf_free(&line);
    if (!next) return IS_ENOMEM;
    *list = next;
    return IS_OK;
}

/* The bearer token: the exec plugin's when it gave one, else the
 * kubeconfig's. */
static const char *current_token(const is_cluster_t *c) {
    if (c->have_cred__) return c->cred__.token;
    return c->kc.token;
}

/* (Re)builds the headers: the Authorization header changes when the token
 * file is re-read or the exec plugin hands out a new credential. */
static int build_headers(is_http_req_t *r) {
    const char *token = current_token(r->cluster);
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    if (append_header(&r->headers, "Accept", "application/json") != IS_OK) return IS_ENOMEM;
    if (append_header(&r->headers, "User-Agent", "internal-services/" IS_VERSION) != IS_OK)
        return IS_ENOMEM;
    if (r->req_body && append_header(&r->headers, "Content-Type",
                                     r->content_type ? r->content_type : "application/json") != IS_OK)
        return IS_ENOMEM;
    if (token && token[0]) {
        is_buf_t v;
        is_buf_init(&v);
        int rc = is_buf_printf(&v, "Bearer %s", token);
        if (rc == IS_OK) rc = append_header(&r->headers, "Authorization", v.data);
        is_buf_free(&v);
        if (rc != IS_OK) return rc;
    }
    /* Without this libcurl sends "Expect: 100-continue" for large bodies and
     * waits a second for an answer the API server never gives. */
    struct curl_slist *next = curl_slist_append(r->headers, "Expect:");
    if (!next) return IS_ENOMEM;
    r->headers = next;
    return IS_OK;
}

static int setup_easy(is_http_req_t *r) {
    const is_kubeconfig_t *kc = &r->cluster->kc;
    const is_cluster_t *c = r->cluster;
    const is_blob_t *cert = c->have_cred__ && c->cred__.cert.data ? &c->cred__.cert : &kc->client_cert;
    const is_blob_t *key = c->have_cred__ && c->cred__.key.data ? &c->cred__.key : &kc->client_key;
    CURL *e = r->easy;
    CURLcode rc = CURLE_OK;
    struct curl_blob blob;

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_CONNECTTIMEOUT_MS, r->cluster->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    /* A server that stalls mid-response (keepalives still answered) must
     * not hold a watch, which has no overall timeout, for ever. */
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, r->cluster->idle_timeout_ms > 1000 ? r->cluster->idle_timeout_ms / 1000 : 1L);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_HTTPHEADER, r->headers);
    if (r->connect_to) SET(CURLOPT_CONNECT_TO, r->connect_to);
    /* kubeconfig proxy-url; without it libcurl honours HTTPS_PROXY and
     * NO_PROXY as client-go does. */
    if (kc->proxy_url) SET(CURLOPT_PROXY, kc->proxy_url);
    if (strcmp(r->method, "GET") != 0) SET(CURLOPT_CUSTOMREQUEST, r->method);
    if (r->req_body) {
        SET(CURLOPT_POSTFIELDS, r->req_body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->req_body_len);
    }
    if (kc->insecure_skip_tls_verify) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (kc->ca.data) {
        /* Blobs are copied by libcurl; nothing secret touches the disk. */
        blob.data = kc->ca.data;
        blob.len = kc->ca.len;
        blob.flags = CURL_BLOB_COPY;
        SET(CURLOPT_CAINFO_BLOB, &blob);
    }
    if (cert->data) {
        blob.data = cert->data;
        blob.len = cert->len;
        blob.flags = CURL_BLOB_COPY;
        SET(CURLOPT_SSLCERT_BLOB, &blob);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (key->data) {
        blob.data = key->data;
        blob.len = key->len;
        blob.flags = CURL_BLOB_COPY;
        SET(CURLOPT_SSLKEY_BLOB, &blob);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
#undef SET
    if (rc == CURLE_OUT_OF_MEMORY) return IS_ENOMEM;
    return rc == CURLE_OK ? IS_OK : IS_EINVAL;
}

static int is_tls_error(CURLcode code) {
    switch (code) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_INITFAILED:
        return 1;
    default:
        return 0;
    }
}

static void on_transfer_done(CURL *easy, CURLcode result, void *data);

static int start_transfer(is_http_req_t *r) {
    r->code = 0;
    r->errbuf[0] = 0;
    r->recorded = 0;
    clock_gettime(CLOCK_MONOTONIC, &r->started);
    r->too_large = 0;
    is_buf_reset(&r->body);
    int rc = is_loop_add_transfer(r->cluster->loop, r->easy, on_transfer_done, r);
    if (rc == IS_OK) r->cluster->requests++;
    return rc;
}

/* Reports a request that got no HTTP answer: code 0, a Status with reason
 * and the one-line error "<prefix><method> <url>: <detail>". */
static void fail_without_response(is_http_req_t *r, CURLcode result, const char *reason,
                                  const char *prefix, const char *detail) {
    is_http_result_t res;
    is_kstatus_t status;
    is_buf_t err;
    memset(&res, 0, sizeof res);
    memset(&status, 0, sizeof status);
    is_buf_init(&err);
    res.curl_code = result;
    res.body = r->body.data ? r->body.data : "";
    res.body_len = r->body.len;
    if (is_buf_printf(&err, "%s%s %s: %s", prefix, r->method, r->url, detail) == IS_OK)
        res.error = err.data;
    else
        res.error = "out of memory";
    status.reason = (char *)reason;
    status.message = (char *)res.error;
    res.status = &status;
    r->cluster->failures++;
    r->done(r, &res, r->ud);
    is_buf_free(&err);
}

static void finish(is_http_req_t *r, CURLcode result) {
    is_http_result_t res;
    is_kstatus_t status;
    is_buf_t err;
    if (r->code == 0) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->code);
    if (result != CURLE_OK && !(r->code >= 400 && !r->write_failed && !r->too_large)) {
        int tls = is_tls_error(result);
        const char *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(result);
        char limit[96];
        if (r->write_failed) detail = "out of memory while buffering the response";
        if (r->too_large) {
            snprintf(limit, sizeof limit, "response body exceeds the limit of %zu bytes", r->cluster->max_body);
            detail = limit;
        }
        fail_without_response(r, result,
                              r->too_large ? "ResponseTooLarge" : tls ? "TLSError" : "TransportError",
                              tls ? "TLS: " : "", detail);
        return;
    }
    memset(&res, 0, sizeof res);
    memset(&status, 0, sizeof status);
    is_buf_init(&err);
    res.curl_code = result;
    res.body = r->body.data ? r->body.data : "";
    res.body_len = r->body.len;

    res.code = r->code;
    if (r->code >= 400) {
        r->cluster->failures++;
        if (is_kstatus_decode(&status, r->code, res.body, res.body_len) == IS_OK) {
            res.status = &status;
            if (is_buf_printf(&err, "%s %s: %ld %s: %s", r->method, r->url, status.code,
                              status.reason, status.message) == IS_OK)
                res.error = err.data;
        } else {
            res.error = "out of memory decoding an error response";
        }
    }
    r->done(r, &res, r->ud);
    if (res.status == &status) is_kstatus_free(&status);
    is_buf_free(&err);
}

/* ---- exec credential plugin ---- */

static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A request may go out now: no plugin, or its credential is unexpired. */
static int cred_ready(const is_cluster_t *c) {
    if (!c->kc.exec.command) return 1;
    return c->have_cred__ && (!c->cred__.expires_ms || wall_ms() < c->cred__.expires_ms);
}

/* Sets the (possibly new) credentials on r and starts it. */
static int launch(is_http_req_t *r) {
    int rc = build_headers(r);
    if (rc == IS_OK) rc = setup_easy(r);
    r->cred_gen = r->cluster->cred_gen__;
    return rc == IS_OK ? start_transfer(r) : rc;
}

/* Ends r without a response: the plugin could not give a credential. */
static void fail_request(is_http_req_t *r, const char *why) {
    fail_without_response(r, CURLE_LOGIN_DENIED, "ExecPluginError", "", why);
    req_free(r);
}

/* Hands every waiting request on: started with the new credential, or
 * failed with why. */
static void release_waiting(is_cluster_t *c, const char *why) {
    /* The batch stays reachable from c, so a callback that cancels a
     * request of it unlinks it instead of leaving it here freed; requests
     * made by the callbacks wait for the next run. */
    c->releasing__ = c->waiting__;
    c->waiting__ = c->waiting_tail__ = NULL;
    while (c->releasing__) {
        is_http_req_t *r = c->releasing__;
        c->releasing__ = r->next_waiting;
        r->next_waiting = NULL;
        r->waiting = 0;
        if (why) {
            fail_request(r, why);
        } else if (launch(r) != IS_OK) {
            fail_request(r, "cannot start the request");
        }
    }
}

static void on_cred(is_exec_t *x, int status, is_exec_cred_t *cred, const char *why, void *ud) {
    is_cluster_t *c = ud;
    (void)x;
    is_buf_t f;
    is_buf_init(&f);
    is_buf_printf(&f, "\"cluster\":\"%s\"", c->name);
    if (status != IS_OK) {
        is_buf_appends(&f, ",\"error\":");
        is_buf_append_jsonstr(&f, why, strlen(why));
        is_log_write(IS_LOG_ERROR, "exec credential plugin failed", f.data);
        is_buf_free(&f);
        release_waiting(c, why);
        return;
    }
    is_exec_cred_free(&c->cred__);
    c->cred__ = *cred;
    memset(cred, 0, sizeof *cred);
    c->have_cred__ = 1;
    c->cred_gen__++;
    is_buf_printf(&f, ",\"kind\":\"%s\",\"expires_in_s\":%lld", c->cred__.token ? "token" : "certificate",
                  c->cred__.expires_ms ? (c->cred__.expires_ms - wall_ms()) / 1000 : -1);
    is_log_write(IS_LOG_INFO, "exec credential plugin gave a credential", f.data);
    is_buf_free(&f);
    release_waiting(c, NULL);
}

static void on_exec_start_failed(is_timer_t *t) {
    is_cluster_t *c = t->data;
    char *why = c->exec_error__;
    c->exec_error__ = NULL;
    is_buf_t f;
    is_buf_init(&f);
    is_buf_printf(&f, "\"cluster\":\"%s\",\"error\":", c->name);
    is_buf_append_jsonstr(&f, why ? why : "out of memory", why ? strlen(why) : 13);
    is_log_write(IS_LOG_ERROR, "exec credential plugin failed", f.data);
    is_buf_free(&f);
    release_waiting(c, why ? why : "exec plugin: out of memory");
    is_free(why);
}

/* Parks r until the plugin answers, starting it unless it runs already. A
 * plugin that cannot even start fails r from the loop, like any other
 * failure, so the caller's done callback is never re-entered. */
static void wait_for_cred(is_http_req_t *r) {
    is_cluster_t *c = r->cluster;
    r->waiting = 1;
    r->next_waiting = NULL;
    if (c->waiting_tail__) c->waiting_tail__->next_waiting = r;
    else c->waiting__ = r;
    c->waiting_tail__ = r;
    if (is_exec_running(&c->exec__) || is_timer_active(&c->fail_timer__)) return;
    char why[1024];
    if (is_exec_start(&c->exec__, c->loop, &c->kc, c->exec_timeout_ms, on_cred, c, why, sizeof why) == IS_OK)
        return;
    is_free(c->exec_error__);
    c->exec_error__ = is_strdup(why);
    is_timer_start(&c->fail_timer__, 0);
}

static int unlink_from(is_http_req_t **head, is_http_req_t **tail, is_http_req_t *r) {
    is_http_req_t **p = head, *prev = NULL;
    while (*p && *p != r) {
        prev = *p;
        p = &(*p)->next_waiting;
    }
    if (!*p) return 0;
    *p = r->next_waiting;
    if (tail && *tail == r) *tail = prev;
    return 1;
}

static void unlink_waiting(is_http_req_t *r) {
    is_cluster_t *c = r->cluster;
    if (!unlink_from(&c->waiting__, &c->waiting_tail__, r)) unlink_from(&c->releasing__, NULL, r);
    r->waiting = 0;
}

static void on_transfer_done(CURL *easy, CURLcode result, void *data) {
    is_http_req_t *r = data;
    is_cluster_t *c = r->cluster;
    (void)easy;
    if (r->code == 0) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->code);
    record_attempt(r, result == CURLE_OK || r->code >= 400 ? r->code : 0);
    /* A 401 with a plugin's credential: the credential was revoked or
     * expired early. Run the plugin again (once for every request that
     * used the same credential) and retry once. */
    if (r->code == 401 && !r->retried_unauthorized && c->kc.exec.command) {
        r->retried_unauthorized = 1;
        if (r->cred_gen == c->cred_gen__ && c->have_cred__) {
            is_exec_cred_free(&c->cred__);
            c->have_cred__ = 0;
        }
        if (cred_ready(c)) {
            if (launch(r) == IS_OK) return;
        } else {
            wait_for_cred(r);
            return;
        }
    }
    /* A rotated service-account token shows up as one 401: re-read the file
     * and try once more before reporting the failure. */
    if (r->code == 401 && !r->retried_unauthorized && c->kc.token_file) {
        int changed = 0;
        r->retried_unauthorized = 1;
        if (is_kubeconfig_refresh_token(&c->kc, &changed) == IS_OK &&
            build_headers(r) == IS_OK &&
            curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK &&
            start_transfer(r) == IS_OK)
            return;
    }
    finish(r, result);
    req_free(r);
}

/* kubeconfig's tls-server-name: the certificate must name that host while
 * the connection goes to the server's address. libcurl verifies (and sends
 * SNI for) the URL's host, so the URL names tls-server-name and CONNECT_TO
 * sends the connection to the real address. */
static int build_server_name_url(is_http_req_t *r, const is_kubeconfig_t *kc, is_buf_t *url) {
    const char *server = kc->server;
    const char *hostport = strstr(server, "://");
    if (!hostport) return IS_EINVAL;
    hostport += 3;
    const char *end = hostport + strcspn(hostport, "/");
    const char *colon = NULL;
    if (*hostport == '[') {
        const char *close = memchr(hostport, ']', (size_t)(end - hostport));
        if (!close) return IS_EINVAL;
        if (close + 1 < end && close[1] == ':') colon = close + 1;
    } else {
        colon = memchr(hostport, ':', (size_t)(end - hostport));
    }
    const char *host_end = colon ? colon : end;
    const char *port = colon ? colon + 1 : "443";
    int port_len = colon ? (int)(end - port) : 3;
    is_buf_t entry;
    is_buf_init(&entry);
    int rc = is_buf_printf(&entry, "%s:%.*s:%.*s:%.*s", kc->tls_server_name, port_len, port,
                           (int)(host_end - hostport), hostport, port_len, port);
    if (rc == IS_OK) {
        struct curl_slist *list = curl_slist_append(NULL, entry.data);
        if (!list) rc = IS_ENOMEM;
        else r->connect_to = list;
    }
    if (rc == IS_OK)
        rc = is_buf_printf(url, "%.*s://%s:%.*s", (int)(hostport - 3 - server), server,
                           kc->tls_server_name, port_len, port);
    is_buf_free(&entry);
    return rc;
}

int is_http_request(is_cluster_t *c, const is_http_opts_t *o, is_http_done_cb done, void *ud,
                    is_http_req_t **out) {
    if (!c || !o || !o->method || !o->path || !done) return IS_EINVAL;
    if (!c->kc.server) return IS_EINVAL;
    is_http_req_t *r = is_calloc(1, sizeof *r);
    if (!r) return IS_ENOMEM;
    r->cluster = c;
    r->on_data = o->on_data;
    r->done = done;
    r->ud = ud;
    r->timeout_ms = o->timeout_ms;
    is_buf_init(&r->body);

    int rc = IS_ENOMEM;
    is_buf_t url;
    is_buf_init(&url);
    if (c->kc.tls_server_name && c->kc.tls_server_name[0]) {
        if ((rc = build_server_name_url(r, &c->kc, &url)) != IS_OK) goto fail;
        rc = IS_ENOMEM;
    } else if (is_buf_appends(&url, c->kc.server) != IS_OK) {
        goto fail;
    }
    if (is_buf_appends(&url, o->path) != IS_OK) goto fail;
    r->url = is_buf_steal(&url, NULL);
    r->method = is_strdup(o->method);
    if (!r->method) goto fail;
    if (o->content_type && !(r->content_type = is_strdup(o->content_type))) goto fail;
    if (o->body) {
        r->req_body = is_strndup(o->body, o->body_len);
        if (!r->req_body) goto fail;
        r->req_body_len = o->body_len;
    }
    r->easy = curl_easy_init();
    if (!r->easy) goto fail;
    if (!cred_ready(c)) {
        wait_for_cred(r);
    } else if ((rc = launch(r)) != IS_OK) {
        goto fail;
    }
    if (out) *out = r;
    return IS_OK;
fail:
    is_buf_free(&url);
    req_free(r);
    return rc;
}

void is_http_cancel(is_http_req_t *r) {
    if (!r) return;
    if (r->waiting) unlink_waiting(r);
    else is_loop_remove_transfer(r->cluster->loop, r->easy);
    req_free(r);
}
