/* A fake Kubernetes API server for unit tests: plain HTTP on 127.0.0.1,
 * served by libmicrohttpd on its own thread so that the loop under test talks
 * to it over real sockets and never has to serve it. Every request is
 * recorded (method, raw path and query, content type, body) and answered by
 * a route callback the test supplies.
 *
 * The server thread never touches is_alloc: the tests compare its counter
 * before and after, and the counter is not meant to be shared by threads. */
#ifndef FAKE_APISERVER_H
#define FAKE_APISERVER_H

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_http.h"

#define FAKE_MAX_REQS 64

typedef struct fake_req_s {
    char method[16];
    char uri[1024];          /* as sent: path and percent-encoded query */
    char content_type[128];
    char authorization[512];
    char body[8192];
    size_t body_len;
    int started__;
} fake_req_t;

/* Runs on the server thread: sets *status and writes at most cap-1 bytes of
 * body (NUL-terminated). */
typedef void (*fake_route_cb)(const fake_req_t *req, int *status, char *body, size_t cap,
                              void *ud);

typedef struct fake_api_s {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t mu;
    fake_req_t reqs[FAKE_MAX_REQS];
    int nreqs;
    fake_route_cb route;
    void *ud;
} fake_api_t;

static void *fake_api_on_uri__(void *cls, const char *uri, struct MHD_Connection *con) {
    (void)cls;
    (void)con;
    fake_req_t *r = calloc(1, sizeof *r);
    if (r) snprintf(r->uri, sizeof r->uri, "%s", uri);
    return r;
}

static inline void fake_api_on_done__(void *cls, struct MHD_Connection *con, void **con_cls,
                               enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)con;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static inline enum MHD_Result fake_api_on_request__(void *cls, struct MHD_Connection *con,
                                             const char *url, const char *method,
                                             const char *version, const char *upload_data,
                                             size_t *upload_data_size, void **con_cls) {
    fake_api_t *s = cls;
    fake_req_t *r = *con_cls;
    (void)url;
    (void)version;
    if (!r) return MHD_NO;
    if (!r->started__) {
        r->started__ = 1;
        snprintf(r->method, sizeof r->method, "%s", method);
        const char *ct = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Type");
        snprintf(r->content_type, sizeof r->content_type, "%s", ct ? ct : "");
        const char *auth = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
        snprintf(r->authorization, sizeof r->authorization, "%s", auth ? auth : "");
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t room = sizeof r->body - 1 - r->body_len;
        size_t n = *upload_data_size < room ? *upload_data_size : room;
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = 0;
        *upload_data_size = 0;
        return MHD_YES;
    }
    static char answer[65536];
    int status = 404;
    pthread_mutex_lock(&s->mu);
    if (s->nreqs < FAKE_MAX_REQS) s->reqs[s->nreqs++] = *r;
    strcpy(answer, "{}");
    if (s->route) s->route(r, &status, answer, sizeof answer, s->ud);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(answer), answer, MHD_RESPMEM_MUST_COPY);
    pthread_mutex_unlock(&s->mu);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    enum MHD_Result ok = MHD_queue_response(con, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static inline int fake_api_start(fake_api_t *s, fake_route_cb route, void *ud) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->route = route;
    s->ud = ud;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL,
                                 fake_api_on_request__, s,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                 MHD_OPTION_URI_LOG_CALLBACK, fake_api_on_uri__, s,
                                 MHD_OPTION_NOTIFY_COMPLETED, fake_api_on_done__, s,
                                 MHD_OPTION_END);
    if (!s->daemon) return -1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    return s->port ? 0 : -1;
}

static inline void fake_api_stop(fake_api_t *s) {
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    pthread_mutex_destroy(&s->mu);
}

/* A copy of request i (so the caller needs no lock); empty when absent. */
static inline fake_req_t fake_api_req(fake_api_t *s, int i) {
    fake_req_t r;
    memset(&r, 0, sizeof r);
    pthread_mutex_lock(&s->mu);
    if (i >= 0 && i < s->nreqs) r = s->reqs[i];
    pthread_mutex_unlock(&s->mu);
    return r;
}

static inline int fake_api_count(fake_api_t *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->nreqs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static inline void fake_api_reset(fake_api_t *s) {
    pthread_mutex_lock(&s->mu);
    s->nreqs = 0;
    pthread_mutex_unlock(&s->mu);
}

/* A loopback port nobody listens on: bound, then released, so a connect is
 * refused at once. */
static inline int fake_refused_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    int port = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &alen) == 0)
        port = ntohs(addr.sin_port);
    close(fd);
    return port;
}

/* A cluster whose kubeconfig is filled by hand: plain http, no credentials. */
static inline int fake_cluster_init(is_cluster_t *c, is_loop_t *loop, const char *name, int port) {
    is_kubeconfig_t kc;
    char server[64];
    memset(&kc, 0, sizeof kc);
    snprintf(server, sizeof server, "http://127.0.0.1:%d", port);
    kc.server = is_strdup(server);
    if (!kc.server) return IS_ENOMEM;
    int rc = is_cluster_init(c, loop, name, &kc);
    is_kubeconfig_free(&kc);
    return rc;
}

#endif
