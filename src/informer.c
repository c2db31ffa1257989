/* List-then-watch informer with a cache of raw objects. See is_informer.h. */
#include "is_informer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_json.h"

struct is_informer_obj_s {
    char *json;
    size_t len;
    char *rv;
};

enum { ST_IDLE, ST_LISTING, ST_WATCHING, ST_WAITING };

/* Why a watch stream was aborted from inside its data callback. */
enum { ABORT_NONE, ABORT_RELIST, ABORT_ERROR };

static void obj_free(void *p) {
    is_informer_obj_t *o = p;
    if (!o) return;
    is_free(o->json);
    is_free(o->rv);
    is_free(o);
}

/* A copy of json without the bytes [cut_a, cut_b) (none when equal). */
static int obj_new(const char *json, size_t len, size_t cut_a, size_t cut_b, const char *rv,
                   is_informer_obj_t **out) {
    is_informer_obj_t *o = is_calloc(1, sizeof *o);
    if (!o) return IS_ENOMEM;
    size_t cut = cut_b - cut_a;
    o->json = is_malloc(len - cut + 1);
    o->rv = is_strdup(rv ? rv : "");
    if (!o->json || !o->rv) {
        obj_free(o);
        return IS_ENOMEM;
    }
    memcpy(o->json, json, cut_a);
    memcpy(o->json + cut_a, json + cut_b, len - cut_b);
    o->json[len - cut] = '\0';
    o->len = len - cut;
    *out = o;
    return IS_OK;
}

static int dup_opt(char **dst, const char *src) {
    *dst = NULL;
    if (!src) return IS_OK;
    *dst = is_strdup(src);
    return *dst ? IS_OK : IS_ENOMEM;
}

static void on_retry(is_timer_t *t);
static void on_resync(is_timer_t *t);

int is_informer_init(is_informer_t *inf, const is_informer_opts_t *o,
                     const is_informer_handlers_t *h, void *data) {
    memset(inf, 0, sizeof *inf);
    if (!o || !o->cluster || !o->resource.version || !o->resource.plural) return IS_EINVAL;
    if (h) inf->handlers = *h;
    inf->data = data;
    inf->cluster__ = o->cluster;
    inf->namespaced__ = o->resource.namespaced;
    inf->resync_ms__ = o->resync_ms;
    inf->page_size__ = o->page_size > 0 ? o->page_size : 500;
    inf->watch_timeout_s__ = o->watch_timeout_s > 0 ? o->watch_timeout_s : 300;
    inf->backoff_base_ms__ = o->backoff_base_ms ? o->backoff_base_ms : 800;
    inf->backoff_max_ms__ = o->backoff_max_ms ? o->backoff_max_ms : 30000;
    is_map_init(&inf->cache__);
    is_map_init(&inf->listed__);
    is_framer_init(&inf->framer__, o->max_event ? o->max_event : IS_INFORMER_MAX_EVENT);
    is_timer_init(o->cluster->loop, &inf->retry__, on_retry, inf);
    is_timer_init(o->cluster->loop, &inf->resync__, on_resync, inf);
    int rc = IS_OK;
    if (rc == IS_OK) rc = dup_opt(&inf->name__, o->name ? o->name : o->resource.plural);
    if (rc == IS_OK) rc = dup_opt(&inf->group__, o->resource.group ? o->resource.group : "");
    if (rc == IS_OK) rc = dup_opt(&inf->version__, o->resource.version);
    if (rc == IS_OK) rc = dup_opt(&inf->plural__, o->resource.plural);
    if (rc == IS_OK) rc = dup_opt(&inf->namespace__, o->namespace);
    if (rc == IS_OK) rc = dup_opt(&inf->label_selector__, o->label_selector);
    if (rc == IS_OK) rc = dup_opt(&inf->field_selector__, o->field_selector);
    if (rc != IS_OK) is_informer_close(inf);
    return rc;
}

