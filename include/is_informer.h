/* An informer, as client-go's: list, then watch from the list's
 * resourceVersion into a cache, with bookmarks, a relist on 410 Gone, and
 * reconnects with jittered exponential backoff. Handlers see every add,
 * update and delete in the order the API server sent them; after a relist the
 * cache is replaced and the differences are delivered as events, so a
 * handler never misses a delete that happened while disconnected.
 *
 * Objects are cached as their raw JSON bytes, keyed "namespace/name" (or
 * "name" for cluster-scoped resources). The caller owns the struct. */
#ifndef IS_INFORMER_H
#define IS_INFORMER_H

#include <stddef.h>
#include <stdint.h>
#include "is_http.h"
#include "is_kapi.h"
#include "is_map.h"
#include "is_framer.h"
#include "is_metrics.h"

typedef struct is_informer_s is_informer_t;

typedef struct is_informer_handlers_s {
    void (*on_add)(is_informer_t *inf, const char *key, const char *obj, size_t len);
    void (*on_update)(is_informer_t *inf, const char *key, const char *old_obj, size_t old_len,
                      const char *obj, size_t len);
    void (*on_delete)(is_informer_t *inf, const char *key, const char *obj, size_t len);
    /* After the first complete list (and again after each relist). */
    void (*on_synced)(is_informer_t *inf);
    /* A failed list or watch; the informer retries by itself after
     * retry_ms. what is "list" or "watch". */
    void (*on_error)(is_informer_t *inf, const char *what, long code,
                     const char *reason, const char *message, uint64_t retry_ms);
} is_informer_handlers_t;

typedef struct is_informer_opts_s {
    const char *name;            /* for logs and metrics */
    is_cluster_t *cluster;
    is_kres_t resource;          /* strings are copied */
    const char *namespace;       /* NULL = all namespaces */
    const char *label_selector;
    const char *field_selector;
    uint64_t resync_ms;          /* 0 = no periodic resync (on_update old==new) */
    int page_size;               /* default 500 */
    int watch_timeout_s;         /* default 300, jittered up to 2x */
    uint64_t backoff_base_ms;    /* default 800 */
    uint64_t backoff_max_ms;     /* default 30000 */
    size_t max_event;            /* one watch event's bytes; default IS_INFORMER_MAX_EVENT */
} is_informer_opts_t;

/* A watch event carries one object (etcd keeps them under 1.5 MiB) in JSON,
 * escaped once more inside the event: 16 MiB leaves room for all of it. */
#define IS_INFORMER_MAX_EVENT ((size_t)16 << 20)

typedef struct is_informer_obj_s is_informer_obj_t; /* internal */

struct is_informer_s {
    is_informer_handlers_t handlers;
    void *data;                  /* for the owner */
    /* internal */
    char *name__;
    is_cluster_t *cluster__;
    char *group__, *version__, *plural__;
    int namespaced__;
    char *namespace__, *label_selector__, *field_selector__;
    uint64_t resync_ms__;
    int page_size__, watch_timeout_s__;
    uint64_t backoff_base_ms__, backoff_max_ms__;
    is_map_t cache__;            /* key -> is_informer_obj_t* */
    char *rv__;                  /* last resourceVersion seen */
    int state__;
    int synced__;
    int failures__;
    is_http_req_t *req__;        /* the watch in flight */
    struct is_kapi_list_s *list__; /* the list in flight */
    is_map_t listed__;           /* keys the list in flight has had so far */
    int abort__;                 /* why the stream was aborted from its callback */
    long abort_code__;
    char *abort_reason__, *abort_message__;
    is_framer_t framer__;
    is_timer_t retry__, resync__;
    unsigned long events__, relists__, reconnects__;
    is_series_t *events_metric__, *relists_metric__, *restarts_metric__;
};

int is_informer_init(is_informer_t *inf, const is_informer_opts_t *opts,
                     const is_informer_handlers_t *handlers, void *data);
/* Counts watch events, relists (after 410 Gone) and watch restarts (after
 * a failed list or watch) in reg as internal_services_watch_events_total,
 * internal_services_relists_total and internal_services_watch_restarts_total,
 * labelled cluster and informer. reg must outlive the informer. */
int is_informer_set_metrics(is_informer_t *inf, is_metrics_t *reg);
int is_informer_start(is_informer_t *inf);
void is_informer_stop(is_informer_t *inf);
/* Internal, for the fuzz target: feeds watch-stream bytes as if the watch
 * in flight had received them (framing, decoding, the cache, the
 * handlers). Non-zero when the stream would be torn down. */
int is_informer_feed__(is_informer_t *inf, const char *data, size_t len);
void is_informer_close(is_informer_t *inf);  /* stops and frees the cache */

int is_informer_synced(const is_informer_t *inf);
size_t is_informer_count(const is_informer_t *inf);
/* The cached object for key; IS_ENOTFOUND when absent. The bytes stay valid
 * until the informer's next event for that key. */
int is_informer_get(const is_informer_t *inf, const char *key, const char **obj, size_t *len);
/* Calls cb for each cached object; a non-zero return stops and is returned. */
int is_informer_each(const is_informer_t *inf,
                     int (*cb)(const char *key, const char *obj, size_t len, void *ud), void *ud);
const char *is_informer_resource_version(const is_informer_t *inf);

#endif
