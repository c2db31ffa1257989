/* The event loop: timer order and ties, callbacks that stop, restart and
 * free timers, a large random heap, a stop from a signal handler, extra fds,
 * and real transfers against an HTTP server served by the loop itself. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_loop.h"
#include "testing.h"

/* ---- timers ---- */

#define MAX_FIRED 64

typedef struct {
    int fired[MAX_FIRED];
    int nfired;
} fire_log_t;

typedef struct {
    is_timer_t timer;
    int id;
    fire_log_t *log;
    uint64_t started_at;
    uint64_t delay;
    uint64_t fired_at;
} tagged_timer_t;

static void log_fire(is_timer_t *t) {
    tagged_timer_t *tt = t->data;
    tt->fired_at = is_loop_now(t->loop__);
    if (tt->log->nfired < MAX_FIRED)
        tt->log->fired[tt->log->nfired++] = tt->id;
}

static void test_timer_order(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    fire_log_t log = {0};
    tagged_timer_t t[4];
    const uint64_t delays[4] = {30, 10, 20, 0};
    for (int i = 0; i < 4; i++) {
        t[i].id = i;
        t[i].log = &log;
        t[i].delay = delays[i];
        t[i].started_at = is_loop_now(&loop);
        is_timer_init(&loop, &t[i].timer, log_fire, &t[i]);
        CHECK(!is_timer_active(&t[i].timer));
        CHECK_INT(is_timer_start(&t[i].timer, delays[i]), IS_OK);
        CHECK(is_timer_active(&t[i].timer));
    }
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(log.nfired, 4);
    CHECK_INT(log.fired[0], 3);
    CHECK_INT(log.fired[1], 1);
    CHECK_INT(log.fired[2], 2);
    CHECK_INT(log.fired[3], 0);
    for (int i = 0; i < 4; i++) {
        CHECK(!is_timer_active(&t[i].timer));
        CHECK(t[i].fired_at >= t[i].started_at + t[i].delay);
    }
    is_loop_close(&loop);
}

static void test_timer_fifo_ties(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    fire_log_t log = {0};
    tagged_timer_t t[20];
    /* Started in a scrambled order of ids; ties fire in start order. */
    for (int i = 0; i < 20; i++) {
        t[i].id = (i * 7) % 20;
        t[i].log = &log;
        is_timer_init(&loop, &t[i].timer, log_fire, &t[i]);
        CHECK_INT(is_timer_start(&t[i].timer, 5), IS_OK);
    }
    /* Restarting moves a timer behind the others with the same due time. */
    CHECK_INT(is_timer_start(&t[0].timer, 5), IS_OK);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(log.nfired, 20);
    for (int i = 1; i < 20; i++)
        CHECK_INT(log.fired[i - 1], t[i].id);
    CHECK_INT(log.fired[19], t[0].id);
    is_loop_close(&loop);
}

/* A callback that stops one timer, frees another right after stopping it,
 * and restarts itself a few times. */
typedef struct {
    is_timer_t self;
    is_timer_t victim;        /* due at the same time, must not fire */
    is_timer_t *heap_victim;  /* heap-allocated, freed after stop */
    int self_runs;
    int victim_runs;
    int heap_victim_runs;
} restart_ctx_t;

static void victim_cb(is_timer_t *t) {
    restart_ctx_t *c = t->data;
    c->victim_runs++;
}

static void heap_victim_cb(is_timer_t *t) {
    restart_ctx_t *c = t->data;
    c->heap_victim_runs++;
}

static void restarting_cb(is_timer_t *t) {
    restart_ctx_t *c = t->data;
    c->self_runs++;
    if (c->self_runs == 1) {
        is_timer_stop(&c->victim);
        is_timer_stop(c->heap_victim);
        is_free(c->heap_victim);
        c->heap_victim = NULL;
    }
    if (c->self_runs < 5)
        CHECK_INT(is_timer_start(t, 1), IS_OK);
}

