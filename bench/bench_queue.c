/* Work queue and event loop throughput: is_wq on a real is_loop, with
 * max_active 50 as the controller runs it.
 *
 * Phases, each timed by itself:
 *   add       N distinct keys, each added three times (two are de-duplicated)
 *   re-add    the same N keys again while they are all queued (pure dedupe)
 *   process   the loop hands keys to a worker that finishes each one on a
 *             later loop iteration (a zero-delay timer, as an answer from
 *             the API server would arrive), re-adds every 4th key while it
 *             is in flight (queued again once done) and fails every 10th
 *             once (per-key backoff, 5 ms base), until the loop runs dry
 *   waiting   N keys parked with add_after (a requeue_after of a minute):
 *             bytes of is_alloc_used() per waiting key
 *
 * Usage: bench_queue [keys] (default 200000) */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "is_alloc.h"
#include "is_err.h"
#include "is_loop.h"
#include "is_workqueue.h"

#define MAX_ACTIVE 50
#define KEY_MAX 64

typedef struct worker_s worker_t;

/* One in-flight reconcile: the key and the timer that finishes it. */
typedef struct slot_s {
    worker_t *w;
    is_timer_t finish;
    char key[KEY_MAX];
    struct slot_s *next_free;
} slot_t;

struct worker_s {
    is_loop_t loop;
    is_wq_t wq;
    slot_t slots[MAX_ACTIVE];
    slot_t *free_slots;
    unsigned long processed, requeued_in_flight, failed;
    int max_active_seen;
    unsigned char *readded;   /* per key index: already re-added in flight */
};

static void key_of(char *out, long i) {
    snprintf(out, KEY_MAX, "tenant-%ld/release-%07ld-push", i % 40, i);
}

static long index_of(const char *key) {
    const char *dash = strstr(key, "/release-");
    return dash ? strtol(dash + 9, NULL, 10) : -1;
}

static void check(int rc, const char *what) {
    if (rc != IS_OK) {
        fprintf(stderr, "bench_queue: %s: %s\n", what, is_strerror(rc));
        exit(1);
    }
}

static void on_finish(is_timer_t *t) {
    slot_t *s = t->data;
    worker_t *w = s->w;
    long i = index_of(s->key);
    /* A failure is retried once with the key's backoff; success clears it. */
    if (i % 10 == 0 && is_wq_failures(&w->wq, s->key) == 0) {
        check(is_wq_add_rate_limited(&w->wq, s->key, NULL), "add_rate_limited");
        w->failed++;
    } else {
        is_wq_forget(&w->wq, s->key);
    }
    s->next_free = w->free_slots;
    w->free_slots = s;
    is_wq_done(&w->wq, s->key);
}

static void process(is_wq_t *wq, const char *key, void *data) {
    worker_t *w = data;
    slot_t *s = w->free_slots;
    if (!s) {
        fprintf(stderr, "bench_queue: more than %d keys in flight\n", MAX_ACTIVE);
        exit(1);
    }
    w->free_slots = s->next_free;
    snprintf(s->key, KEY_MAX, "%s", key);
    w->processed++;
    if (is_wq_active(wq) > w->max_active_seen) w->max_active_seen = is_wq_active(wq);
    /* Every 4th key changes again while its reconcile runs, the first time
     * it is processed: the queue must run it once more afterwards. */
    long i = index_of(key);
    if (i % 4 == 1 && !w->readded[i]) {
        w->readded[i] = 1;
        check(is_wq_add(wq, key), "add in flight");
        w->requeued_in_flight++;
    }
    check(is_timer_start(&s->finish, 0), "timer_start");
}

