/* The rate-limited work queue, after client-go's workqueue.
 *
 * Each known key has one item in a map. An item is in at most one of the
 * FIFO's positions (ready), may be in flight (handed to process and not yet
 * done), may be dirty (added while in flight, so queued again on done), may
 * wait on its own timer (add_after), and remembers its failure count for the
 * backoff. An item that is none of these carries no information and is
 * freed, so the map only holds keys that matter. */
#include <limits.h>
#include <string.h>
#include <time.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_workqueue.h"

#define WQ_DEFAULT_BASE_DELAY_MS 5
#define WQ_DEFAULT_MAX_DELAY_MS (1000u * 1000u)
#define WQ_DEFAULT_MAX_ACTIVE 50

struct is_wq_item_s {
    is_wq_t *wq;
    is_wq_item_t *next;    /* in the ready FIFO */
    is_timer_t delay;      /* pending add_after */
    uint64_t due;          /* when delay fires, while it is active */
    uint64_t added_ns, started_ns; /* for the queue and work durations */
    int failures;
    unsigned ready : 1, in_flight : 1, dirty : 1, timed : 1;
    char key[];
};

static void wq_dispatch_cb(is_timer_t *timer);
static void wq_delay_cb(is_timer_t *timer);
static int wq_collect(is_metrics_t *reg, void *ud);

int is_wq_init(is_wq_t *wq, is_loop_t *loop, is_wq_process_cb process, void *data) {
    if (!loop || !process)
        return IS_EINVAL;
    memset(wq, 0, sizeof *wq);
    wq->loop = loop;
    wq->base_delay_ms = WQ_DEFAULT_BASE_DELAY_MS;
    wq->max_delay_ms = WQ_DEFAULT_MAX_DELAY_MS;
    wq->max_active = WQ_DEFAULT_MAX_ACTIVE;
    wq->process = process;
    wq->data = data;
    is_map_init(&wq->items__);
    is_timer_init(loop, &wq->dispatch__, wq_dispatch_cb, wq);
    return IS_OK;
}

static void wq_item_free(void *value) {
    is_wq_item_t *item = value;
    is_timer_stop(&item->delay);
    is_free(item);
}

void is_wq_close(is_wq_t *wq) {
    wq->shutting_down__ = 1;
    if (wq->metrics__) {
        is_metrics_remove_collector(wq->metrics__, wq_collect, wq);
        is_series_set(wq->depth__, 0);
        is_series_set(wq->unfinished__, 0);
        is_series_set(wq->longest__, 0);
        wq->metrics__ = NULL;
    }
    is_timer_stop(&wq->dispatch__);
    is_map_free(&wq->items__, wq_item_free);
    is_map_init(&wq->items__);
    wq->head__ = wq->tail__ = NULL;
    wq->ready__ = 0;
    wq->active__ = 0;
    wq->waiting__ = 0;
}

static is_wq_item_t *wq_find(const is_wq_t *wq, const char *key) {
    return is_map_get(&wq->items__, key);
}

static int wq_get_or_create(is_wq_t *wq, const char *key, is_wq_item_t **out) {
    is_wq_item_t *item = wq_find(wq, key);
    if (!item) {
        size_t len = strlen(key);
        item = is_calloc(1, sizeof *item + len + 1);
        if (!item)
            return IS_ENOMEM;
        memcpy(item->key, key, len + 1);
        item->wq = wq;
        is_timer_init(wq->loop, &item->delay, wq_delay_cb, item);
        if (is_map_set(&wq->items__, key, item, NULL) != IS_OK) {
            is_free(item);
            return IS_ENOMEM;
        }
    }
    *out = item;
    return IS_OK;
}

/* The item an add acts on. Once the queue is closed *out is NULL and the
 * add is ignored, as client-go ignores adds while shutting down. */