static void test_timer_stop_restart_from_callbacks(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    restart_ctx_t c = {0};
    c.heap_victim = is_malloc(sizeof *c.heap_victim);
    CHECK(c.heap_victim != NULL);
    is_timer_init(&loop, &c.self, restarting_cb, &c);
    is_timer_init(&loop, &c.victim, victim_cb, &c);
    is_timer_init(&loop, c.heap_victim, heap_victim_cb, &c);
    CHECK_INT(is_timer_start(&c.self, 2), IS_OK);
    CHECK_INT(is_timer_start(&c.victim, 2), IS_OK);
    CHECK_INT(is_timer_start(c.heap_victim, 2), IS_OK);
    /* Stopping twice, or stopping a timer that never started, is harmless. */
    is_timer_t idle;
    is_timer_init(&loop, &idle, victim_cb, &c);
    is_timer_stop(&idle);
    is_timer_stop(&idle);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(c.self_runs, 5);
    CHECK_INT(c.victim_runs, 0);
    CHECK_INT(c.heap_victim_runs, 0);
    CHECK(c.heap_victim == NULL);
    is_loop_close(&loop);
}

/* A zero-delay timer that restarts itself runs once per iteration. */
static void zero_restart_cb(is_timer_t *t) {
    int *runs = t->data;
    (*runs)++;
    CHECK_INT(is_timer_start(t, 0), IS_OK);
}

static void test_zero_delay_does_not_starve(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    int runs = 0;
    is_timer_t t;
    is_timer_init(&loop, &t, zero_restart_cb, &runs);
    CHECK_INT(is_timer_start(&t, 0), IS_OK);
    for (int i = 1; i <= 5; i++) {
        CHECK_INT(is_loop_run_once(&loop, 1000), IS_OK);
        CHECK_INT(runs, i);
    }
    is_timer_stop(&t);
    CHECK(!is_timer_active(&t));
    is_loop_close(&loop);
}

/* ---- many timers ---- */

#define MANY 100000

typedef struct {
    is_timer_t timer;
    int index;
    uint64_t delay;
} many_timer_t;

static struct {
    many_timer_t *timers;
    uint64_t last_delay;
    int last_index;
    int fired;
    int out_of_order;
} many;

static void many_cb(is_timer_t *t) {
    many_timer_t *m = t->data;
    if (m->delay < many.last_delay ||
        (m->delay == many.last_delay && m->index < many.last_index))
        many.out_of_order++;
    many.last_delay = m->delay;
    many.last_index = m->index;
    many.fired++;
}

static void test_many_timers(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    memset(&many, 0, sizeof many);
    many.timers = is_calloc(MANY, sizeof *many.timers);
    CHECK(many.timers != NULL);
    srand(12345);
    for (int i = 0; i < MANY; i++) {
        many_timer_t *m = &many.timers[i];
        m->index = i;
        m->delay = (uint64_t)(rand() % 40);
        is_timer_init(&loop, &m->timer, many_cb, m);
        CHECK_INT(is_timer_start(&m->timer, m->delay), IS_OK);
    }
    /* Stop every seventh timer: removal from the middle of the heap. */
    int stopped = 0;
    for (int i = 0; i < MANY; i += 7) {
        is_timer_stop(&many.timers[i].timer);
        stopped++;
    }
    CHECK_INT(loop.heap_len__, MANY - stopped);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(many.fired, MANY - stopped);
    CHECK_INT(many.out_of_order, 0);
    is_free(many.timers);
    is_loop_close(&loop);
}

/* ---- stop ---- */

static is_loop_t *signal_loop;
static void on_sigusr1(int sig) {
    (void)sig;
    is_loop_stop(signal_loop);
}

static void raise_cb(is_timer_t *t) {
    int *raised = t->data;
    (*raised)++;
    raise(SIGUSR1);
}

static void never_cb(is_timer_t *t) {
    int *runs = t->data;
    (*runs)++;
}

static void test_stop_from_signal(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    signal_loop = &loop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    CHECK_INT(sigaction(SIGUSR1, &sa, NULL), 0);

    int raised = 0, long_runs = 0;
    is_timer_t raiser, far;
    is_timer_init(&loop, &raiser, raise_cb, &raised);
    is_timer_init(&loop, &far, never_cb, &long_runs);
    CHECK_INT(is_timer_start(&raiser, 5), IS_OK);
    CHECK_INT(is_timer_start(&far, 60000), IS_OK);
    uint64_t start = is_loop_now(&loop);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    is_loop_update_time(&loop);
    CHECK_INT(raised, 1);
    CHECK_INT(long_runs, 0);
    CHECK(is_timer_active(&far));
    CHECK(is_loop_now(&loop) - start < 5000);

    /* The stop was consumed: a new run proceeds until the next stop. */
    CHECK_INT(is_timer_start(&raiser, 1), IS_OK);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(raised, 2);
    CHECK(is_timer_active(&far));

    /* A stop before the run makes it return at once. */
    is_loop_stop(&loop);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(long_runs, 0);

    is_timer_stop(&far);
    signal(SIGUSR1, SIG_DFL);
    is_loop_close(&loop);
}

