/* The work queue, driven by a real loop: de-duplication, re-queue after an
 * add in flight, the max_active bound, earliest add_after, exponential
 * backoff in values and in actual firing order, forget, close with timers
 * pending, and every out-of-memory path of the adds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_loop.h"
#include "is_workqueue.h"
#include "testing.h"

#define MAX_LOG 256
#define KEY_LEN 32

typedef struct {
    is_loop_t loop;
    is_wq_t wq;
    char log[MAX_LOG][KEY_LEN];   /* keys in the order process saw them */
    uint64_t at[MAX_LOG];         /* loop time of each process call */
    int nlog;
    char in_flight[MAX_LOG][KEY_LEN];
    int nin_flight;
    int double_flight;            /* process got a key already in flight */
    int max_active_seen;
    int sync_done;                /* process calls is_wq_done at once */
    int fail_until;               /* rate-limit a key until it failed this often */
    uint64_t delays[MAX_LOG];     /* delays add_rate_limited reported */
    int ndelays;
    is_timer_t finisher;          /* finishes one in-flight key per tick */
} fixture_t;

static void remove_in_flight(fixture_t *f, const char *key) {
    for (int i = 0; i < f->nin_flight; i++) {
        if (strcmp(f->in_flight[i], key) == 0) {
            memmove(f->in_flight[i], f->in_flight[i + 1],
                    (size_t)(f->nin_flight - i - 1) * KEY_LEN);
            f->nin_flight--;
            return;
        }
    }
}

static void finish(fixture_t *f, const char *key) {
    char copy[KEY_LEN];
    snprintf(copy, sizeof copy, "%s", key);
    remove_in_flight(f, copy);
    is_wq_done(&f->wq, copy);
}

static void process(is_wq_t *wq, const char *key, void *data) {
    fixture_t *f = data;
    CHECK(wq == &f->wq);
    for (int i = 0; i < f->nin_flight; i++)
        if (strcmp(f->in_flight[i], key) == 0)
            f->double_flight++;
    if (is_wq_active(wq) > f->max_active_seen)
        f->max_active_seen = is_wq_active(wq);
    if (f->nlog < MAX_LOG) {
        snprintf(f->log[f->nlog], KEY_LEN, "%s", key);
        f->at[f->nlog] = is_loop_now(wq->loop);
        f->nlog++;
    }
    snprintf(f->in_flight[f->nin_flight++], KEY_LEN, "%s", key);
    if (f->fail_until > 0) {
        if (is_wq_failures(wq, key) < f->fail_until) {
            uint64_t delay = 0;
            CHECK_INT(is_wq_add_rate_limited(wq, key, &delay), IS_OK);
            f->delays[f->ndelays++] = delay;
        } else {
            is_wq_forget(wq, key);
        }
    }
    if (f->sync_done)
        finish(f, key);
}

static void fixture_init(fixture_t *f) {
    memset(f, 0, sizeof *f);
    CHECK_INT(is_loop_init(&f->loop), IS_OK);
    CHECK_INT(is_wq_init(&f->wq, &f->loop, process, f), IS_OK);
}

static void fixture_close(fixture_t *f) {
    is_wq_close(&f->wq);
    is_loop_close(&f->loop);
    CHECK_INT(f->double_flight, 0);
}

static void test_defaults(void) {
    fixture_t f;
    fixture_init(&f);
    CHECK_INT(f.wq.base_delay_ms, 5);
    CHECK_INT(f.wq.max_delay_ms, 1000 * 1000);
    CHECK_INT(f.wq.max_active, 50);
    CHECK_INT(is_wq_init(&f.wq, NULL, process, NULL), IS_EINVAL);
    fixture_close(&f);
}

static void test_dedup(void) {
    fixture_t f;
    fixture_init(&f);
    f.sync_done = 1;
    for (int i = 0; i < 3; i++)
        CHECK_INT(is_wq_add(&f.wq, "ns/a"), IS_OK);
    CHECK_INT(is_wq_add(&f.wq, "ns/b"), IS_OK);
    CHECK_INT(is_wq_len(&f.wq), 2);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 2);
    CHECK_STR(f.log[0], "ns/a");
    CHECK_STR(f.log[1], "ns/b");
    CHECK_INT(is_wq_len(&f.wq), 0);
    CHECK_INT(is_wq_active(&f.wq), 0);
    /* Nothing left to remember: every item was freed. */
    CHECK_INT(f.wq.items__.len, 0);
    /* done for an unknown or idle key is ignored. */
    is_wq_done(&f.wq, "ns/a");
    is_wq_done(&f.wq, "never");
    CHECK_INT(is_wq_active(&f.wq), 0);
    fixture_close(&f);
}

