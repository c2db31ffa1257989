/* The event loop.
 *
 * One iteration: refresh the cached clock, run the timers that are due, let
 * libcurl make progress, deliver finished transfers, then sleep in
 * curl_multi_poll until the next timer, curl's own timeout, or activity on a
 * socket, an extra fd or the stop pipe. Everything runs on one thread, so
 * callbacks never need locks; the only thing that may come from elsewhere is
 * is_loop_stop, which is why it touches nothing but a flag and a pipe. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_loop.h"

/* Without timers, transfers or a bound from the caller the loop still wakes
 * up now and then; a stop request or new fd activity interrupts it anyway. */
#define LOOP_IDLE_WAIT_MS 60000

/* What the loop remembers about a transfer: stored in CURLOPT_PRIVATE so a
 * finished easy handle leads straight to its callback, and linked in a list
 * so is_loop_close can release the ones still running. */
typedef struct is_loop_xfer_s {
    CURL *easy;
    is_transfer_done_cb cb;
    void *data;
    struct is_loop_xfer_s *prev, *next;
} loop_xfer_t;

static int loop_err_from_multi(CURLMcode mc) {
    if (mc == CURLM_OK)
        return IS_OK;
    return mc == CURLM_OUT_OF_MEMORY ? IS_ENOMEM : IS_EHTTP;
}

static uint64_t loop_clock_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int loop_set_pipe_flags(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

int is_loop_init(is_loop_t *loop) {
    memset(loop, 0, sizeof *loop);
    loop->stop_pipe__[0] = loop->stop_pipe__[1] = -1;
    /* Reference counted by libcurl, so every loop may take its own. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return IS_ENOMEM;
    loop->multi = curl_multi_init();
    if (!loop->multi) {
        curl_global_cleanup();
        return IS_ENOMEM;
    }
    if (pipe(loop->stop_pipe__) < 0 || loop_set_pipe_flags(loop->stop_pipe__[0]) < 0 ||
        loop_set_pipe_flags(loop->stop_pipe__[1]) < 0) {
        int err = errno == ENOMEM ? IS_ENOMEM : IS_EIO;
        for (int i = 0; i < 2; i++)
            if (loop->stop_pipe__[i] >= 0)
                close(loop->stop_pipe__[i]);
        curl_multi_cleanup(loop->multi);
        loop->multi = NULL;
        curl_global_cleanup();
        return err;
    }
    loop->now__ = loop_clock_ms();
    return IS_OK;
}

void is_loop_close(is_loop_t *loop) {
    if (!loop->multi)
        return;
    while (loop->xfers__)
        is_loop_remove_transfer(loop, loop->xfers__->easy);
    /* Timers are the caller's; unlink the ones still started so that a later
     * is_timer_stop on them does not reach into the freed heap. */
    for (int i = 0; i < loop->heap_len__; i++)
        loop->heap__[i]->heap_index__ = -1;
    is_free(loop->heap__);
    loop->heap__ = NULL;
    loop->heap_len__ = loop->heap_cap__ = 0;
    curl_multi_cleanup(loop->multi);
    loop->multi = NULL;
    close(loop->stop_pipe__[0]);
    close(loop->stop_pipe__[1]);
    loop->stop_pipe__[0] = loop->stop_pipe__[1] = -1;
    loop->nfds__ = 0;
    curl_global_cleanup();
}

uint64_t is_loop_now(const is_loop_t *loop) {
    return loop->now__;
}

void is_loop_update_time(is_loop_t *loop) {
    loop->now__ = loop_clock_ms();
}

void is_loop_stop(is_loop_t *loop) {
    /* Only async-signal-safe steps: a signal handler may be the caller. The
     * flag comes first so the loop, once woken by the byte, sees it. A full
     * pipe (EAGAIN) already guarantees a wake-up, so the result is moot. */
    int saved_errno = errno;
    loop->stop_requested__ = 1;
    ssize_t n = write(loop->stop_pipe__[1], "s", 1);
    (void)n;
    errno = saved_errno;
}

static is_loop_t *volatile signal_loop;

static void on_stop_signal(int sig) {
    (void)sig;
    is_loop_t *loop = signal_loop;
    if (loop) is_loop_stop(loop);
}

int is_loop_stop_on_signals(is_loop_t *loop) {
    signal_loop = loop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL)) return IS_EINVAL;
    signal(SIGPIPE, SIG_IGN);
    return IS_OK;
}