static void test_run_returns_when_idle(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    uint64_t start = is_loop_now(&loop);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    /* run_once with nothing to wait for does not sleep for max_wait. */
    CHECK_INT(is_loop_run_once(&loop, 10000), IS_OK);
    is_loop_update_time(&loop);
    CHECK(is_loop_now(&loop) - start < 5000);
    is_loop_close(&loop);
}

/* ---- extra fds ---- */

typedef struct {
    is_loop_t *loop;
    int pipe[2];
    int runs;
    char got;
} pipe_ctx_t;

static void pipe_cb(int fd, void *data) {
    pipe_ctx_t *p = data;
    p->runs++;
    CHECK_INT(fd, p->pipe[0]);
    CHECK_INT(read(fd, &p->got, 1), 1);
    is_loop_remove_fd(p->loop, fd);
}

static void pipe_write_cb(is_timer_t *t) {
    pipe_ctx_t *p = t->data;
    CHECK_INT(write(p->pipe[1], "z", 1), 1);
}

static void unused_fd_cb(int fd, void *data) {
    (void)fd;
    (void)data;
}

static void test_fds(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    pipe_ctx_t p = {.loop = &loop};
    CHECK_INT(pipe(p.pipe), 0);
    CHECK_INT(is_loop_add_fd(&loop, p.pipe[0], pipe_cb, &p), IS_OK);
    is_timer_t writer;
    is_timer_init(&loop, &writer, pipe_write_cb, &p);
    CHECK_INT(is_timer_start(&writer, 3), IS_OK);
    /* The loop stays alive on the fd alone until its callback removes it. */
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(p.runs, 1);
    CHECK_INT(p.got, 'z');
    CHECK_INT(loop.nfds__, 0);

    CHECK_INT(is_loop_add_fd(&loop, -1, unused_fd_cb, NULL), IS_EINVAL);
    for (int i = 0; i < IS_LOOP_MAX_FDS; i++)
        CHECK_INT(is_loop_add_fd(&loop, 100 + i, unused_fd_cb, NULL), IS_OK);
    /* Re-adding a watched fd replaces its callback rather than using a slot. */
    CHECK_INT(is_loop_add_fd(&loop, 100, unused_fd_cb, &p), IS_OK);
    CHECK_INT(is_loop_add_fd(&loop, 200, unused_fd_cb, NULL), IS_ELIMIT);
    for (int i = 0; i < IS_LOOP_MAX_FDS; i++)
        is_loop_remove_fd(&loop, 100 + i);
    CHECK_INT(loop.nfds__, 0);
    close(p.pipe[0]);
    close(p.pipe[1]);
    is_loop_close(&loop);
}

/* ---- transfers against an HTTP server served by the loop ---- */

#define MAX_CONNS 4

typedef struct {
    is_loop_t *loop;
    int fd;
    char req[2048];
    size_t len;
} conn_t;

typedef struct {
    is_loop_t *loop;
    int listen_fd;
    int port;
    conn_t conns[MAX_CONNS];
    int accepted;
} server_t;

static void server_conn_cb(int fd, void *data);

static void server_accept_cb(int fd, void *data) {
    server_t *s = data;
    int c;
    while ((c = accept(fd, NULL, NULL)) >= 0) {
        int slot = -1;
        for (int i = 0; i < MAX_CONNS; i++)
            if (s->conns[i].fd < 0)
                slot = i;
        if (slot < 0 || is_loop_add_fd(s->loop, c, server_conn_cb, &s->conns[slot]) != IS_OK) {
            close(c);
            continue;
        }
        fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
        s->conns[slot].loop = s->loop;
        s->conns[slot].fd = c;
        s->conns[slot].len = 0;
        s->accepted++;
    }
}