static void test_add_while_in_flight(void) {
    fixture_t f;
    fixture_init(&f);
    CHECK_INT(is_wq_add(&f.wq, "a"), IS_OK);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 1);
    CHECK_INT(is_wq_active(&f.wq), 1);

    /* Added twice while in flight: not ready, not processed a second time. */
    CHECK_INT(is_wq_add(&f.wq, "a"), IS_OK);
    CHECK_INT(is_wq_add(&f.wq, "a"), IS_OK);
    CHECK_INT(is_wq_len(&f.wq), 0);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 1);

    /* done re-queues it once. */
    finish(&f, "a");
    CHECK_INT(is_wq_active(&f.wq), 0);
    CHECK_INT(is_wq_len(&f.wq), 1);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 2);
    CHECK_INT(is_wq_active(&f.wq), 1);

    /* Without a new add, done leaves it finished. */
    finish(&f, "a");
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 2);
    CHECK_INT(f.wq.items__.len, 0);
    fixture_close(&f);
}

/* Finishes the oldest in-flight key on every tick while any remain. */
static void finisher_cb(is_timer_t *t) {
    fixture_t *f = t->data;
    if (f->nin_flight == 0)
        return;
    finish(f, f->in_flight[0]);
    CHECK_INT(is_timer_start(t, 1), IS_OK);
}

static void test_max_active(void) {
    fixture_t f;
    fixture_init(&f);
    f.wq.max_active = 3;
    char key[KEY_LEN];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        CHECK_INT(is_wq_add(&f.wq, key), IS_OK);
    }
    CHECK_INT(is_wq_len(&f.wq), 40);
    CHECK_INT(is_loop_run_once(&f.loop, 0), IS_OK);
    CHECK_INT(is_wq_active(&f.wq), 3);
    CHECK_INT(is_wq_len(&f.wq), 37);
    /* Some keys are added again while in flight or queued. */
    CHECK_INT(is_wq_add(&f.wq, "k00"), IS_OK);
    CHECK_INT(is_wq_add(&f.wq, "k10"), IS_OK);

    is_timer_init(&f.loop, &f.finisher, finisher_cb, &f);
    CHECK_INT(is_timer_start(&f.finisher, 1), IS_OK);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.max_active_seen, 3);
    CHECK_INT(f.nlog, 41);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "k%02d", i);
        CHECK_STR(f.log[i], key);
    }
    /* k00 was in flight when re-added, so it went to the back. */
    CHECK_STR(f.log[40], "k00");
    CHECK_INT(is_wq_active(&f.wq), 0);
    CHECK_INT(f.wq.items__.len, 0);
    fixture_close(&f);
}

static void test_add_after_earliest_wins(void) {
    fixture_t f;
    fixture_init(&f);
    f.sync_done = 1;
    uint64_t start = is_loop_now(&f.loop);
    CHECK_INT(is_wq_add_after(&f.wq, "a", 60), IS_OK);
    CHECK_INT(is_wq_add_after(&f.wq, "a", 15), IS_OK);
    CHECK_INT(is_wq_add_after(&f.wq, "a", 40), IS_OK);
    CHECK_INT(is_wq_add_after(&f.wq, "b", 5), IS_OK);
    /* z is due between a's earliest and later times. */
    CHECK_INT(is_wq_add_after(&f.wq, "z", 30), IS_OK);
    CHECK_INT(is_wq_waiting(&f.wq), 3);
    CHECK_INT(is_wq_len(&f.wq), 0);
    /* A zero delay is a plain add. */
    CHECK_INT(is_wq_add_after(&f.wq, "c", 0), IS_OK);
    CHECK_INT(is_wq_len(&f.wq), 1);

    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 4);
    CHECK_STR(f.log[0], "c");
    CHECK_STR(f.log[1], "b");
    CHECK_STR(f.log[2], "a");
    CHECK_STR(f.log[3], "z");
    CHECK(f.at[1] >= start + 5);
    CHECK(f.at[2] >= start + 15);
    /* The later times were folded into the earliest: no timer remains, so
     * the run ended with a's only processing. */
    CHECK_INT(is_wq_waiting(&f.wq), 0);
    CHECK_INT(f.loop.heap_len__, 0);
    CHECK_INT(f.wq.items__.len, 0);
    fixture_close(&f);
}