int is_informer_set_metrics(is_informer_t *inf, is_metrics_t *reg) {
    static const char *const labels[] = { "cluster", "informer", NULL };
    static const struct { const char *name, *help; size_t offset; } defs[] = {
        { "internal_services_watch_events_total", "Watch events received, by cluster and informer.",
          offsetof(is_informer_t, events_metric__) },
        { "internal_services_relists_total",
          "Full lists after the watch's resource version expired (410 Gone), by cluster and informer.",
          offsetof(is_informer_t, relists_metric__) },
        { "internal_services_watch_restarts_total",
          "Lists and watches started again after a failure, by cluster and informer.",
          offsetof(is_informer_t, restarts_metric__) },
    };
    const char *const values[] = { inf->cluster__->name, inf->name__ };
    is_series_t *series[3];
    for (size_t i = 0; i < 3; i++) {
        is_metric_t *m;
        int rc = is_metrics_counter(reg, defs[i].name, defs[i].help, labels, &m);
        if (rc == IS_OK) rc = is_metric_with(m, values, &series[i]);
        if (rc != IS_OK) return rc;
    }
    for (size_t i = 0; i < 3; i++) *(is_series_t **)((char *)inf + defs[i].offset) = series[i];
    return IS_OK;
}

static void count(unsigned long *counter, is_series_t *series) {
    (*counter)++;
    if (series) is_series_add(series, 1);
}

static is_kres_t resource(const is_informer_t *inf) {
    return (is_kres_t){ inf->group__, inf->version__, inf->plural__, inf->namespaced__ };
}

/* Jittered exponential backoff, as client-go's reflector: base * 2^n capped,
 * then up to +100% jitter so that many informers do not reconnect in step
 * after an API server restart. */
static uint64_t backoff(is_informer_t *inf) {
    uint64_t d = inf->backoff_base_ms__;
    for (int i = 0; i < inf->failures__ && d < inf->backoff_max_ms__; i++) d *= 2;
    if (d > inf->backoff_max_ms__) d = inf->backoff_max_ms__;
    inf->failures__++;
    return d + (uint64_t)((double)d * ((double)rand() / RAND_MAX));
}

static void report(is_informer_t *inf, const char *what, long code, const char *reason,
                   const char *message, uint64_t retry_ms) {
    if (inf->handlers.on_error) inf->handlers.on_error(inf, what, code, reason, message, retry_ms);
}

static void retry_later(is_informer_t *inf, const char *what, long code, const char *reason,
                        const char *message) {
    uint64_t delay = backoff(inf);
    if (inf->restarts_metric__) is_series_add(inf->restarts_metric__, 1);
    report(inf, what, code, reason, message, delay);
    inf->state__ = ST_WAITING;
    if (is_timer_start(&inf->retry__, delay) != IS_OK)
        report(inf, what, 0, "InternalError", "out of memory scheduling a retry", 0);
}

/* Key and resourceVersion of the object at token obj of an already parsed
 * document (a watch event or a list), so no object is parsed twice. */
static int object_identity(const is_json_t *doc, int obj, char **key, char **rv) {
    char *ns = NULL, *name = NULL;
    int rc = IS_EPARSE;
    *key = *rv = NULL;
    int meta = is_json_get(doc, obj, "metadata");
    if (meta < 0) goto out;
    int t_name = is_json_get(doc, meta, "name");
    int t_ns = is_json_get(doc, meta, "namespace");
    int t_rv = is_json_get(doc, meta, "resourceVersion");
    if (t_name < 0 || (rc = is_json_strdup(doc, t_name, &name)) != IS_OK) goto out;
    if (t_ns >= 0 && (rc = is_json_strdup(doc, t_ns, &ns)) != IS_OK) goto out;
    if (t_rv >= 0 && (rc = is_json_strdup(doc, t_rv, rv)) != IS_OK) goto out;
    is_buf_t k;
    is_buf_init(&k);
    if (ns && ns[0]) rc = is_buf_printf(&k, "%s/%s", ns, name);
    else rc = is_buf_appends(&k, name);
    if (rc == IS_OK) *key = is_buf_steal(&k, NULL);
    is_buf_free(&k);
out:
    if (rc != IS_OK) {
        is_free(*rv);
        *rv = NULL;
    }
    is_free(ns);
    is_free(name);
    return rc;
}