/* ---- timers: a binary min-heap on (due, seq) ---- */

static int timer_less(const is_timer_t *a, const is_timer_t *b) {
    return a->due__ < b->due__ || (a->due__ == b->due__ && a->seq__ < b->seq__);
}

static void heap_place(is_loop_t *loop, int i, is_timer_t *t) {
    loop->heap__[i] = t;
    t->heap_index__ = i;
}

static void heap_sift_up(is_loop_t *loop, int i) {
    is_timer_t *t = loop->heap__[i];
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!timer_less(t, loop->heap__[parent]))
            break;
        heap_place(loop, i, loop->heap__[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void heap_sift_down(is_loop_t *loop, int i) {
    is_timer_t *t = loop->heap__[i];
    int n = loop->heap_len__;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && timer_less(loop->heap__[child + 1], loop->heap__[child]))
            child++;
        if (!timer_less(loop->heap__[child], t))
            break;
        heap_place(loop, i, loop->heap__[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

static void heap_remove(is_loop_t *loop, is_timer_t *t) {
    int i = t->heap_index__;
    is_timer_t *last = loop->heap__[--loop->heap_len__];
    t->heap_index__ = -1;
    if (last == t)
        return;
    heap_place(loop, i, last);
    /* The moved element may belong above or below its new position. */
    if (i > 0 && timer_less(last, loop->heap__[(i - 1) / 2]))
        heap_sift_up(loop, i);
    else
        heap_sift_down(loop, i);
}

void is_timer_init(is_loop_t *loop, is_timer_t *timer, is_timer_cb cb, void *data) {
    timer->loop__ = loop;
    timer->due__ = 0;
    timer->seq__ = 0;
    timer->heap_index__ = -1;
    timer->cb = cb;
    timer->data = data;
}

int is_timer_start(is_timer_t *timer, uint64_t delay_ms) {
    is_loop_t *loop = timer->loop__;
    if (!loop)
        return IS_EINVAL;
    if (timer->heap_index__ < 0 && loop->heap_len__ == loop->heap_cap__) {
        int cap = loop->heap_cap__ ? loop->heap_cap__ * 2 : 16;
        if (cap <= loop->heap_cap__)
            return IS_ELIMIT;
        is_timer_t **heap = is_realloc(loop->heap__, (size_t)cap * sizeof *heap);
        if (!heap)
            return IS_ENOMEM;
        loop->heap__ = heap;
        loop->heap_cap__ = cap;
    }
    timer->due__ = delay_ms > UINT64_MAX - loop->now__ ? UINT64_MAX : loop->now__ + delay_ms;
    timer->seq__ = loop->seq__++;
    if (timer->heap_index__ < 0) {
        int i = loop->heap_len__++;
        heap_place(loop, i, timer);
        heap_sift_up(loop, i);
    } else {
        /* A restart always moves the timer later in (due, seq) order, as
         * seq grows, unless the new due time is earlier. */
        int i = timer->heap_index__;
        heap_sift_up(loop, i);
        heap_sift_down(loop, timer->heap_index__);
    }
    return IS_OK;
}

void is_timer_stop(is_timer_t *timer) {
    if (timer->heap_index__ >= 0 && timer->loop__)
        heap_remove(timer->loop__, timer);
}

int is_timer_active(const is_timer_t *timer) {
    return timer->heap_index__ >= 0;
}

/* Runs the timers due at the cached time. Timers started by the callbacks
 * themselves (seq at or past the mark) wait for the next iteration, so a
 * zero-delay timer that keeps restarting cannot starve I/O. */
static void loop_run_timers(is_loop_t *loop) {
    uint64_t mark = loop->seq__;
    while (loop->heap_len__ > 0) {
        is_timer_t *t = loop->heap__[0];
        if (t->due__ > loop->now__ || t->seq__ >= mark)
            break;
        heap_remove(loop, t);
        /* The callback may restart or free the timer; it is not touched
         * after this call. */
        t->cb(t);
    }
}

/* ---- transfers ---- */

int is_loop_add_transfer(is_loop_t *loop, CURL *easy, is_transfer_done_cb cb, void *data) {
    if (!easy || !cb)
        return IS_EINVAL;
    loop_xfer_t *x = is_malloc(sizeof *x);
    if (!x)
        return IS_ENOMEM;
    x->easy = easy;
    x->cb = cb;
    x->data = data;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)x);
    CURLMcode mc = curl_multi_add_handle(loop->multi, easy);
    if (mc != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)NULL);
        is_free(x);
        return mc == CURLM_OUT_OF_MEMORY ? IS_ENOMEM : IS_EINVAL;
    }
    x->prev = NULL;
    x->next = loop->xfers__;
    if (x->next)
        x->next->prev = x;
    loop->xfers__ = x;
    return IS_OK;
}

