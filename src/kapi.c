/* Kubernetes API verbs: paths, queries and content types over is_http. */
#include "is_kapi.h"

#include <stdio.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_json.h"

static int add_query(is_buf_t *b, int *first, const char *key, const char *value) {
    if (!value || !value[0]) return IS_OK;
    int rc = is_buf_appends(b, *first ? "?" : "&");
    *first = 0;
    if (rc == IS_OK) rc = is_buf_appends(b, key);
    if (rc == IS_OK) rc = is_buf_appends(b, "=");
    if (rc == IS_OK) rc = is_buf_append_urlenc(b, value);
    return rc;
}

static int add_query_int(is_buf_t *b, int *first, const char *key, long value) {
    char num[32];
    if (value <= 0) return IS_OK;
    snprintf(num, sizeof num, "%ld", value);
    return add_query(b, first, key, num);
}

int is_kapi_path(is_buf_t *out, const is_kres_t *r, const is_kapi_opts_t *o) {
    static const is_kapi_opts_t none;
    if (!r || !r->version || !r->plural) return IS_EINVAL;
    if (!o) o = &none;
    int rc;
    if (r->group && r->group[0])
        rc = is_buf_printf(out, "/apis/%s/%s", r->group, r->version);
    else
        rc = is_buf_printf(out, "/api/%s", r->version);
    if (rc == IS_OK && r->namespaced && o->namespace && o->namespace[0]) {
        rc = is_buf_appends(out, "/namespaces/");
        if (rc == IS_OK) rc = is_buf_append_urlenc(out, o->namespace);
    }
    if (rc == IS_OK) rc = is_buf_printf(out, "/%s", r->plural);
    if (rc == IS_OK && o->name && o->name[0]) {
        rc = is_buf_appends(out, "/");
        if (rc == IS_OK) rc = is_buf_append_urlenc(out, o->name);
        if (rc == IS_OK && o->subresource && o->subresource[0])
            rc = is_buf_printf(out, "/%s", o->subresource);
    }
    if (rc != IS_OK) return rc;

    int first = 1;
    if (o->watch) rc = add_query(out, &first, "watch", "1");
    if (rc == IS_OK && o->watch && o->allow_bookmarks)
        rc = add_query(out, &first, "allowWatchBookmarks", "true");
    if (rc == IS_OK) rc = add_query(out, &first, "labelSelector", o->label_selector);
    if (rc == IS_OK) rc = add_query(out, &first, "fieldSelector", o->field_selector);
    if (rc == IS_OK) rc = add_query(out, &first, "resourceVersion", o->resource_version);
    if (rc == IS_OK) rc = add_query_int(out, &first, "limit", o->limit);
    if (rc == IS_OK) rc = add_query(out, &first, "continue", o->continue_token);
    if (rc == IS_OK) rc = add_query_int(out, &first, "timeoutSeconds", o->timeout_seconds);
    if (rc == IS_OK) rc = add_query(out, &first, "fieldManager", o->field_manager);
    if (rc == IS_OK && o->force) rc = add_query(out, &first, "force", "true");
    if (rc == IS_OK) rc = add_query(out, &first, "dryRun", o->dry_run);
    return rc;
}

static int send_request(is_cluster_t *c, const char *method, const is_kres_t *r, const is_kapi_opts_t *o,
                const char *body, size_t len, const char *content_type,
                is_http_done_cb done, void *ud, is_http_req_t **out) {
    is_buf_t path;
    is_buf_init(&path);
    int rc = is_kapi_path(&path, r, o);
    if (rc == IS_OK) {
        is_http_opts_t h = {
            .method = method, .path = path.data, .body = body, .body_len = len,
            .content_type = content_type, .timeout_ms = 60000,
        };
        rc = is_http_request(c, &h, done, ud, out);
    }
    is_buf_free(&path);
    return rc;
}

int is_kapi_get(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                is_http_done_cb done, void *ud, is_http_req_t **out) {
    return send_request(c, "GET", r, o, NULL, 0, NULL, done, ud, out);
}

int is_kapi_create(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                   const char *body, size_t len, is_http_done_cb done, void *ud,
                   is_http_req_t **out) {
    /* The name belongs in the body, not in the path of a POST. */
    is_kapi_opts_t post = o ? *o : (is_kapi_opts_t){0};
    post.name = NULL;
    post.subresource = NULL;
    return send_request(c, "POST", r, &post, body, len, "application/json", done, ud, out);
}

int is_kapi_update(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                   const char *body, size_t len, is_http_done_cb done, void *ud,
                   is_http_req_t **out) {
    return send_request(c, "PUT", r, o, body, len, "application/json", done, ud, out);
}