static int wq_item_for_add(is_wq_t *wq, const char *key, is_wq_item_t **out) {
    *out = NULL;
    if (wq->shutting_down__)
        return IS_OK;
    return wq_get_or_create(wq, key, out);
}

static void wq_release_if_idle(is_wq_t *wq, is_wq_item_t *item) {
    if (item->ready || item->in_flight || is_timer_active(&item->delay) || item->failures > 0)
        return;
    is_map_del(&wq->items__, item->key);
    is_free(item);
}

/* Dispatch runs from a zero-delay timer rather than inside add, so process
 * never re-enters the caller of add, and a burst of adds costs one pass. */
static int wq_schedule_dispatch(is_wq_t *wq) {
    if (wq->active__ >= wq->max_active || is_timer_active(&wq->dispatch__))
        return IS_OK;
    return is_timer_start(&wq->dispatch__, 0);
}

static void wq_push_ready(is_wq_t *wq, is_wq_item_t *item) {
    item->ready = 1;
    item->next = NULL;
    if (wq->tail__)
        wq->tail__->next = item;
    else
        wq->head__ = item;
    wq->tail__ = item;
    wq->ready__++;
}

/* ---- metrics, as client-go's defaultQueueMetrics ---- */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double seconds_since(uint64_t then) {
    uint64_t now = mono_ns();
    return now > then ? (double)(now - then) / 1e9 : 0;
}

/* A key that became queued (or dirty while in flight). */
static void wq_metrics_add(is_wq_t *wq, is_wq_item_t *item) {
    if (!wq->metrics__) return;
    is_series_add(wq->adds__, 1);
    is_series_add(wq->depth__, 1);
    if (!item->timed) {
        item->timed = 1;
        item->added_ns = mono_ns();
    }
}

static void wq_metrics_get(is_wq_t *wq, is_wq_item_t *item) {
    if (!wq->metrics__) return;
    is_series_add(wq->depth__, -1);
    item->started_ns = mono_ns();
    if (item->timed) is_series_observe(wq->latency__, seconds_since(item->added_ns));
    item->timed = 0;
}

static void wq_metrics_done(is_wq_t *wq, is_wq_item_t *item) {
    if (wq->metrics__) is_series_observe(wq->work__, seconds_since(item->started_ns));
}

/* Unfinished work and the longest running processor are known only when
 * asked: the time every key in flight has been running. */
static int wq_collect(is_metrics_t *reg, void *ud) {
    (void)reg;
    is_wq_t *wq = ud;
    double total = 0, longest = 0;
    size_t iter = 0;
    const char *k;
    void *v;
    while (is_map_next(&wq->items__, &iter, &k, &v)) {
        const is_wq_item_t *item = v;
        if (!item->in_flight) continue;
        double s = seconds_since(item->started_ns);
        total += s;
        if (s > longest) longest = s;
    }
    is_series_set(wq->unfinished__, total);
    is_series_set(wq->longest__, longest);
    return IS_OK;
}