static void test_backoff_values(void) {
    fixture_t f;
    fixture_init(&f);
    f.wq.max_delay_ms = 100;
    const uint64_t want[] = {5, 10, 20, 40, 80, 100, 100};
    for (int i = 0; i < 7; i++) {
        CHECK_INT(is_wq_failures(&f.wq, "x"), i);
        CHECK_INT(is_wq_next_backoff(&f.wq, "x"), want[i]);
        uint64_t delay = 0;
        CHECK_INT(is_wq_add_rate_limited(&f.wq, "x", &delay), IS_OK);
        CHECK_INT(delay, want[i]);
    }
    CHECK_INT(is_wq_failures(&f.wq, "x"), 7);
    /* Only the earliest (5 ms) is pending. */
    CHECK_INT(is_wq_waiting(&f.wq), 1);
    is_wq_forget(&f.wq, "x");
    CHECK_INT(is_wq_failures(&f.wq, "x"), 0);
    CHECK_INT(is_wq_next_backoff(&f.wq, "x"), 5);
    CHECK_INT(is_wq_waiting(&f.wq), 1);

    /* The cap holds for failure counts whose 2^n overflows. */
    f.wq.max_delay_ms = 1000 * 1000;
    for (int i = 0; i < 70; i++)
        CHECK_INT(is_wq_add_rate_limited(&f.wq, "y", NULL), IS_OK);
    CHECK_INT(is_wq_next_backoff(&f.wq, "y"), 1000 * 1000);
    CHECK_INT(is_wq_next_backoff(&f.wq, "unknown"), 5);
    fixture_close(&f);
}

/* A key that keeps failing is retried after 5, 10, 20, 40, 40 ms. */
static void test_backoff_in_time(void) {
    fixture_t f;
    fixture_init(&f);
    f.sync_done = 1;
    f.fail_until = 5;
    f.wq.max_delay_ms = 40;
    CHECK_INT(is_wq_add(&f.wq, "x"), IS_OK);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 6);
    CHECK_INT(f.ndelays, 5);
    const uint64_t want[] = {5, 10, 20, 40, 40};
    for (int i = 0; i < 5; i++) {
        CHECK_INT(f.delays[i], want[i]);
        CHECK(f.at[i + 1] - f.at[i] >= want[i]);
    }
    /* The last run succeeded and forgot the failures, so the item is gone. */
    CHECK_INT(is_wq_failures(&f.wq, "x"), 0);
    CHECK_INT(f.wq.items__.len, 0);
    fixture_close(&f);
}

/* Keys with more failures come back later: order follows the backoff. */
static void test_backoff_fire_order(void) {
    fixture_t f;
    fixture_init(&f);
    f.sync_done = 1;
    /* Give "a" three failures and "c" one; "b" has none. */
    for (int i = 0; i < 3; i++)
        CHECK_INT(is_wq_add_rate_limited(&f.wq, "a", NULL), IS_OK);
    CHECK_INT(is_wq_add_rate_limited(&f.wq, "c", NULL), IS_OK);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 2);
    f.nlog = 0;

    uint64_t da, db, dc;
    CHECK_INT(is_wq_add_rate_limited(&f.wq, "a", &da), IS_OK);
    CHECK_INT(is_wq_add_rate_limited(&f.wq, "b", &db), IS_OK);
    CHECK_INT(is_wq_add_rate_limited(&f.wq, "c", &dc), IS_OK);
    CHECK_INT(da, 40);
    CHECK_INT(db, 5);
    CHECK_INT(dc, 10);
    CHECK_INT(is_wq_waiting(&f.wq), 3);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(f.nlog, 3);
    CHECK_STR(f.log[0], "b");
    CHECK_STR(f.log[1], "c");
    CHECK_STR(f.log[2], "a");
    /* Failures persist until forgotten; forgetting frees the items. */
    CHECK_INT(is_wq_failures(&f.wq, "a"), 4);
    CHECK_INT(f.wq.items__.len, 3);
    is_wq_forget(&f.wq, "a");
    is_wq_forget(&f.wq, "b");
    is_wq_forget(&f.wq, "c");
    is_wq_forget(&f.wq, "never-seen");
    CHECK_INT(f.wq.items__.len, 0);
    fixture_close(&f);
}

/* process may finish the key and add it back at once; it then runs in a
 * later pass instead of looping inside the dispatch. */
static int readd_runs;
static void readd_process(is_wq_t *wq, const char *key, void *data) {
    (void)data;
    readd_runs++;
    char copy[KEY_LEN];
    snprintf(copy, sizeof copy, "%s", key);
    is_wq_done(wq, copy);
    if (readd_runs < 5)
        CHECK_INT(is_wq_add(wq, copy), IS_OK);
}