int is_kapi_patch(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                  is_patch_type_t type, const char *body, size_t len,
                  is_http_done_cb done, void *ud, is_http_req_t **out) {
    const char *ct;
    switch (type) {
    case IS_PATCH_MERGE: ct = "application/merge-patch+json"; break;
    case IS_PATCH_JSON: ct = "application/json-patch+json"; break;
    case IS_PATCH_STRATEGIC: ct = "application/strategic-merge-patch+json"; break;
    case IS_PATCH_APPLY: ct = "application/apply-patch+yaml"; break;
    default: return IS_EINVAL;
    }
    /* Server-side apply requires a field manager. */
    if (type == IS_PATCH_APPLY && (!o || !o->field_manager)) {
        is_kapi_opts_t apply = o ? *o : (is_kapi_opts_t){0};
        apply.field_manager = "internal-services";
        return send_request(c, "PATCH", r, &apply, body, len, ct, done, ud, out);
    }
    return send_request(c, "PATCH", r, o, body, len, ct, done, ud, out);
}

int is_kapi_delete(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                   is_http_done_cb done, void *ud, is_http_req_t **out) {
    is_buf_t body;
    is_buf_init(&body);
    int rc = is_buf_appends(&body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\"");
    if (rc == IS_OK && o && o->propagation_policy) {
        rc = is_buf_appends(&body, ",\"propagationPolicy\":");
        if (rc == IS_OK)
            rc = is_buf_append_jsonstr(&body, o->propagation_policy, strlen(o->propagation_policy));
    }
    if (rc == IS_OK && o && (o->precondition_uid || o->precondition_rv)) {
        rc = is_buf_appends(&body, ",\"preconditions\":{");
        if (rc == IS_OK && o->precondition_uid) {
            rc = is_buf_appends(&body, "\"uid\":");
            if (rc == IS_OK)
                rc = is_buf_append_jsonstr(&body, o->precondition_uid, strlen(o->precondition_uid));
        }
        if (rc == IS_OK && o->precondition_rv) {
            rc = is_buf_appends(&body, o->precondition_uid ? ",\"resourceVersion\":" : "\"resourceVersion\":");
            if (rc == IS_OK)
                rc = is_buf_append_jsonstr(&body, o->precondition_rv, strlen(o->precondition_rv));
        }
        if (rc == IS_OK) rc = is_buf_appends(&body, "}");
    }
    if (rc == IS_OK) rc = is_buf_appends(&body, "}");
    if (rc == IS_OK) rc = send_request(c, "DELETE", r, o, body.data, body.len, "application/json", done, ud, out);
    is_buf_free(&body);
    return rc;
}

/* --- list with pagination ------------------------------------------------ */

struct is_kapi_list_s {
    is_cluster_t *cluster;
    is_http_req_t *req;   /* the page in flight */
    is_kres_t res;
    is_kapi_opts_t opts;
    char *continue_token;
    char *resource_version;
    char *owned[7];       /* copies of the caller's strings */
    is_buf_t items;       /* the List so far: its head, then raw items comma separated */
    size_t count;
    is_kapi_page_cb page; /* NULL: items are collected */
    is_http_done_cb done;
    void *ud;
};
typedef struct is_kapi_list_s list_ctx_t;

static void list_ctx_free(list_ctx_t *l) {
    is_free(l->continue_token);
    is_free(l->resource_version);
    for (size_t i = 0; i < sizeof l->owned / sizeof l->owned[0]; i++) is_free(l->owned[i]);
    is_buf_free(&l->items);
    is_free(l);
}

static void list_fail(list_ctx_t *l, long code, const char *message) {
    is_kstatus_t st = { .code = code, .reason = (char *)(code ? is_kstatus_reason_for(code) : "InternalError"),
                        .message = (char *)message };
    is_http_result_t res = { .code = code, .curl_code = CURLE_OK, .error = message, .body = "",
                             .body_len = 0, .status = &st };
    l->done(NULL, &res, l->ud);
}

static int list_next_page(list_ctx_t *l);

static int collect_page(list_ctx_t *l, const char *body, size_t len) {
    is_json_t doc;
    int rc = is_json_parse(&doc, body, len, NULL);
    if (rc != IS_OK) goto out;
    rc = IS_EPARSE;
    if (doc.ntoks == 0 || doc.toks[0].type != IS_JSON_OBJECT) goto out;
    int items = is_json_get(&doc, 0, "items");
    if (l->page && items >= 0 && doc.toks[items].type == IS_JSON_ARRAY) {
        if ((rc = l->page(&doc, items, l->ud)) != IS_OK) goto out;
    } else if (items >= 0 && doc.toks[items].type == IS_JSON_ARRAY) {
        int t = items + 1;
        for (int i = 0; i < doc.toks[items].size; i++) {
            size_t n;
            const char *raw = is_json_raw(&doc, t, &n);
            if (l->items.len + n + 1 > l->cluster->max_list) {
                rc = IS_ELIMIT;
                goto out;
            }
            size_t a = n, b = n;
            if (l->opts.drop_managed_fields &&
                is_json_member_span(&doc, t, "metadata.managedFields", &a, &b) == IS_OK) {
                a -= doc.toks[t].start;
                b -= doc.toks[t].start;
            }
            if (l->count++ && (rc = is_buf_append(&l->items, ",", 1)) != IS_OK) goto out;
            if ((rc = is_buf_append(&l->items, raw, a)) != IS_OK) goto out;
            if ((rc = is_buf_append(&l->items, raw + b, n - b)) != IS_OK) goto out;
            t = doc.toks[t].next;
        }
    }
    is_free(l->continue_token);
    l->continue_token = NULL;
    int cont = is_json_path(&doc, 0, "metadata.continue");
    if (cont >= 0 && doc.toks[cont].type == IS_JSON_STRING && doc.toks[cont].end > doc.toks[cont].start &&
        (rc = is_json_strdup(&doc, cont, &l->continue_token)) != IS_OK)
        goto out;
    int rv = is_json_path(&doc, 0, "metadata.resourceVersion");
    if (rv >= 0 && doc.toks[rv].type == IS_JSON_STRING) {
        is_free(l->resource_version);
        l->resource_version = NULL;
        if ((rc = is_json_strdup(&doc, rv, &l->resource_version)) != IS_OK) goto out;
    }
    rc = IS_OK;
out:
    is_json_free(&doc);
    return rc;
}