static int set_rv(is_informer_t *inf, const char *rv) {
    if (!rv || !rv[0]) return IS_OK;
    char *copy = is_strdup(rv);
    if (!copy) return IS_ENOMEM;
    is_free(inf->rv__);
    inf->rv__ = copy;
    return IS_OK;
}

/* The cache keeps no metadata.managedFields: nothing in the controller
 * reads it, and the API server's entries (one per field manager, each
 * listing every field it set) are often a third of an object. As
 * controller-runtime's cache transforms do, it is cut before the copy. */
static void managed_fields_span(const is_json_t *doc, int obj, size_t *a, size_t *b) {
    size_t s, e, base = doc->toks[obj].start;
    *a = *b = 0;
    if (is_json_member_span(doc, obj, "metadata.managedFields", &s, &e) == IS_OK) {
        *a = s - base;
        *b = e - base;
    }
}

/* Stores the object at token t_obj of doc and tells the handlers. Takes
 * ownership of nothing. */
static int apply_upsert(is_informer_t *inf, const char *key, const is_json_t *doc, int t_obj,
                        const char *rv) {
    size_t len, cut_a, cut_b;
    const char *json = is_json_raw(doc, t_obj, &len);
    managed_fields_span(doc, t_obj, &cut_a, &cut_b);
    is_informer_obj_t *o, *old = NULL;
    int rc = obj_new(json, len, cut_a, cut_b, rv, &o);
    if (rc != IS_OK) return rc;
    if ((rc = is_map_set(&inf->cache__, key, o, (void **)&old)) != IS_OK) {
        obj_free(o);
        return rc;
    }
    if (old) {
        if (inf->handlers.on_update) inf->handlers.on_update(inf, key, old->json, old->len, o->json, o->len);
        obj_free(old);
    } else if (inf->handlers.on_add) {
        inf->handlers.on_add(inf, key, o->json, o->len);
    }
    return IS_OK;
}

static void apply_delete(is_informer_t *inf, const char *key, const char *json, size_t len) {
    is_informer_obj_t *old = is_map_del(&inf->cache__, key);
    /* The final state from the event is what handlers see; fall back to the
     * cached copy when the event carried none. */
    if (inf->handlers.on_delete) {
        if (json) inf->handlers.on_delete(inf, key, json, len);
        else if (old) inf->handlers.on_delete(inf, key, old->json, old->len);
    }
    obj_free(old);
}

/* --- watch ------------------------------------------------------------- */

static void start_watch(is_informer_t *inf);
static void start_list(is_informer_t *inf);

static int on_event_line(const char *line, size_t len, void *ud) {
    is_informer_t *inf = ud;
    is_json_t doc;
    char *type = NULL, *key = NULL, *rv = NULL;
    int rc = is_json_parse(&doc, line, len, NULL);
    if (rc != IS_OK) {
        inf->abort__ = ABORT_ERROR;
        inf->abort_message__ = is_strdup(rc == IS_ENOMEM ? "out of memory parsing a watch event"
                                                : "the API server sent a watch event that is not valid JSON");
        goto out;
    }
    int t_type = is_json_get(&doc, 0, "type");
    int t_obj = is_json_get(&doc, 0, "object");
    if (t_type < 0 || t_obj < 0 || is_json_strdup(&doc, t_type, &type) != IS_OK) {
        inf->abort__ = ABORT_ERROR;
        inf->abort_message__ = is_strdup("a watch event without type or object");
        rc = IS_EPARSE;
        goto out;
    }
    size_t olen;
    const char *obj = is_json_raw(&doc, t_obj, &olen);
    count(&inf->events__, inf->events_metric__);

    if (strcmp(type, "ERROR") == 0) {
        /* The object is a Status. 410 Gone: our resourceVersion is older
         * than what the server keeps; only a fresh list can recover. */
        is_kstatus_t st;
        long code = 0;
        int t_code = is_json_path(&doc, t_obj, "code");
        long long c;
        if (t_code >= 0 && is_json_int(&doc, t_code, &c) == IS_OK) code = (long)c;
        if (is_kstatus_decode(&st, code ? code : 500, obj, olen) == IS_OK) {
            inf->abort_code__ = st.code;
            inf->abort_reason__ = is_strdup(st.reason);
            inf->abort_message__ = is_strdup(st.message);
            is_kstatus_free(&st);
        }
        inf->abort__ = (code == 410) ? ABORT_RELIST : ABORT_ERROR;
        rc = IS_EAGAIN;
        goto out;
    }
    if (strcmp(type, "BOOKMARK") == 0) {
        int t_rv = is_json_path(&doc, t_obj, "metadata.resourceVersion");
        if (t_rv >= 0 && is_json_strdup(&doc, t_rv, &rv) == IS_OK) rc = set_rv(inf, rv);
        goto out;
    }
    if ((rc = object_identity(&doc, t_obj, &key, &rv)) != IS_OK) {
        inf->abort__ = ABORT_ERROR;
        inf->abort_message__ = is_strdup("a watch event whose object has no metadata.name");
        goto out;
    }
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0) {
        rc = apply_upsert(inf, key, &doc, t_obj, rv);
    } else if (strcmp(type, "DELETED") == 0) {
        apply_delete(inf, key, obj, olen);
    }
    if (rc == IS_OK) rc = set_rv(inf, rv);
    if (rc != IS_OK) {
        inf->abort__ = ABORT_ERROR;
        inf->abort_message__ = is_strdup(is_strerror(rc));
    }