int is_wq_set_metrics(is_wq_t *wq, is_metrics_t *reg, const char *name) {
    /* controller-runtime's buckets: 10 ns to 1000 s, times ten each. */
    static const double buckets[] = { 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1000 };
    static const char *const labels[] = { "name", "controller", NULL };
    static const char *const depth_labels[] = { "name", "controller", "priority", NULL };
    is_metric_t *depth, *adds, *latency, *work, *unfinished, *longest, *retries;
    int rc = is_metrics_gauge(reg, "workqueue_depth", "Current depth of workqueue by workqueue and priority",
                              depth_labels, &depth);
    if (rc == IS_OK) rc = is_metrics_counter(reg, "workqueue_adds_total", "Total number of adds handled by workqueue",
                                             labels, &adds);
    if (rc == IS_OK)
        rc = is_metrics_histogram(reg, "workqueue_queue_duration_seconds",
                                  "How long in seconds an item stays in workqueue before being requested",
                                  labels, buckets, sizeof buckets / sizeof buckets[0], &latency);
    if (rc == IS_OK)
        rc = is_metrics_histogram(reg, "workqueue_work_duration_seconds",
                                  "How long in seconds processing an item from workqueue takes.",
                                  labels, buckets, sizeof buckets / sizeof buckets[0], &work);
    if (rc == IS_OK)
        rc = is_metrics_gauge(reg, "workqueue_unfinished_work_seconds",
                              "How many seconds of work has been done that is in progress and hasn't been "
                              "observed by work_duration. Large values indicate stuck threads. One can deduce "
                              "the number of stuck threads by observing the rate at which this increases.",
                              labels, &unfinished);
    if (rc == IS_OK)
        rc = is_metrics_gauge(reg, "workqueue_longest_running_processor_seconds",
                              "How many seconds has the longest running processor for workqueue been running.",
                              labels, &longest);
    if (rc == IS_OK) rc = is_metrics_counter(reg, "workqueue_retries_total", "Total number of retries handled by workqueue",
                                             labels, &retries);
    const char *const values[] = { name, name, "" };
    is_series_t *s[7];
    if (rc == IS_OK) rc = is_metric_with(depth, values, &s[0]);
    if (rc == IS_OK) rc = is_metric_with(adds, values, &s[1]);
    if (rc == IS_OK) rc = is_metric_with(latency, values, &s[2]);
    if (rc == IS_OK) rc = is_metric_with(work, values, &s[3]);
    if (rc == IS_OK) rc = is_metric_with(unfinished, values, &s[4]);
    if (rc == IS_OK) rc = is_metric_with(longest, values, &s[5]);
    if (rc == IS_OK) rc = is_metric_with(retries, values, &s[6]);
    if (rc == IS_OK) rc = is_metrics_add_collector(reg, wq_collect, wq);
    if (rc != IS_OK) return rc;
    wq->depth__ = s[0];
    wq->adds__ = s[1];
    wq->latency__ = s[2];
    wq->work__ = s[3];
    wq->unfinished__ = s[4];
    wq->longest__ = s[5];
    wq->retries__ = s[6];
    wq->metrics__ = reg;
    return IS_OK;
}

/* client-go's Add: a queued or dirty key stays where it is; a key in flight
 * is only marked, to be queued when it is done. */
static int wq_enqueue(is_wq_t *wq, is_wq_item_t *item) {
    if (item->ready || item->dirty)
        return IS_OK;
    if (item->in_flight) {
        item->dirty = 1;
        wq_metrics_add(wq, item);
        return IS_OK;
    }
    /* Scheduled before the push so a failure leaves nothing half done. */
    int rc = wq_schedule_dispatch(wq);
    if (rc != IS_OK)
        return rc;
    wq_push_ready(wq, item);
    wq_metrics_add(wq, item);
    return IS_OK;
}

static int wq_add_item_after(is_wq_t *wq, is_wq_item_t *item, uint64_t delay_ms) {
    if (delay_ms == 0)
        return wq_enqueue(wq, item);
    uint64_t now = is_loop_now(wq->loop);
    uint64_t due = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
    int waiting = is_timer_active(&item->delay);
    if (waiting && item->due <= due)
        return IS_OK;
    int rc = is_timer_start(&item->delay, delay_ms);
    if (rc != IS_OK)
        return rc;
    item->due = due;
    if (!waiting)
        wq->waiting__++;
    return IS_OK;
}

int is_wq_add_after(is_wq_t *wq, const char *key, uint64_t delay_ms) {
    is_wq_item_t *item;
    int rc = wq_item_for_add(wq, key, &item);
    if (!item)
        return rc;
    rc = wq_add_item_after(wq, item, delay_ms);
    wq_release_if_idle(wq, item);
    return rc;
}

int is_wq_add(is_wq_t *wq, const char *key) {
    return is_wq_add_after(wq, key, 0);
}