static void on_list_page(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    list_ctx_t *l = ud;
    l->req = NULL;
    if (res->code != 200) {
        l->done(req, res, l->ud);
        list_ctx_free(l);
        return;
    }
    int rc = collect_page(l, res->body, res->body_len);
    if (rc != IS_OK) {
        char limit[160];
        snprintf(limit, sizeof limit, "list of %s exceeds the limit of %zu bytes", l->res.plural,
                 l->cluster->max_list);
        list_fail(l, 0, rc == IS_ENOMEM ? "out of memory collecting a list"
                        : rc == IS_ELIMIT ? limit
                        : rc == IS_EPARSE ? "the API server sent a list that is not valid JSON"
                                          : is_strerror(rc));
        list_ctx_free(l);
        return;
    }
    if (l->continue_token) {
        if ((rc = list_next_page(l)) == IS_OK) return;
        list_fail(l, 0, is_strerror(rc));
        list_ctx_free(l);
        return;
    }
    /* The items close the List, then its metadata: the list is built in
     * place, never copied (10,000 objects are tens of MB). */
    rc = is_buf_appends(&l->items, "],\"metadata\":{\"resourceVersion\":");
    const char *rv = l->resource_version ? l->resource_version : "";
    if (rc == IS_OK) rc = is_buf_append_jsonstr(&l->items, rv, strlen(rv));
    if (rc == IS_OK) rc = is_buf_appends(&l->items, "}}");
    if (rc != IS_OK) {
        list_fail(l, 0, "out of memory collecting a list");
    } else {
        is_http_result_t whole = *res;
        whole.body = l->items.data;
        whole.body_len = l->items.len;
        l->done(req, &whole, l->ud);
    }
    list_ctx_free(l);
}

static int list_next_page(list_ctx_t *l) {
    is_kapi_opts_t o = l->opts;
    o.continue_token = l->continue_token;
    /* A continue token pins the snapshot; resourceVersion must not be sent
     * with it. */
    if (l->continue_token) o.resource_version = NULL;
    return is_kapi_get(l->cluster, &l->res, &o, on_list_page, l, &l->req);
}

void is_kapi_list_cancel(is_kapi_list_t *l) {
    if (!l) return;
    is_http_cancel(l->req);
    list_ctx_free(l);
}

int is_kapi_list(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                 is_http_done_cb done, void *ud, is_kapi_list_t **out) {
    return is_kapi_list_pages(c, r, o, NULL, done, ud, out);
}

int is_kapi_list_pages(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                       is_kapi_page_cb page, is_http_done_cb done, void *ud, is_kapi_list_t **out) {
    list_ctx_t *l = is_calloc(1, sizeof *l);
    if (!l) return IS_ENOMEM;
    l->page = page;
    l->cluster = c;
    l->res = *r;
    if (o) l->opts = *o;
    l->opts.name = NULL;
    l->opts.watch = 0;
    /* Options that no list takes are dropped rather than copied: later pages
     * would otherwise read the caller's strings after they are gone. */
    l->opts.subresource = NULL;
    l->opts.continue_token = NULL;
    l->opts.field_manager = NULL;
    l->opts.force = 0;
    l->opts.dry_run = NULL;
    l->opts.propagation_policy = NULL;
    l->opts.precondition_uid = NULL;
    l->opts.precondition_rv = NULL;
    if (l->opts.limit <= 0) l->opts.limit = 500;
    /* Pages are fetched later from the loop; the caller's strings may be gone. */
    const char **fields[] = { &l->opts.namespace, &l->opts.label_selector,
                              &l->opts.field_selector, &l->opts.resource_version,
                              &l->res.group, &l->res.version, &l->res.plural };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (!*fields[i]) continue;
        if (!(l->owned[i] = is_strdup(*fields[i]))) { list_ctx_free(l); return IS_ENOMEM; }
        *fields[i] = l->owned[i];
    }
    l->done = done;
    l->ud = ud;
    is_buf_init(&l->items);
    int rc = is_buf_appends(&l->items, "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[");
    if (rc != IS_OK) {
        list_ctx_free(l);
        return rc;
    }
    rc = list_next_page(l);
    if (rc != IS_OK) list_ctx_free(l);
    else if (out) *out = l;
    return rc;
}