/* Takes easy out of the multi handle and forgets its record; returns the
 * record's contents through cb/data so a caller can still deliver them. */
static int loop_detach(is_loop_t *loop, CURL *easy, is_transfer_done_cb *cb, void **data) {
    char *priv = NULL;
    if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv)
        return 0;
    loop_xfer_t *x = (loop_xfer_t *)(void *)priv;
    curl_multi_remove_handle(loop->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, (void *)NULL);
    if (x->prev)
        x->prev->next = x->next;
    else
        loop->xfers__ = x->next;
    if (x->next)
        x->next->prev = x->prev;
    *cb = x->cb;
    *data = x->data;
    is_free(x);
    return 1;
}

void is_loop_remove_transfer(is_loop_t *loop, CURL *easy) {
    is_transfer_done_cb cb;
    void *data;
    (void)loop_detach(loop, easy, &cb, &data);
}

static void loop_deliver_done(is_loop_t *loop) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(loop->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        is_transfer_done_cb cb;
        void *data;
        /* Detached first, so the callback may free or re-add the handle. */
        if (loop_detach(loop, easy, &cb, &data))
            cb(easy, result, data);
    }
}

/* ---- extra fds ---- */

int is_loop_add_fd(is_loop_t *loop, int fd, is_fd_cb cb, void *data) {
    if (fd < 0 || !cb)
        return IS_EINVAL;
    for (int i = 0; i < loop->nfds__; i++) {
        if (loop->fds__[i].fd == fd) {
            loop->fds__[i].cb = cb;
            loop->fds__[i].data = data;
            return IS_OK;
        }
    }
    if (loop->nfds__ == IS_LOOP_MAX_FDS)
        return IS_ELIMIT;
    loop->fds__[loop->nfds__].fd = fd;
    loop->fds__[loop->nfds__].cb = cb;
    loop->fds__[loop->nfds__].data = data;
    loop->nfds__++;
    return IS_OK;
}

void is_loop_remove_fd(is_loop_t *loop, int fd) {
    for (int i = 0; i < loop->nfds__; i++) {
        if (loop->fds__[i].fd == fd) {
            memmove(&loop->fds__[i], &loop->fds__[i + 1],
                    (size_t)(loop->nfds__ - i - 1) * sizeof loop->fds__[0]);
            loop->nfds__--;
            return;
        }
    }
}

