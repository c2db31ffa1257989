/* The probes and metrics server, driven by the event loop. */
#include "is_httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "is_err.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

static MHD_Result_t on_request(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_size, void **con_cls) {
    (void)version; (void)upload_data; (void)upload_size; (void)con_cls;
    is_httpd_t *s = cls;
    is_buf_t body;
    const char *type = "text/plain; charset=utf-8";
    int status;
    is_buf_init(&body);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = 405;
        is_buf_appends(&body, "method not allowed\n");
    } else {
        status = s->handler(url, &body, &type, s->ud);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        body.len, body.data ? body.data : (char *)"", MHD_RESPMEM_MUST_COPY);
    is_buf_free(&body);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_Result_t rc = MHD_queue_response(conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static void run_daemon(is_httpd_t *s) {
    if (s->daemon__) MHD_run(s->daemon__);
}

static void on_fd(int fd, void *data) {
    (void)fd;
    run_daemon(data);
}

/* libmicrohttpd also needs to run now and then for its own timeouts. */
static void on_tick(is_timer_t *t) {
    is_httpd_t *s = t->data;
    run_daemon(s);
    is_timer_start(&s->tick__, 1000);
}

/* "[host]:port" as Go writes it: "", "localhost", an IPv4 address or a
 * bracketed IPv6 one ("[::1]:8080"). "[::]" and "" listen on both stacks,
 * as Go does. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, unsigned int *flags,
                      char *err, size_t errlen) {
    memset(ss, 0, sizeof *ss);
    *flags = 0;
    const char *colon = strrchr(addr, ':');
    if (!colon) {
        snprintf(err, errlen, "bind address %s: expected [host]:port", addr);
        return IS_EINVAL;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535 || end == colon + 1) {
        snprintf(err, errlen, "bind address %s: bad port", addr);
        return IS_EINVAL;
    }
    char host[INET6_ADDRSTRLEN + 2];
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof host) {
        snprintf(err, errlen, "bind address %s: bad host", addr);
        return IS_EINVAL;
    }
    memcpy(host, addr, hlen);
    host[hlen] = 0;
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (hlen == 0) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sin6->sin6_addr = in6addr_any;
        *flags = MHD_USE_DUAL_STACK;
        return IS_OK;
    }
    if (host[0] == '[') {
        if (hlen < 3 || host[hlen - 1] != ']') {
            snprintf(err, errlen, "bind address %s: missing ] after the IPv6 address", addr);
            return IS_EINVAL;
        }
        host[hlen - 1] = 0;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1) {
            snprintf(err, errlen, "bind address %s: %s is not an IPv6 address", addr, host + 1);
            return IS_EINVAL;
        }
        *flags = IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
        return IS_OK;
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (strchr(host, ':')) {
        snprintf(err, errlen, "bind address %s: an IPv6 address needs brackets, as in [::1]:8080", addr);
        return IS_EINVAL;
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        snprintf(err, errlen, "bind address %s: %s is not an IP address", addr, host);
        return IS_EINVAL;
    }
    return IS_OK;
}

static struct MHD_Daemon *start_daemon(is_httpd_t *s, struct sockaddr_storage *ss, unsigned int flags) {
    return MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_TURBO | flags, 0, NULL, NULL, on_request, s,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)ss, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64, MHD_OPTION_END);
}

int is_httpd_start(is_httpd_t *s, is_loop_t *loop, const char *addr, is_httpd_handler handler,
                   void *ud, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->loop__ = loop;
    s->handler = handler;
    s->ud = ud;
    s->fd__ = -1;
    if (!addr || strcmp(addr, "0") == 0) return IS_OK;

    struct sockaddr_storage ss;
    unsigned int flags;
    int rc = parse_addr(addr, &ss, &flags, err, errlen);
    if (rc != IS_OK) return rc;
    struct MHD_Daemon *d = start_daemon(s, &ss, flags);
    /* ":port" asks for every address, as Go's net.Listen reads it: both
     * stacks where the host has IPv6, IPv4 alone where it has not. */
    if (!d && (flags & MHD_USE_DUAL_STACK) == MHD_USE_DUAL_STACK && addr[0] == ':') {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        uint16_t port = ((struct sockaddr_in6 *)&ss)->sin6_port;
        memset(&ss, 0, sizeof ss);
        sin->sin_family = AF_INET;
        sin->sin_port = port;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        d = start_daemon(s, &ss, 0);
    }
    if (!d) {
        snprintf(err, errlen, "cannot listen on %s", addr);
        return IS_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) {
        MHD_stop_daemon(d);
        snprintf(err, errlen, "cannot serve %s from the event loop", addr);
        return IS_EIO;
    }
    s->daemon__ = d;
    s->fd__ = info->listen_fd;
    rc = is_loop_add_fd(loop, s->fd__, on_fd, s);
    is_timer_init(loop, &s->tick__, on_tick, s);
    if (rc == IS_OK) rc = is_timer_start(&s->tick__, 1000);
    if (rc != IS_OK) {
        is_httpd_stop(s);
        snprintf(err, errlen, "%s", is_strerror(rc));
    }
    return rc;
}

int is_httpd_port(const is_httpd_t *s) {
    if (!s->daemon__) return 0;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon__, MHD_DAEMON_INFO_BIND_PORT);
    return info ? info->port : 0;
}

void is_httpd_stop(is_httpd_t *s) {
    if (!s->daemon__) return;
    is_timer_stop(&s->tick__);
    is_loop_remove_fd(s->loop__, s->fd__);
    MHD_stop_daemon(s->daemon__);
    s->daemon__ = NULL;
}