static void test_readd_from_process(void) {
    is_loop_t loop;
    is_wq_t wq;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    CHECK_INT(is_wq_init(&wq, &loop, readd_process, NULL), IS_OK);
    readd_runs = 0;
    CHECK_INT(is_wq_add(&wq, "r"), IS_OK);
    CHECK_INT(is_loop_run_once(&loop, 0), IS_OK);
    CHECK_INT(readd_runs, 1);
    CHECK_INT(is_wq_len(&wq), 1);
    CHECK_INT(is_loop_run(&loop), IS_OK);
    CHECK_INT(readd_runs, 5);
    CHECK_INT(wq.items__.len, 0);
    is_wq_close(&wq);
    is_loop_close(&loop);
}

static void test_close_with_pending(void) {
    size_t before = is_alloc_used();
    fixture_t f;
    fixture_init(&f);
    /* Long enough that no backoff timer fires during the test. */
    f.wq.base_delay_ms = 60000;
    char key[KEY_LEN];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "wait-%d", i);
        CHECK_INT(is_wq_add_after(&f.wq, key, 60000 + (uint64_t)i), IS_OK);
        snprintf(key, sizeof key, "ready-%d", i);
        CHECK_INT(is_wq_add(&f.wq, key), IS_OK);
        snprintf(key, sizeof key, "failed-%d", i);
        CHECK_INT(is_wq_add_rate_limited(&f.wq, key, NULL), IS_OK);
    }
    f.wq.max_active = 2;
    CHECK_INT(is_loop_run_once(&f.loop, 0), IS_OK);
    CHECK_INT(is_wq_active(&f.wq), 2);
    CHECK_INT(is_wq_waiting(&f.wq), 100);
    is_wq_close(&f.wq);
    CHECK_INT(is_wq_len(&f.wq), 0);
    CHECK_INT(is_wq_waiting(&f.wq), 0);
    CHECK_INT(is_wq_active(&f.wq), 0);
    CHECK_INT(f.loop.heap_len__, 0);
    /* After close, adds and dones are ignored. */
    CHECK_INT(is_wq_add(&f.wq, "late"), IS_OK);
    CHECK_INT(is_wq_add_after(&f.wq, "late", 10), IS_OK);
    CHECK_INT(is_wq_add_rate_limited(&f.wq, "late", NULL), IS_OK);
    is_wq_done(&f.wq, f.in_flight[0]);
    CHECK_INT(f.wq.items__.len, 0);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    is_loop_close(&f.loop);
    CHECK_INT(f.double_flight, 0);
    CHECK_INT(is_alloc_used(), before);
}

/* Fails the n-th allocation of one add for n = 1, 2, ... until it goes
 * through; every failure must leave the queue as it was. */
typedef int (*add_fn)(is_wq_t *wq, const char *key);

static int add_now(is_wq_t *wq, const char *key) {
    return is_wq_add(wq, key);
}
static int add_later(is_wq_t *wq, const char *key) {
    return is_wq_add_after(wq, key, 20);
}
static int add_limited(is_wq_t *wq, const char *key) {
    return is_wq_add_rate_limited(wq, key, NULL);
}

static void check_oom(add_fn add, int fills) {
    size_t before = is_alloc_used();
    int failures = 0;
    for (long n = 1; n < 100; n++) {
        fixture_t f;
        fixture_init(&f);
        f.sync_done = 1;
        /* Fill the map and the loop's timer heap to just before a resize,
         * so the add under test has every allocation to make. */
        char key[KEY_LEN];
        for (int i = 0; i < fills; i++) {
            snprintf(key, sizeof key, "fill-%d", i);
            CHECK_INT(is_wq_add_after(&f.wq, key, 60000), IS_OK);
        }
        size_t items = f.wq.items__.len;
        is_alloc_fail_after(n);
        int rc = add(&f.wq, "target");
        is_alloc_fail_after(0);
        if (rc == IS_ENOMEM) {
            failures++;
            /* Only capacity may remain (map slots, timer heap), and
             * fixture_close must return it. */
            CHECK_INT(f.wq.items__.len, items);
            CHECK_INT(is_wq_failures(&f.wq, "target"), 0);
            CHECK_INT(is_wq_len(&f.wq), 0);
            CHECK_INT(is_wq_waiting(&f.wq), (size_t)fills);
            fixture_close(&f);
            CHECK_INT(is_alloc_used(), before);
            continue;
        }
        CHECK_INT(rc, IS_OK);
        CHECK(is_wq_len(&f.wq) + is_wq_waiting(&f.wq) == (size_t)fills + 1);
        fixture_close(&f);
        CHECK_INT(is_alloc_used(), before);
        break;
    }
    /* Item, map slots and key copy at least; plus the heap where a timer
     * had to grow it. */
    CHECK(failures >= 3);
}