static void loop_drain_stop_pipe(is_loop_t *loop) {
    char buf[64];
    while (read(loop->stop_pipe__[0], buf, sizeof buf) > 0)
        ;
}

static int loop_alive(const is_loop_t *loop) {
    return loop->xfers__ || loop->heap_len__ > 0 || loop->nfds__ > 0;
}

/* How long the poll may sleep: until the next timer, curl's deadline or the
 * caller's bound, whichever comes first; never when there is nothing to wait
 * for or a stop is pending. */
static int loop_wait_ms(is_loop_t *loop, int max_wait_ms) {
    if (loop->stop_requested__ || !loop_alive(loop))
        return 0;
    long wait = max_wait_ms >= 0 ? max_wait_ms : LOOP_IDLE_WAIT_MS;
    if (loop->heap_len__ > 0) {
        uint64_t due = loop->heap__[0]->due__;
        uint64_t until = due > loop->now__ ? due - loop->now__ : 0;
        if (until < (uint64_t)wait)
            wait = (long)until;
    }
    long curl_wait = -1;
    if (curl_multi_timeout(loop->multi, &curl_wait) == CURLM_OK && curl_wait >= 0 &&
        curl_wait < wait)
        wait = curl_wait;
    return wait > INT_MAX ? INT_MAX : (int)wait;
}

int is_loop_run_once(is_loop_t *loop, int max_wait_ms) {
    is_loop_update_time(loop);
    loop_run_timers(loop);

    int running = 0;
    CURLMcode mc = curl_multi_perform(loop->multi, &running);
    if (mc != CURLM_OK)
        return loop_err_from_multi(mc);
    loop_deliver_done(loop);

    struct curl_waitfd waitfds[IS_LOOP_MAX_FDS + 1];
    struct { int fd; is_fd_cb cb; void *data; } watched[IS_LOOP_MAX_FDS];
    int nwatched = loop->nfds__;
    waitfds[0].fd = loop->stop_pipe__[0];
    waitfds[0].events = CURL_WAIT_POLLIN;
    waitfds[0].revents = 0;
    for (int i = 0; i < nwatched; i++) {
        watched[i].fd = loop->fds__[i].fd;
        watched[i].cb = loop->fds__[i].cb;
        watched[i].data = loop->fds__[i].data;
        waitfds[i + 1].fd = watched[i].fd;
        waitfds[i + 1].events = CURL_WAIT_POLLIN;
        waitfds[i + 1].revents = 0;
    }
    mc = curl_multi_poll(loop->multi, waitfds, (unsigned)nwatched + 1,
                         loop_wait_ms(loop, max_wait_ms), NULL);
    if (mc != CURLM_OK)
        return loop_err_from_multi(mc);
    if (waitfds[0].revents & CURL_WAIT_POLLIN)
        loop_drain_stop_pipe(loop);

    /* A callback may remove any fd, its own included; each one runs only if
     * it is still registered with the same callback. */
    for (int i = 0; i < nwatched; i++) {
        if (!(waitfds[i + 1].revents & CURL_WAIT_POLLIN))
            continue;
        for (int j = 0; j < loop->nfds__; j++) {
            if (loop->fds__[j].fd == watched[i].fd && loop->fds__[j].cb == watched[i].cb &&
                loop->fds__[j].data == watched[i].data) {
                watched[i].cb(watched[i].fd, watched[i].data);
                break;
            }
        }
    }
    return IS_OK;
}

int is_loop_run(is_loop_t *loop) {
    int rc = IS_OK;
    loop->running__ = 1;
    while (!loop->stop_requested__ && loop_alive(loop)) {
        rc = is_loop_run_once(loop, -1);
        if (rc != IS_OK)
            break;
    }
    /* A stop is consumed by the run it ended, so the next run starts fresh. */
    if (loop->stop_requested__) {
        loop->stop_requested__ = 0;
        loop_drain_stop_pipe(loop);
    }
    loop->running__ = 0;
    return rc;
}