/* Answers once the request head is complete; the body names the path so
 * each client can tell its answer from the others'. */
static void server_conn_cb(int fd, void *data) {
    conn_t *c = data;
    ssize_t n = read(fd, c->req + c->len, sizeof c->req - 1 - c->len);
    if (n > 0) {
        c->len += (size_t)n;
        c->req[c->len] = 0;
        if (!strstr(c->req, "\r\n\r\n"))
            return;
        char path[256] = "";
        sscanf(c->req, "GET %255s", path);
        char body[300], resp[512];
        int blen = snprintf(body, sizeof body, "hello from %s", path);
        int rlen = snprintf(resp, sizeof resp,
                            "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                            blen, body);
        CHECK_INT(write(fd, resp, (size_t)rlen), rlen);
    } else if (n < 0 && errno == EAGAIN) {
        return;
    }
    is_loop_remove_fd(c->loop, fd);
    close(fd);
    c->fd = -1;
}

static int server_start(server_t *s, is_loop_t *loop) {
    memset(s, 0, sizeof *s);
    s->loop = loop;
    for (int i = 0; i < MAX_CONNS; i++)
        s->conns[i].fd = -1;
    s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->listen_fd < 0)
        return -1;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(s->listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(s->listen_fd, 16) < 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&addr, &alen) < 0)
        return -1;
    fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) | O_NONBLOCK);
    s->port = ntohs(addr.sin_port);
    return is_loop_add_fd(loop, s->listen_fd, server_accept_cb, s);
}

static void server_stop(server_t *s) {
    for (int i = 0; i < MAX_CONNS; i++) {
        if (s->conns[i].fd >= 0) {
            is_loop_remove_fd(s->loop, s->conns[i].fd);
            close(s->conns[i].fd);
        }
    }
    is_loop_remove_fd(s->loop, s->listen_fd);
    close(s->listen_fd);
}

typedef struct {
    is_loop_t *loop;
    CURL *easy;
    char url[256];
    char body[512];
    size_t len;
    int done_calls;
    int refetch;       /* re-add the handle from the callback this many times */
    CURLcode result;
    long status;
    int *remaining;    /* transfers left; the last one closes the server */
    server_t *server;
} client_t;

static size_t client_write(char *ptr, size_t size, size_t nmemb, void *ud) {
    client_t *c = ud;
    size_t n = size * nmemb;
    if (n > sizeof c->body - 1 - c->len)
        return 0;
    memcpy(c->body + c->len, ptr, n);
    c->len += n;
    c->body[c->len] = 0;
    return n;
}

static void client_done(CURL *easy, CURLcode result, void *data) {
    client_t *c = data;
    CHECK(easy == c->easy);
    c->done_calls++;
    c->result = result;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->refetch > 0) {
        /* Re-adding from the callback works: the loop has let go of it. */
        c->refetch--;
        c->len = 0;
        CHECK_INT(is_loop_add_transfer(c->loop, easy, client_done, c), IS_OK);
        return;
    }
    curl_easy_cleanup(easy);
    c->easy = NULL;
    if (--*c->remaining == 0 && c->server)
        server_stop(c->server);
}

static CURL *client_easy(client_t *c, const char *url) {
    snprintf(c->url, sizeof c->url, "%s", url);
    c->easy = curl_easy_init();
    curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, client_write);
    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, 20000L);
    return c->easy;
}

static void test_http_transfers(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    server_t server;
    CHECK_INT(server_start(&server, &loop), IS_OK);
    client_t clients[3];
    memset(clients, 0, sizeof clients);
    int remaining = 3;
    for (int i = 0; i < 3; i++) {
        char url[128];
        snprintf(url, sizeof url, "http://127.0.0.1:%d/item/%d", server.port, i);
        clients[i].loop = &loop;
        clients[i].remaining = &remaining;
        clients[i].server = &server;
        clients[i].refetch = i == 1 ? 1 : 0;
        CHECK(client_easy(&clients[i], url) != NULL);
        CHECK_INT(is_loop_add_transfer(&loop, clients[i].easy, client_done, &clients[i]), IS_OK);
    }
    /* Runs until every transfer finished and the server closed its fds. */
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(remaining, 0);
    for (int i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "hello from /item/%d", i);
        CHECK_INT(clients[i].done_calls, i == 1 ? 2 : 1);
        CHECK_INT(clients[i].result, CURLE_OK);
        CHECK_INT(clients[i].status, 200);
        CHECK_STR(clients[i].body, want);
        CHECK(clients[i].easy == NULL);
    }
    CHECK_INT(server.accepted, 4);
    CHECK(loop.xfers__ == NULL);
    is_loop_close(&loop);
}