out:
    is_free(type);
    is_free(key);
    is_free(rv);
    is_json_free(&doc);
    return rc == IS_OK ? 0 : 1;
}

static int on_watch_data(is_http_req_t *req, const char *data, size_t len, void *ud) {
    (void)req;
    is_informer_t *inf = ud;
    unsigned long events = inf->events__;
    int rc = is_framer_feed(&inf->framer__, data, len, on_event_line, inf);
    /* A watch that delivers events is healthy again: the outage before it
     * is forgotten, so that the next break is retried after the base delay
     * rather than the longest one so far. */
    if (rc == IS_OK && inf->events__ != events) inf->failures__ = 0;
    if (rc == IS_ELIMIT && inf->abort__ == ABORT_NONE) {
        /* The stream is out of step: reconnect from the last resourceVersion
         * and say which watch sent what. */
        char msg[256];
        snprintf(msg, sizeof msg, "a watch event of %s exceeds the limit of %zu bytes", inf->plural__,
                 inf->framer__.max_line);
        inf->abort__ = ABORT_ERROR;
        is_free(inf->abort_reason__);
        is_free(inf->abort_message__);
        inf->abort_reason__ = is_strdup("EventTooLarge");
        inf->abort_message__ = is_strdup(msg);
    }
    return rc == IS_OK ? 0 : 1;
}

int is_informer_feed__(is_informer_t *inf, const char *data, size_t len) {
    return on_watch_data(NULL, data, len, inf);
}

static void abort_reset(is_informer_t *inf) {
    is_free(inf->abort_reason__);
    is_free(inf->abort_message__);
    inf->abort_reason__ = inf->abort_message__ = NULL;
    inf->abort__ = ABORT_NONE;
    inf->abort_code__ = 0;
}

static void on_watch_done(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    (void)req;
    is_informer_t *inf = ud;
    inf->req__ = NULL;
    is_framer_reset(&inf->framer__);

    int why = inf->abort__;
    long code = inf->abort_code__;
    char *reason = inf->abort_reason__, *message = inf->abort_message__;
    inf->abort_reason__ = inf->abort_message__ = NULL;
    abort_reset(inf);
    if (why == ABORT_RELIST || res->code == 410) {
        report(inf, "watch", 410, "Expired",
               message ? message : "resource version too old; relisting", 0);
        count(&inf->relists__, inf->relists_metric__);
        start_list(inf);
    } else if (why == ABORT_ERROR) {
        inf->reconnects__++;
        retry_later(inf, "watch", code, reason ? reason : "InternalError",
                    message ? message : "watch stream failed");
    } else if (res->code == 200 && res->curl_code == CURLE_OK) {
        /* The server ended the stream at timeoutSeconds: resume at once. */
        inf->failures__ = 0;
        start_watch(inf);
    } else {
        inf->reconnects__++;
        retry_later(inf, "watch", res->code, res->status ? res->status->reason : "TransportError",
                    res->error ? res->error : "watch failed");
    }
    is_free(reason);
    is_free(message);
}

