/* A de-duplicating work queue with per-key exponential backoff, as client-go's
 * rate-limited workqueue: a key is queued at most once, never processed by
 * two workers at the same time, and re-queued after processing if it was
 * added meanwhile.
 *
 * The caller owns the struct. Keys are copied. */
#ifndef IS_WORKQUEUE_H
#define IS_WORKQUEUE_H

#include <stddef.h>
#include <stdint.h>
#include "is_loop.h"
#include "is_map.h"
#include "is_metrics.h"

typedef struct is_wq_s is_wq_t;
typedef struct is_wq_item_s is_wq_item_t;  /* internal */

/* Called from the loop whenever a key can be processed (fewer than
 * max_active in flight). The worker must eventually call is_wq_done(key). */
typedef void (*is_wq_process_cb)(is_wq_t *wq, const char *key, void *data);

struct is_wq_s {
    is_loop_t *loop;
    uint64_t base_delay_ms;   /* default 5 */
    uint64_t max_delay_ms;    /* default 1000 s */
    int max_active;           /* concurrent keys in flight; default 50 */
    is_wq_process_cb process;
    void *data;
    /* internal */
    is_map_t items__;         /* key -> is_wq_item_t* */
    size_t waiting__;         /* keys with a pending delay */
    is_wq_item_t *head__, *tail__; /* FIFO of ready keys */
    size_t ready__;
    int active__;
    is_timer_t dispatch__;     /* zero-delay timer that runs ready keys */
    int shutting_down__;
    is_metrics_t *metrics__;   /* is_wq_set_metrics */
    is_series_t *depth__, *adds__, *latency__, *work__, *unfinished__, *longest__, *retries__;
};

int is_wq_init(is_wq_t *wq, is_loop_t *loop, is_wq_process_cb process, void *data);
void is_wq_close(is_wq_t *wq);  /* drops every key and timer */
/* Reports client-go's workqueue_* metrics (depth, adds, queue and work
 * durations, unfinished work, longest running processor, retries) into
 * reg, labelled name and controller (controller-runtime's layout) with
 * name. reg must outlive the queue or its is_wq_close. */
int is_wq_set_metrics(is_wq_t *wq, is_metrics_t *reg, const char *name);

/* Queues key now (no-op if already queued; deferred if in flight). */
int is_wq_add(is_wq_t *wq, const char *key);
/* Queues key after delay_ms; an earlier pending time wins. */
int is_wq_add_after(is_wq_t *wq, const char *key, uint64_t delay_ms);
/* Queues key after its backoff: base * 2^failures, capped at max; counts a
 * failure. Returns the delay used through *delay_ms when not NULL. */
int is_wq_add_rate_limited(is_wq_t *wq, const char *key, uint64_t *delay_ms);
/* Clears key's failure count (after a successful reconcile). */
void is_wq_forget(is_wq_t *wq, const char *key);
/* Marks key finished; if it was added while in flight it is queued again. */
void is_wq_done(is_wq_t *wq, const char *key);
int is_wq_failures(const is_wq_t *wq, const char *key);
/* The backoff delay the next failure of key would get (without counting it). */
uint64_t is_wq_next_backoff(const is_wq_t *wq, const char *key);

size_t is_wq_len(const is_wq_t *wq);   /* keys ready to process */
int is_wq_active(const is_wq_t *wq);   /* keys in flight */
size_t is_wq_waiting(const is_wq_t *wq); /* keys waiting on a delay */

#endif