static void test_file_transfer_and_removal(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    char path[] = "/tmp/is_loop_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *content = "file contents\nline two\n";
    CHECK_INT(write(fd, content, strlen(content)), (long long)strlen(content));
    close(fd);

    int remaining = 1;
    client_t file_client = {.remaining = &remaining};
    char url[300];
    snprintf(url, sizeof url, "file://%s", path);
    CHECK(client_easy(&file_client, url) != NULL);
    CHECK_INT(is_loop_add_transfer(&loop, file_client.easy, client_done, &file_client), IS_OK);

    /* Removed before it ran: its callback never runs and the loop does not
     * wait for it. */
    int removed_remaining = 1;
    client_t removed = {.remaining = &removed_remaining};
    CHECK(client_easy(&removed, url) != NULL);
    CHECK_INT(is_loop_add_transfer(&loop, removed.easy, client_done, &removed), IS_OK);
    is_loop_remove_transfer(&loop, removed.easy);
    /* Removing a handle the loop does not know is a no-op. */
    is_loop_remove_transfer(&loop, removed.easy);

    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(file_client.done_calls, 1);
    CHECK_INT(file_client.result, CURLE_OK);
    CHECK_STR(file_client.body, content);
    CHECK_INT(removed.done_calls, 0);
    CHECK_INT(removed_remaining, 1);
    curl_easy_cleanup(removed.easy);

    /* A transfer still running at close is released by is_loop_close. */
    client_t pending = {.remaining = &remaining};
    CHECK(client_easy(&pending, url) != NULL);
    CHECK_INT(is_loop_add_transfer(&loop, pending.easy, client_done, &pending), IS_OK);
    is_loop_close(&loop);
    CHECK_INT(pending.done_calls, 0);
    curl_easy_cleanup(pending.easy);
    unlink(path);
}

/* ---- out of memory ---- */

static void test_oom(void) {
    is_loop_t loop;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    size_t before = is_alloc_used();

    CURL *easy = curl_easy_init();
    curl_easy_setopt(easy, CURLOPT_URL, "file:///dev/null");
    is_alloc_fail_after(1);
    CHECK_INT(is_loop_add_transfer(&loop, easy, client_done, NULL), IS_ENOMEM);
    is_alloc_fail_after(0);
    CHECK(loop.xfers__ == NULL);
    CHECK_INT(is_loop_add_transfer(&loop, easy, NULL, NULL), IS_EINVAL);

    /* The first start allocates the heap; when that fails the timer stays
     * stopped and a later start works. */
    int runs = 0;
    is_timer_t t;
    is_timer_init(&loop, &t, never_cb, &runs);
    is_alloc_fail_after(1);
    CHECK_INT(is_timer_start(&t, 1), IS_ENOMEM);
    is_alloc_fail_after(0);
    CHECK(!is_timer_active(&t));
    CHECK_INT(is_alloc_used(), before);
    CHECK_INT(is_timer_start(&t, 1), IS_OK);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(runs, 1);

    curl_easy_cleanup(easy);
    is_loop_close(&loop);
    CHECK_INT(is_alloc_used(), before);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    size_t start = is_alloc_used();
    RUN(test_timer_order);
    RUN(test_timer_fifo_ties);
    RUN(test_timer_stop_restart_from_callbacks);
    RUN(test_zero_delay_does_not_starve);
    RUN(test_many_timers);
    RUN(test_stop_from_signal);
    RUN(test_run_returns_when_idle);
    RUN(test_fds);
    RUN(test_http_transfers);
    RUN(test_file_transfer_and_removal);
    RUN(test_oom);
    CHECK_INT(is_alloc_used(), start);
    curl_global_cleanup();
    TESTING_DONE();
}
