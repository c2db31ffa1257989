/* HTTPS to one Kubernetes API server through libcurl's multi interface.
 *
 * An is_cluster_t holds the connection settings of one API server; all its
 * requests share the loop's multi handle, so connections are reused. TLS
 * material goes to libcurl as in-memory blobs. A 401 makes the cluster re-read
 * its token file and retry the request once, because bound service-account
 * tokens rotate under a running process.
 *
 * A user with an exec credential plugin gets its credential before the
 * first request; requests wait (on the loop, never blocking it) while the
 * plugin runs, the credential is kept until its expirationTimestamp, and a
 * 401 runs the plugin again and retries once, as client-go does. */
#ifndef IS_HTTP_H
#define IS_HTTP_H

#include <stddef.h>
#include <curl/curl.h>
#include "is_buf.h"
#include "is_exec.h"
#include "is_kstatus.h"
#include "is_kubeconfig.h"
#include "is_loop.h"
#include "is_metrics.h"

/* Caps sized for Kubernetes: etcd keeps objects under 1.5 MiB, and one
 * list page of 500 of those stays well under the body cap. A list as a
 * whole must still fit the Lua state that receives it. */
#define IS_HTTP_MAX_BODY ((size_t)64 << 20)
#define IS_HTTP_MAX_LIST ((size_t)128 << 20)

typedef struct is_cluster_s {
    char *name;            /* "internal", "remote", ... (for logs) */
    is_loop_t *loop;
    is_kubeconfig_t kc;    /* owned */
    long connect_timeout_ms;
    long idle_timeout_ms;  /* a response that sends nothing for this long is
                              abandoned (default 180 s: the API server sends
                              a watch bookmark about every minute) */
    size_t max_body;       /* a buffered response body past this fails the
                              request (default IS_HTTP_MAX_BODY) */
    size_t max_list;       /* all items of one paged list (is_kapi_list;
                              default IS_HTTP_MAX_LIST) */
    unsigned long requests; /* counters for metrics */
    unsigned long failures;
    long exec_timeout_ms;   /* bound on one run of the exec plugin */
    is_exec_t exec__;       /* the plugin, when kc.exec is set */
    is_exec_cred_t cred__;  /* its last credential */
    int have_cred__;
    unsigned long cred_gen__;          /* bumped with each new credential */
    struct is_http_req_s *waiting__;   /* requests waiting for the plugin */
    struct is_http_req_s *waiting_tail__;
    struct is_http_req_s *releasing__; /* the batch being handed on */
    is_timer_t fail_timer__;           /* fails waiting requests when the plugin cannot start */
    char *exec_error__;
    is_metric_t *requests_metric__, *latency_metric__; /* is_cluster_set_metrics */
    char *metrics_host__;
} is_cluster_t;

typedef struct is_http_req_s is_http_req_t;

typedef struct is_http_result_s {
    long code;              /* HTTP status; 0 when the transport failed */
    CURLcode curl_code;     /* CURLE_OK unless the transport failed */
    const char *error;      /* one line for logs when code is 0 or >= 400;
                               TLS problems start with "TLS: "; a body
                               past the cap is reason "ResponseTooLarge" */
    const char *body;       /* whole body (empty for streamed 2xx) */
    size_t body_len;
    const is_kstatus_t *status; /* decoded when code is 0 or >= 400, else NULL */
} is_http_result_t;

/* Streaming: receives 2xx body bytes as they arrive. Non-zero aborts. */
typedef int (*is_http_data_cb)(is_http_req_t *req, const char *data, size_t len, void *ud);
/* Runs once per request that was not cancelled; the request is freed after. */
typedef void (*is_http_done_cb)(is_http_req_t *req, const is_http_result_t *res, void *ud);

typedef struct is_http_opts_s {
    const char *method;       /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *path;         /* path and query, e.g. "/api/v1/namespaces" */
    const char *body;         /* may be NULL */
    size_t body_len;
    const char *content_type; /* default "application/json" when body set */
    long timeout_ms;          /* whole-request limit; 0 = none (watches) */
    is_http_data_cb on_data;  /* NULL = accumulate the body */
} is_http_opts_t;

/* Takes ownership of *kc (zeroes it). */
int is_cluster_init(is_cluster_t *c, is_loop_t *loop, const char *name, is_kubeconfig_t *kc);
void is_cluster_close(is_cluster_t *c);
/* Reports client-go's rest_client_requests_total{code,method,host} and
 * rest_client_request_duration_seconds{verb,host} for every attempt
 * (each try of a request, as client-go counts them) into reg, which must
 * outlive the cluster. host is the server's host:port. */
int is_cluster_set_metrics(is_cluster_t *c, is_metrics_t *reg);

/* Starts a request. On IS_OK, done (or nothing, if cancelled) follows later
 * from the loop; *out (may be NULL) lets the caller cancel it. */
int is_http_request(is_cluster_t *c, const is_http_opts_t *opts,
                    is_http_done_cb done, void *ud, is_http_req_t **out);
/* Aborts a request; its done callback is not called. */
void is_http_cancel(is_http_req_t *req);

#endif
