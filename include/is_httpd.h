/* A small HTTP server for /metrics, /healthz and /readyz, served from the
 * event loop (libmicrohttpd in external-epoll mode), so that no second
 * thread ever reads the controller's state. */
#ifndef IS_HTTPD_H
#define IS_HTTPD_H

#include "is_buf.h"
#include "is_loop.h"

/* Fills body for a GET of path; returns the HTTP status (404 if unknown). */
typedef int (*is_httpd_handler)(const char *path, is_buf_t *body, const char **content_type,
                                 void *ud);

typedef struct is_httpd_s {
    void *daemon__;
    is_loop_t *loop__;
    is_timer_t tick__;
    int fd__;
    is_httpd_handler handler;
    void *ud;
} is_httpd_t;

/* addr is "[host]:port" as controller-runtime's flags take it (":8080",
 * "127.0.0.1:0", "[::1]:8080", "[::]:8080"; ":port" and "[::]" listen on
 * IPv6 and IPv4 alike); "0" disables the server (IS_OK, nothing started). */
int is_httpd_start(is_httpd_t *s, is_loop_t *loop, const char *addr, is_httpd_handler handler,
                   void *ud, char *err, size_t errlen);
/* The bound port (useful with port 0), or 0 when not running. */
int is_httpd_port(const is_httpd_t *s);
void is_httpd_stop(is_httpd_t *s);

#endif