#define L "{name=\"internalrequest\",controller=\"internalrequest\"} "

/* client-go's accounting: adds counts each add that queued the key (or
 * marked it while in flight), depth what waits, durations on get and done,
 * and the work in flight when scraped. */
static void test_metrics(void) {
    fixture_t f;
    is_metrics_t reg;
    is_metrics_init(&reg);
    fixture_init(&f);
    CHECK_INT(is_wq_set_metrics(&f.wq, &reg, "internalrequest"), IS_OK);
    CHECK_INT(is_wq_add(&f.wq, "a"), IS_OK);
    CHECK_INT(is_wq_add(&f.wq, "a"), IS_OK);
    CHECK_INT(is_wq_add(&f.wq, "b"), IS_OK);
    CHECK(testing_sample(&reg, "workqueue_adds_total" L) == 2);
    CHECK(testing_sample(&reg, "workqueue_depth{name=\"internalrequest\",controller=\"internalrequest\",priority=\"\"} ") == 2);
    CHECK(testing_sample(&reg, "workqueue_queue_duration_seconds_count" L) == 0);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK_INT(is_wq_active(&f.wq), 2);
    CHECK(testing_sample(&reg, "workqueue_depth{name=\"internalrequest\",controller=\"internalrequest\",priority=\"\"} ") == 0);
    CHECK(testing_sample(&reg, "workqueue_queue_duration_seconds_count" L) == 2);
    CHECK(testing_sample(&reg, "workqueue_queue_duration_seconds_bucket{name=\"internalrequest\",controller=\"internalrequest\",le=\"1000\"} ") == 2);
    CHECK(testing_sample(&reg, "workqueue_unfinished_work_seconds" L) > 0);
    CHECK(testing_sample(&reg, "workqueue_longest_running_processor_seconds" L) > 0);
    CHECK(testing_sample(&reg, "workqueue_longest_running_processor_seconds" L) <=
          testing_sample(&reg, "workqueue_unfinished_work_seconds" L));

    /* Added while in flight: counted once, waits in depth until done. */
    CHECK_INT(is_wq_add(&f.wq, "a"), IS_OK);
    CHECK_INT(is_wq_add(&f.wq, "a"), IS_OK);
    CHECK(testing_sample(&reg, "workqueue_adds_total" L) == 3);
    CHECK(testing_sample(&reg, "workqueue_depth{name=\"internalrequest\",controller=\"internalrequest\",priority=\"\"} ") == 1);
    finish(&f, "a");
    finish(&f, "b");
    CHECK(testing_sample(&reg, "workqueue_work_duration_seconds_count" L) == 2);
    CHECK_INT(is_loop_run(&f.loop), IS_OK);
    CHECK(testing_sample(&reg, "workqueue_depth{name=\"internalrequest\",controller=\"internalrequest\",priority=\"\"} ") == 0);
    CHECK(testing_sample(&reg, "workqueue_queue_duration_seconds_count" L) == 3);
    CHECK_INT(is_wq_add_rate_limited(&f.wq, "a", NULL), IS_OK);
    CHECK(testing_sample(&reg, "workqueue_retries_total" L) == 1);
    finish(&f, "a");
    CHECK(testing_sample(&reg, "workqueue_unfinished_work_seconds" L) == 0);
    fixture_close(&f);
    /* Closed: the collector is gone, the registry still renders. */
    CHECK(testing_sample(&reg, "workqueue_depth{name=\"internalrequest\",controller=\"internalrequest\",priority=\"\"} ") == 0);
    is_metrics_free(&reg);
}

static void test_oom(void) {
    check_oom(add_now, 0);
    check_oom(add_later, 0);
    check_oom(add_limited, 0);
    /* With 16 timers the loop's first heap is full, so the add also has to
     * grow it. */
    check_oom(add_later, 16);
    check_oom(add_limited, 16);
    check_oom(add_now, 16);
}

int main(void) {
    size_t start = is_alloc_used();
    RUN(test_defaults);
    RUN(test_dedup);
    RUN(test_add_while_in_flight);
    RUN(test_max_active);
    RUN(test_add_after_earliest_wins);
    RUN(test_backoff_values);
    RUN(test_backoff_in_time);
    RUN(test_backoff_fire_order);
    RUN(test_readd_from_process);
    RUN(test_close_with_pending);
    RUN(test_metrics);
    RUN(test_oom);
    CHECK_INT(is_alloc_used(), start);
    TESTING_DONE();
}