static void worker_init(worker_t *w, long n) {
    memset(w, 0, sizeof *w);
    w->readded = bench_xmalloc((size_t)n);
    memset(w->readded, 0, (size_t)n);
    check(is_loop_init(&w->loop), "loop_init");
    check(is_wq_init(&w->wq, &w->loop, process, w), "wq_init");
    w->wq.max_active = MAX_ACTIVE;
    for (int i = 0; i < MAX_ACTIVE; i++) {
        w->slots[i].w = w;
        is_timer_init(&w->loop, &w->slots[i].finish, on_finish, &w->slots[i]);
        w->slots[i].next_free = w->free_slots;
        w->free_slots = &w->slots[i];
    }
}

static void worker_close(worker_t *w) {
    is_wq_close(&w->wq);
    for (int i = 0; i < MAX_ACTIVE; i++) is_timer_stop(&w->slots[i].finish);
    is_loop_close(&w->loop);
    free(w->readded);
}

int main(int argc, char **argv) {
    long n = bench_arg(argc, argv, 1, 200000);
    char key[KEY_MAX];
    worker_t w;
    worker_init(&w, n);

    size_t base = is_alloc_used();
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        key_of(key, i);
        for (int k = 0; k < 3; k++) check(is_wq_add(&w.wq, key), "add");
    }
    double t_add = bench_now() - t0;
    size_t ready_bytes = is_alloc_used() - base;

    t0 = bench_now();
    for (long i = 0; i < n; i++) {
        key_of(key, i);
        check(is_wq_add(&w.wq, key), "re-add");
    }
    double t_readd = bench_now() - t0;
    if (is_wq_len(&w.wq) != (size_t)n) {
        fprintf(stderr, "bench_queue: %zu keys queued, expected %ld\n", is_wq_len(&w.wq), n);
        return 1;
    }

    t0 = bench_now();
    check(is_loop_run(&w.loop), "loop_run");
    double t_run = bench_now() - t0;

    printf("work queue, max_active %d, %ld keys\n", MAX_ACTIVE, n);
    printf("  add (x3, 2 de-duplicated): %.0f adds/s; %.0f B of is_alloc_used per ready key\n",
           3.0 * (double)n / t_add, (double)ready_bytes / (double)n);
    printf("  re-add of queued keys:     %.0f adds/s\n", (double)n / t_readd);
    printf("  process: %lu reconciles (%lu re-queued while in flight, %lu failed once and backed off) "
           "in %.2f s = %.0f keys/s; at most %d in flight\n",
           w.processed, w.requeued_in_flight, w.failed, t_run, (double)w.processed / t_run,
           w.max_active_seen);
    unsigned long expected = (unsigned long)n + w.requeued_in_flight + w.failed;
    if (w.processed != expected || is_wq_len(&w.wq) || is_wq_active(&w.wq) || is_wq_waiting(&w.wq)) {
        fprintf(stderr, "bench_queue: processed %lu, expected %lu\n", w.processed, expected);
        return 1;
    }
    double keys_per_s = (double)w.processed / t_run;
    worker_close(&w);

    /* Keys parked on their own timers, as after {requeue_after = 60}, in a
     * fresh queue so that the figure includes the map and heap growth. */
    worker_init(&w, n);
    base = is_alloc_used();
    t0 = bench_now();
    for (long i = 0; i < n; i++) {
        key_of(key, i);
        check(is_wq_add_after(&w.wq, key, 60000), "add_after");
    }
    double t_after = bench_now() - t0;
    size_t waiting_bytes = is_alloc_used() - base;
    printf("  add_after: %.0f adds/s; %zu waiting; %.0f B of is_alloc_used per waiting key "
           "(item with its timer, map slot, key copy, timer heap slot)\n",
           (double)n / t_after, is_wq_waiting(&w.wq), (double)waiting_bytes / (double)n);

    bench_figure("queue_adds_per_s", 3.0 * (double)n / t_add, "adds/s");
    bench_figure("queue_keys_per_s", keys_per_s, "keys/s");
    bench_figure("queue_bytes_per_ready_key", (double)ready_bytes / (double)n, "B");
    bench_figure("queue_bytes_per_waiting_key", (double)waiting_bytes / (double)n, "B");
    worker_close(&w);
    return 0;
}
