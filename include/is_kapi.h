/* Kubernetes API verbs over is_http: paths, query strings and content types,
 * so that callers (the informer, the Lua bridge) speak in resources and
 * names, never in URLs. */
#ifndef IS_KAPI_H
#define IS_KAPI_H

#include "is_buf.h"
#include "is_http.h"

typedef struct is_kres_s {
    const char *group;    /* "" or NULL for the core group */
    const char *version;  /* "v1", "v1alpha1" */
    const char *plural;   /* "internalrequests" */
    int namespaced;
} is_kres_t;

typedef enum {
    IS_PATCH_MERGE = 1,   /* application/merge-patch+json */
    IS_PATCH_JSON,        /* application/json-patch+json */
    IS_PATCH_STRATEGIC,   /* application/strategic-merge-patch+json */
    IS_PATCH_APPLY        /* application/apply-patch+yaml (server-side apply) */
} is_patch_type_t;

typedef struct is_kapi_opts_s {
    const char *namespace;       /* NULL = all namespaces / cluster scoped */
    const char *name;
    const char *subresource;     /* "status" */
    const char *label_selector;
    const char *field_selector;
    const char *resource_version;
    int limit;                   /* list page size */
    const char *continue_token;
    int watch;
    int allow_bookmarks;
    int timeout_seconds;
    const char *field_manager;   /* patch/apply/create/update */
    int force;                   /* server-side apply conflicts */
    const char *dry_run;
    /* delete */
    const char *propagation_policy;  /* "Background", "Foreground", "Orphan" */
    const char *precondition_uid;
    const char *precondition_rv;
    /* list: items are kept without metadata.managedFields (see informer.c) */
    int drop_managed_fields;
} is_kapi_opts_t;

/* Appends the path and query for r and o to out. */
int is_kapi_path(is_buf_t *out, const is_kres_t *r, const is_kapi_opts_t *o);

int is_kapi_get(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                is_http_done_cb done, void *ud, is_http_req_t **out);
typedef struct is_kapi_list_s is_kapi_list_t;

/* Lists all pages (limit/continue) and hands done one body shaped like a
 * List: {"kind":"List","metadata":{"resourceVersion":...},"items":[...]}.
 * done may receive a NULL request. *out (may be NULL) allows cancelling. */
int is_kapi_list(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                 is_http_done_cb done, void *ud, is_kapi_list_t **out);

/* Gets each page's items, the array at token items of the parsed page;
 * anything but IS_OK ends the list with that error. */
struct is_json_s;
typedef int (*is_kapi_page_cb)(const struct is_json_s *doc, int items, void *ud);
/* As is_kapi_list, but each page's items go to page as it comes and are not
 * kept: done's List has no items. A list of 10,000 objects is then never
 * held whole. */
int is_kapi_list_pages(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                       is_kapi_page_cb page, is_http_done_cb done, void *ud, is_kapi_list_t **out);
/* Stops a list in progress; its done callback is not called. */
void is_kapi_list_cancel(is_kapi_list_t *l);
/* *out (may be NULL) receives the request so that it can be cancelled. */
int is_kapi_create(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                   const char *body, size_t len, is_http_done_cb done, void *ud,
                   is_http_req_t **out);
/* PUT; with o->subresource = "status" this is the status update. */
int is_kapi_update(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                   const char *body, size_t len, is_http_done_cb done, void *ud,
                   is_http_req_t **out);
int is_kapi_patch(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                  is_patch_type_t type, const char *body, size_t len,
                  is_http_done_cb done, void *ud, is_http_req_t **out);
int is_kapi_delete(is_cluster_t *c, const is_kres_t *r, const is_kapi_opts_t *o,
                   is_http_done_cb done, void *ud, is_http_req_t **out);

#endif
