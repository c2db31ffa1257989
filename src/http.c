/* HTTPS requests to one API server over the loop's libcurl multi handle. */
#include "is_http.h"

#include <stdio.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"

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
    int write_failed;        /* IS_ENOMEM while buffering */
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
    c->idle_timeout_ms = 180000;
    c->max_body = IS_HTTP_MAX_BODY;
    c->max_list = IS_HTTP_MAX_LIST;
    return IS_OK;
}

void is_cluster_close(is_cluster_t *c) {
    is_free(c->name);
    is_kubeconfig_free(&c->kc);
    memset(c, 0, sizeof *c);
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
    if (r->on_data && r->code >= 200 && r->code < 300)
        return r->on_data(r, ptr, n, r->ud) == 0 ? n : 0;
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

/* (Re)builds the headers: the Authorization header changes when the token
 * file is re-read. */
static int build_headers(is_http_req_t *r) {
    const is_kubeconfig_t *kc = &r->cluster->kc;
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    if (append_header(&r->headers, "Accept", "application/json") != IS_OK) return IS_ENOMEM;
    if (append_header(&r->headers, "User-Agent", "internal-services/" IS_VERSION) != IS_OK)
        return IS_ENOMEM;
    if (r->req_body && append_header(&r->headers, "Content-Type",
                                     r->content_type ? r->content_type : "application/json") != IS_OK)
        return IS_ENOMEM;
    if (kc->token && kc->token[0]) {
        is_buf_t v;
        is_buf_init(&v);
        int rc = is_buf_printf(&v, "Bearer %s", kc->token);
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
    if (kc->client_cert.data) {
        blob.data = kc->client_cert.data;
        blob.len = kc->client_cert.len;
        blob.flags = CURL_BLOB_COPY;
        SET(CURLOPT_SSLCERT_BLOB, &blob);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (kc->client_key.data) {
        blob.data = kc->client_key.data;
        blob.len = kc->client_key.len;
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
    r->too_large = 0;
    is_buf_reset(&r->body);
    int rc = is_loop_add_transfer(r->cluster->loop, r->easy, on_transfer_done, r);
    if (rc == IS_OK) r->cluster->requests++;
    return rc;
}

static void finish(is_http_req_t *r, CURLcode result) {
    is_http_result_t res;
    is_kstatus_t status;
    is_buf_t err;
    memset(&res, 0, sizeof res);
    memset(&status, 0, sizeof status);
    is_buf_init(&err);

    if (r->code == 0) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->code);
    res.curl_code = result;
    res.body = r->body.data ? r->body.data : "";
    res.body_len = r->body.len;

    if (result != CURLE_OK && !(r->code >= 400 && !r->write_failed && !r->too_large)) {
        int tls = is_tls_error(result);
        const char *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(result);
        char limit[96];
        if (r->write_failed) detail = "out of memory while buffering the response";
        if (r->too_large) {
            snprintf(limit, sizeof limit, "response body exceeds the limit of %zu bytes", r->cluster->max_body);
            detail = limit;
        }
        res.code = 0;
        if (is_buf_printf(&err, "%s%s %s: %s", tls ? "TLS: " : "", r->method, r->url, detail) == IS_OK)
            res.error = err.data;
        else
            res.error = "out of memory";
        status.code = 0;
        status.reason = (char *)(r->too_large ? "ResponseTooLarge" : tls ? "TLSError" : "TransportError");
        status.message = (char *)res.error;
        res.status = &status;
        r->cluster->failures++;
        r->done(r, &res, r->ud);
        is_buf_free(&err);
        return;
    }

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

static void on_transfer_done(CURL *easy, CURLcode result, void *data) {
    is_http_req_t *r = data;
    (void)easy;
    if (r->code == 0) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->code);
    /* A rotated service-account token shows up as one 401: re-read the file
     * and try once more before reporting the failure. */
    if (r->code == 401 && !r->retried_unauthorized && r->cluster->kc.token_file) {
        int changed = 0;
        r->retried_unauthorized = 1;
        if (is_kubeconfig_refresh_token(&r->cluster->kc, &changed) == IS_OK &&
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
    if ((rc = build_headers(r)) != IS_OK) goto fail;
    if ((rc = setup_easy(r)) != IS_OK) goto fail;
    if ((rc = start_transfer(r)) != IS_OK) goto fail;
    if (out) *out = r;
    return IS_OK;
fail:
    is_buf_free(&url);
    req_free(r);
    return rc;
}

void is_http_cancel(is_http_req_t *r) {
    if (!r) return;
    is_loop_remove_transfer(r->cluster->loop, r->easy);
    req_free(r);
}