static void start_watch(is_informer_t *inf) {
    is_kres_t r = resource(inf);
    /* Jitter spreads the reconnects of many watches over time. */
    int timeout = inf->watch_timeout_s__ + rand() % (inf->watch_timeout_s__ + 1);
    is_kapi_opts_t o = {
        .namespace = inf->namespace__, .label_selector = inf->label_selector__,
        .field_selector = inf->field_selector__, .resource_version = inf->rv__,
        .watch = 1, .allow_bookmarks = 1, .timeout_seconds = timeout,
    };
    is_buf_t path;
    is_buf_init(&path);
    int rc = is_kapi_path(&path, &r, &o);
    if (rc == IS_OK) {
        is_http_opts_t h = { .method = "GET", .path = path.data, .on_data = on_watch_data };
        inf->state__ = ST_WATCHING;
        is_framer_reset(&inf->framer__);
        rc = is_http_request(inf->cluster__, &h, on_watch_done, inf, &inf->req__);
    }
    is_buf_free(&path);
    if (rc != IS_OK) retry_later(inf, "watch", 0, "InternalError", is_strerror(rc));
}

/* --- list -------------------------------------------------------------- */

/* One page of a list: every item is an add or an update. */
static int on_list_page(const is_json_t *doc, int items, void *ud) {
    is_informer_t *inf = ud;
    int rc = IS_OK;
    int t = items + 1;
    for (int i = 0; i < doc->toks[items].size; i++, t = doc->toks[t].next) {
        char *key, *rv;
        if ((rc = object_identity(doc, t, &key, &rv)) != IS_OK) return rc;
        rc = is_map_set(&inf->listed__, key, NULL, NULL);
        if (rc == IS_OK) rc = apply_upsert(inf, key, doc, t, rv);
        is_free(key);
        is_free(rv);
        if (rc != IS_OK) return rc;
    }
    return IS_OK;
}

/* The list is complete (body: its resourceVersion, no items): every cached
 * object that was not listed was deleted while we were not watching. */
static int finish_list(is_informer_t *inf, const char *body, size_t len) {
    is_json_t doc;
    int rc = is_json_parse(&doc, body, len, NULL);
    if (rc != IS_OK) goto out;
    size_t iter = 0;
    const char *key;
    void *value;
    while (is_map_next(&inf->cache__, &iter, &key, &value)) {
        if (is_map_has(&inf->listed__, key)) continue;
        /* is_map_del of the current key is allowed during iteration, but
         * the handler may look at the cache, so copy the key first. */
        char *k = is_strdup(key);
        if (!k) { rc = IS_ENOMEM; goto out; }
        apply_delete(inf, k, NULL, 0);
        is_free(k);
    }
    int t_rv = is_json_path(&doc, 0, "metadata.resourceVersion");
    char *rv = NULL;
    if (t_rv >= 0 && (rc = is_json_strdup(&doc, t_rv, &rv)) != IS_OK) goto out;
    rc = set_rv(inf, rv);
    is_free(rv);
out:
    is_json_free(&doc);
    return rc;
}

static void on_list_done(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    (void)req;
    is_informer_t *inf = ud;
    inf->list__ = NULL;
    if (res->code != 200) {
        is_map_free(&inf->listed__, NULL);
        is_map_init(&inf->listed__);
        retry_later(inf, "list", res->code, res->status ? res->status->reason : "TransportError",
                    res->error ? res->error : "list failed");
        return;
    }
    int rc = finish_list(inf, res->body, res->body_len);
    is_map_free(&inf->listed__, NULL);
    is_map_init(&inf->listed__);
    if (rc != IS_OK) {
        retry_later(inf, "list", 0, "InternalError",
                    rc == IS_ENOMEM ? "out of memory storing a list" : "the list is not valid JSON");
        return;
    }
    inf->failures__ = 0;
    inf->synced__ = 1;
    if (inf->handlers.on_synced) inf->handlers.on_synced(inf);
    if (inf->state__ == ST_LISTING) start_watch(inf);
}

