/* A TCP server on 127.0.0.1 that misbehaves the way a broken API server or
 * a broken proxy in front of one does: garbage instead of HTTP, a stall in
 * the middle of a response, a close right after the headers, a chunked
 * encoding error, or a watch event that never ends. It serves one
 * connection at a time on its own thread; a list request (no "watch=" in
 * the path) gets a valid empty list in every mode but GARBAGE, STALL,
 * HEADERS_ONLY and BAD_CHUNK, so that an informer reaches its watch.
 *
 * Like fake_apiserver.h it never touches is_alloc. */
#ifndef HOSTILE_SERVER_H
#define HOSTILE_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum {
    HOSTILE_GARBAGE,       /* a few bytes that are not HTTP, then close */
    HOSTILE_STALL,         /* headers and part of the body, then silence */
    HOSTILE_HEADERS_ONLY,  /* headers promising a body, then close */
    HOSTILE_BAD_CHUNK,     /* chunked encoding with a chunk size that is not hex */
    HOSTILE_ENDLESS_EVENT, /* lists fine; a watch streams one event that never ends */
    HOSTILE_GOOD           /* lists fine; a watch sends one ADDED event and waits,
                              breaking the stream when the mode changes */
} hostile_mode_t;

typedef struct hostile_s {
    int fd, port;
    atomic_int mode;
    atomic_int stop;
    atomic_int served;     /* connections answered */
    pthread_t thread;
} hostile_t;

static int hostile_write__(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads the request head; 1 if it was a watch. */
static int hostile_read_request__(int fd, hostile_t *h) {
    char buf[8192];
    size_t len = 0;
    while (len < sizeof buf - 1 && !atomic_load(&h->stop)) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0) return -1;
        len += (size_t)n;
        buf[len] = 0;
        if (strstr(buf, "\r\n\r\n")) break;
    }
    return strstr(buf, "watch=") != NULL;
}

/* Waits until the client goes away, the server stops or the mode
 * changes; 1 for a mode change. */
static int hostile_wait_close__(int fd, hostile_t *h) {
    char b[512];
    int mode = atomic_load(&h->mode);
    while (!atomic_load(&h->stop)) {
        if (atomic_load(&h->mode) != mode) return 1;
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) > 0 && recv(fd, b, sizeof b, 0) <= 0) return 0;
    }
    return 0;
}

static const char hostile_list__[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 70\r\n\r\n"
    "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"7\"},\"items\":[]}";

static void hostile_serve__(int fd, hostile_t *h) {
    int watch = hostile_read_request__(fd, h);
    if (watch < 0) return;
    int mode = atomic_load(&h->mode);
    atomic_fetch_add(&h->served, 1);
    switch (mode) {
    case HOSTILE_GARBAGE: {
        static const char g[] = "SSH-2.0-OpenSSH_9.2p1\r\n\x01\x02\x03 not HTTP at all\r\n";
        hostile_write__(fd, g, sizeof g - 1);
        return;
    }
    case HOSTILE_STALL: {
        static const char s[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Content-Length: 100\r\n\r\n{\"kind\":\"Pod\",";
        if (hostile_write__(fd, s, sizeof s - 1) == 0) hostile_wait_close__(fd, h);
        return;
    }
    case HOSTILE_HEADERS_ONLY: {
        static const char s[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Content-Length: 100\r\n\r\n";
        hostile_write__(fd, s, sizeof s - 1);
        return;
    }
    case HOSTILE_BAD_CHUNK: {
        static const char s[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\nZZ\r\nnot a chunk\r\n";
        hostile_write__(fd, s, sizeof s - 1);
        return;
    }
    case HOSTILE_ENDLESS_EVENT: {
        if (!watch) {
            hostile_write__(fd, hostile_list__, sizeof hostile_list__ - 1);
            return;
        }
        static const char s[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n"
                                "2f\r\n{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"\r\n";
        if (hostile_write__(fd, s, sizeof s - 1) != 0) return;
        char chunk[4096 + 16];
        int n = snprintf(chunk, sizeof chunk, "1000\r\n");
        memset(chunk + n, 'x', 4096);
        memcpy(chunk + n + 4096, "\r\n", 2);
        while (!atomic_load(&h->stop) && hostile_write__(fd, chunk, (size_t)n + 4096 + 2) == 0) {}
        return;
    }
    case HOSTILE_GOOD: {
        if (!watch) {
            hostile_write__(fd, hostile_list__, sizeof hostile_list__ - 1);
            return;
        }
        static const char ev[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"back\","
                                 "\"namespace\":\"ns\",\"resourceVersion\":\"8\"}}}\n";
        char s[512];
        int n = snprintf(s, sizeof s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n", sizeof ev - 1, ev);
        /* A mode change breaks the stream mid-way, as a dropped
         * connection would. */
        if (hostile_write__(fd, s, (size_t)n) == 0 && hostile_wait_close__(fd, h))
            hostile_write__(fd, "ZZ\r\n", 4);
        return;
    }
    }
}

static void *hostile_main__(void *arg) {
    hostile_t *h = arg;
    while (!atomic_load(&h->stop)) {
        struct pollfd p = { h->fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0) continue;
        int c = accept(h->fd, NULL, NULL);
        if (c < 0) continue;
        hostile_serve__(c, h);
        close(c);
    }
    return NULL;
}

static inline int hostile_start(hostile_t *h, hostile_mode_t mode) {
    memset(h, 0, sizeof *h);
    atomic_store(&h->mode, mode);
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (h->fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (bind(h->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(h->fd, 8) != 0 ||
        getsockname(h->fd, (struct sockaddr *)&a, &alen) != 0) {
        close(h->fd);
        return -1;
    }
    h->port = ntohs(a.sin_port);
    if (pthread_create(&h->thread, NULL, hostile_main__, h) != 0) {
        close(h->fd);
        return -1;
    }
    return 0;
}

static inline void hostile_set_mode(hostile_t *h, hostile_mode_t mode) { atomic_store(&h->mode, mode); }

static inline void hostile_stop(hostile_t *h) {
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    close(h->fd);
}

#endif
