/* The event loop: one thread, libcurl's multi interface for every socket,
 * plus timers, deferred callbacks and extra file descriptors (the metrics
 * server, the signal pipe).
 *
 * Handles are owned by the caller (libuv style): embed an is_timer_t in your
 * own struct, start and stop it; the loop only links it. */
#ifndef IS_LOOP_H
#define IS_LOOP_H

#include <signal.h>
#include <stdint.h>
#include <curl/curl.h>

typedef struct is_loop_s is_loop_t;
typedef struct is_timer_s is_timer_t;

typedef void (*is_timer_cb)(is_timer_t *timer);
/* Called when a transfer added with is_loop_add_transfer completes. */
typedef void (*is_transfer_done_cb)(CURL *easy, CURLcode result, void *data);
/* Called after each wait when the extra fd may be readable. */
typedef void (*is_fd_cb)(int fd, void *data);

struct is_timer_s {
    is_loop_t *loop__;
    uint64_t due__;      /* monotonic ms */
    uint64_t seq__;      /* insertion order, ties break FIFO */
    int heap_index__;    /* -1 when not started */
    is_timer_cb cb;
    void *data;          /* for the owner */
};

#define IS_LOOP_MAX_FDS 8

struct is_loop_s {
    CURLM *multi;
    int running__;
    uint64_t now__;            /* cached monotonic ms, updated per iteration */
    is_timer_t **heap__;
    int heap_len__, heap_cap__;
    uint64_t seq__;
    struct { int fd; is_fd_cb cb; void *data; } fds__[IS_LOOP_MAX_FDS];
    int nfds__;
    int stop_pipe__[2];        /* written from a signal handler to stop */
    volatile sig_atomic_t stop_requested__;
    struct is_loop_xfer_s *xfers__; /* transfers in the multi handle */
};

int is_loop_init(is_loop_t *loop);
void is_loop_close(is_loop_t *loop);  /* frees loop resources, not handles */
/* Runs until is_loop_stop or until nothing is left (no transfers, timers,
 * fds). Returns IS_OK or an error from libcurl's multi interface. */
int is_loop_run(is_loop_t *loop);
/* Runs one iteration, waiting at most max_wait_ms. */
int is_loop_run_once(is_loop_t *loop, int max_wait_ms);
/* Async-signal-safe: asks a running loop to return. */
void is_loop_stop(is_loop_t *loop);
/* SIGTERM and SIGINT stop loop (NULL: they stop nothing any more); SIGPIPE
 * is ignored, since a peer closing a socket is an ordinary error. One loop
 * per process at a time. */
int is_loop_stop_on_signals(is_loop_t *loop);
uint64_t is_loop_now(const is_loop_t *loop);  /* monotonic ms */
void is_loop_update_time(is_loop_t *loop);

/* Starts (or restarts) timer to fire once after delay_ms. */
void is_timer_init(is_loop_t *loop, is_timer_t *timer, is_timer_cb cb, void *data);
int is_timer_start(is_timer_t *timer, uint64_t delay_ms);
void is_timer_stop(is_timer_t *timer);
int is_timer_active(const is_timer_t *timer);

/* Adds an easy handle; cb runs once when it completes. The loop stores data
 * in the handle's CURLOPT_PRIVATE. The caller keeps ownership of easy. */
int is_loop_add_transfer(is_loop_t *loop, CURL *easy, is_transfer_done_cb cb, void *data);
/* Removes a running transfer without calling its callback. */
void is_loop_remove_transfer(is_loop_t *loop, CURL *easy);

/* Watches fd for readability; cb runs after a wait in which it may be ready. */
int is_loop_add_fd(is_loop_t *loop, int fd, is_fd_cb cb, void *data);
void is_loop_remove_fd(is_loop_t *loop, int fd);

#endif