static void start_list(is_informer_t *inf) {
    is_kres_t r = resource(inf);
    is_kapi_opts_t o = {
        .namespace = inf->namespace__, .label_selector = inf->label_selector__,
        .field_selector = inf->field_selector__, .limit = inf->page_size__,
        .drop_managed_fields = 1,
    };
    inf->state__ = ST_LISTING;
    /* Page by page: a list of 10,000 objects is never held whole. */
    is_map_free(&inf->listed__, NULL);
    is_map_init(&inf->listed__);
    int rc = is_kapi_list_pages(inf->cluster__, &r, &o, on_list_page, on_list_done, inf, &inf->list__);
    if (rc != IS_OK) retry_later(inf, "list", 0, "InternalError", is_strerror(rc));
}

static void on_retry(is_timer_t *t) {
    is_informer_t *inf = t->data;
    /* Without a resourceVersion there is nothing to resume: list again. */
    if (inf->rv__ && inf->synced__) start_watch(inf);
    else start_list(inf);
}

static int resync_one(const char *key, const char *obj, size_t len, void *ud) {
    is_informer_t *inf = ud;
    if (inf->handlers.on_update) inf->handlers.on_update(inf, key, obj, len, obj, len);
    return 0;
}

static void on_resync(is_timer_t *t) {
    is_informer_t *inf = t->data;
    if (inf->synced__) is_informer_each(inf, resync_one, inf);
    is_timer_start(&inf->resync__, inf->resync_ms__);
}

int is_informer_start(is_informer_t *inf) {
    if (inf->state__ != ST_IDLE) return IS_EINVAL;
    start_list(inf);
    if (inf->resync_ms__) return is_timer_start(&inf->resync__, inf->resync_ms__);
    return IS_OK;
}

void is_informer_stop(is_informer_t *inf) {
    is_timer_stop(&inf->retry__);
    is_timer_stop(&inf->resync__);
    if (inf->req__) {
        is_http_cancel(inf->req__);
        inf->req__ = NULL;
    }
    if (inf->list__) {
        is_kapi_list_cancel(inf->list__);
        inf->list__ = NULL;
    }
    abort_reset(inf);
    inf->state__ = ST_IDLE;
}

void is_informer_close(is_informer_t *inf) {
    if (inf->cluster__) is_informer_stop(inf);
    is_map_free(&inf->cache__, obj_free);
    is_map_free(&inf->listed__, NULL);
    is_framer_free(&inf->framer__);
    is_free(inf->name__);
    is_free(inf->group__);
    is_free(inf->version__);
    is_free(inf->plural__);
    is_free(inf->namespace__);
    is_free(inf->label_selector__);
    is_free(inf->field_selector__);
    is_free(inf->rv__);
    inf->name__ = NULL;
    inf->cluster__ = NULL;
    inf->rv__ = NULL;
}

int is_informer_synced(const is_informer_t *inf) { return inf->synced__; }
size_t is_informer_count(const is_informer_t *inf) { return inf->cache__.len; }
const char *is_informer_resource_version(const is_informer_t *inf) { return inf->rv__; }

int is_informer_get(const is_informer_t *inf, const char *key, const char **obj, size_t *len) {
    is_informer_obj_t *o = is_map_get(&inf->cache__, key);
    if (!o) return IS_ENOTFOUND;
    *obj = o->json;
    if (len) *len = o->len;
    return IS_OK;
}

int is_informer_each(const is_informer_t *inf,
                     int (*cb)(const char *key, const char *obj, size_t len, void *ud), void *ud) {
    size_t iter = 0;
    const char *key;
    void *value;
    while (is_map_next(&inf->cache__, &iter, &key, &value)) {
        is_informer_obj_t *o = value;
        int rc = cb(key, o->json, o->len, ud);
        if (rc) return rc;
    }
    return IS_OK;
}