static void wq_delay_cb(is_timer_t *timer) {
    is_wq_item_t *item = timer->data;
    is_wq_t *wq = item->wq;
    wq->waiting__--;
    /* Cannot fail: starting the dispatch timer needs one heap slot, and the
     * loop freed this timer's slot just before calling us. */
    (void)wq_enqueue(wq, item);
    wq_release_if_idle(wq, item);
}

/* base * 2^failures, capped at max without overflowing on the way. */
static uint64_t wq_backoff(const is_wq_t *wq, int failures) {
    uint64_t base = wq->base_delay_ms, max = wq->max_delay_ms;
    if (failures >= 64 || base > (UINT64_MAX >> failures))
        return max;
    uint64_t delay = base << failures;
    return delay > max ? max : delay;
}

int is_wq_add_rate_limited(is_wq_t *wq, const char *key, uint64_t *delay_ms) {
    is_wq_item_t *item;
    int rc = wq_item_for_add(wq, key, &item);
    if (!item)
        return rc;
    uint64_t delay = wq_backoff(wq, item->failures);
    if (wq->metrics__)
        is_series_add(wq->retries__, 1);
    if (item->failures < INT_MAX)
        item->failures++;
    rc = wq_add_item_after(wq, item, delay);
    if (rc != IS_OK)
        item->failures--;  /* the failure was not acted on; do not count it */
    else if (delay_ms)
        *delay_ms = delay;
    wq_release_if_idle(wq, item);
    return rc;
}

void is_wq_forget(is_wq_t *wq, const char *key) {
    is_wq_item_t *item = wq_find(wq, key);
    if (!item)
        return;
    item->failures = 0;
    wq_release_if_idle(wq, item);
}

void is_wq_done(is_wq_t *wq, const char *key) {
    is_wq_item_t *item = wq_find(wq, key);
    if (!item || !item->in_flight)
        return;
    item->in_flight = 0;
    wq->active__--;
    wq_metrics_done(wq, item);
    if (item->dirty) {
        item->dirty = 0;
        wq_push_ready(wq, item);
    }
    /* A failure here (out of memory for the dispatch timer) is retried by
     * the next add or done; the ready keys stay queued meanwhile. */
    if (wq->ready__ > 0)
        (void)wq_schedule_dispatch(wq);
    wq_release_if_idle(wq, item);
}

static void wq_dispatch_cb(is_timer_t *timer) {
    is_wq_t *wq = timer->data;
    /* Only the keys ready now: one re-added by a synchronous done waits for
     * the next pass, so a key that always re-queues cannot starve the loop. */
    size_t budget = wq->ready__;
    while (budget-- > 0 && wq->head__ && wq->active__ < wq->max_active) {
        is_wq_item_t *item = wq->head__;
        wq->head__ = item->next;
        if (!wq->head__)
            wq->tail__ = NULL;
        wq->ready__--;
        item->ready = 0;
        item->next = NULL;
        item->in_flight = 1;
        wq->active__++;
        wq_metrics_get(wq, item);
        /* process may call is_wq_done (freeing item) or even is_wq_close. */
        wq->process(wq, item->key, wq->data);
        if (wq->shutting_down__)
            return;
    }
    if (wq->ready__ > 0)
        (void)wq_schedule_dispatch(wq);
}

int is_wq_failures(const is_wq_t *wq, const char *key) {
    const is_wq_item_t *item = wq_find(wq, key);
    return item ? item->failures : 0;
}

uint64_t is_wq_next_backoff(const is_wq_t *wq, const char *key) {
    return wq_backoff(wq, is_wq_failures(wq, key));
}

size_t is_wq_len(const is_wq_t *wq) {
    return wq->ready__;
}

int is_wq_active(const is_wq_t *wq) {
    return wq->active__;
}

size_t is_wq_waiting(const is_wq_t *wq) {
    return wq->waiting__;
}
