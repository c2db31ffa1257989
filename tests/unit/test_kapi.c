/* Kubernetes API verbs: paths and every query parameter, then real requests
 * against a fake API server on 127.0.0.1: list pagination (merged body,
 * continue without resourceVersion, an expired token on page 2, cancel),
 * delete options, patch content types, create and update paths. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_apiserver.h"
#include "is_alloc.h"
#include "is_buf.h"
#include "is_err.h"
#include "is_json.h"
#include "is_kapi.h"
#include "is_loop.h"
#include "testing.h"

static const is_kres_t pods = { NULL, "v1", "pods", 1 };
static const is_kres_t configmaps = { "", "v1", "configmaps", 1 };
static const is_kres_t requests = { "appstudio.redhat.com", "v1alpha1", "internalrequests", 1 };
static const is_kres_t namespaces = { NULL, "v1", "namespaces", 0 };
static const is_kres_t clusterroles = { "rbac.authorization.k8s.io", "v1", "clusterroles", 0 };

/* The path is_kapi_path builds, in a static buffer for CHECK_STR. */
static const char *path_of(const is_kres_t *r, const is_kapi_opts_t *o) {
    static char out[1024];
    is_buf_t b;
    is_buf_init(&b);
    int rc = is_kapi_path(&b, r, o);
    snprintf(out, sizeof out, "%s", rc == IS_OK && b.data ? b.data : "(error)");
    is_buf_free(&b);
    return out;
}

static void test_paths(void) {
    /* Core group, NULL or "". */
    CHECK_STR(path_of(&pods, NULL), "/api/v1/pods");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .namespace = "ns" }), "/api/v1/namespaces/ns/pods");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p1" }),
              "/api/v1/namespaces/ns/pods/p1");
    CHECK_STR(path_of(&configmaps, &(is_kapi_opts_t){ .namespace = "ns", .name = "cm" }),
              "/api/v1/namespaces/ns/configmaps/cm");
    /* An empty namespace on a namespaced resource means all namespaces. */
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .namespace = "" }), "/api/v1/pods");

    /* Named groups. */
    CHECK_STR(path_of(&requests, NULL), "/apis/appstudio.redhat.com/v1alpha1/internalrequests");
    CHECK_STR(path_of(&requests, &(is_kapi_opts_t){ .namespace = "tenant" }),
              "/apis/appstudio.redhat.com/v1alpha1/namespaces/tenant/internalrequests");
    CHECK_STR(path_of(&requests, &(is_kapi_opts_t){ .namespace = "tenant", .name = "r1",
                                                    .subresource = "status" }),
              "/apis/appstudio.redhat.com/v1alpha1/namespaces/tenant/internalrequests/r1/status");

    /* Cluster-scoped resources ignore a namespace. */
    CHECK_STR(path_of(&namespaces, &(is_kapi_opts_t){ .namespace = "x", .name = "default" }),
              "/api/v1/namespaces/default");
    CHECK_STR(path_of(&clusterroles, &(is_kapi_opts_t){ .namespace = "x", .name = "admin" }),
              "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin");
    CHECK_STR(path_of(&clusterroles, NULL), "/apis/rbac.authorization.k8s.io/v1/clusterroles");

    /* A subresource needs a name; names and namespaces are escaped. */
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .namespace = "ns", .subresource = "status" }),
              "/api/v1/namespaces/ns/pods");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .namespace = "n s", .name = "a/b?c" }),
              "/api/v1/namespaces/n%20s/pods/a%2Fb%3Fc");

    /* Appends rather than replaces. */
    is_buf_t b;
    is_buf_init(&b);
    CHECK_INT(is_buf_appends(&b, "https://h:6443"), IS_OK);
    CHECK_INT(is_kapi_path(&b, &pods, NULL), IS_OK);
    CHECK_STR(b.data, "https://h:6443/api/v1/pods");
    is_buf_free(&b);

    /* A resource needs a version and a plural. */
    is_buf_init(&b);
    CHECK_INT(is_kapi_path(&b, NULL, NULL), IS_EINVAL);
    CHECK_INT(is_kapi_path(&b, &(is_kres_t){ NULL, NULL, "pods", 1 }, NULL), IS_EINVAL);
    CHECK_INT(is_kapi_path(&b, &(is_kres_t){ NULL, "v1", NULL, 1 }, NULL), IS_EINVAL);
    is_buf_free(&b);
}

static void test_query(void) {
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .watch = 1 }), "/api/v1/pods?watch=1");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .watch = 1, .allow_bookmarks = 1 }),
              "/api/v1/pods?watch=1&allowWatchBookmarks=true");
    /* Bookmarks only exist on a watch. */
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .allow_bookmarks = 1 }), "/api/v1/pods");

    /* Selectors are query values: =, ',' and ! are escaped. */
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .label_selector = "app=web,tier!=db,!canary" }),
              "/api/v1/pods?labelSelector=app%3Dweb%2Ctier%21%3Ddb%2C%21canary");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .label_selector = "env in (a,b)" }),
              "/api/v1/pods?labelSelector=env%20in%20%28a%2Cb%29");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .field_selector = "metadata.name=p1,status.phase!=Running" }),
              "/api/v1/pods?fieldSelector=metadata.name%3Dp1%2Cstatus.phase%21%3DRunning");

    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .resource_version = "12345" }),
              "/api/v1/pods?resourceVersion=12345");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .limit = 250 }), "/api/v1/pods?limit=250");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .continue_token = "eyJ2IjoxfQ==" }),
              "/api/v1/pods?continue=eyJ2IjoxfQ%3D%3D");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .timeout_seconds = 290 }),
              "/api/v1/pods?timeoutSeconds=290");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .field_manager = "internal-services" }),
              "/api/v1/pods?fieldManager=internal-services");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .force = 1 }), "/api/v1/pods?force=true");
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .dry_run = "All" }), "/api/v1/pods?dryRun=All");

    /* Zero numbers and empty strings are left out. */
    CHECK_STR(path_of(&pods, &(is_kapi_opts_t){ .limit = 0, .timeout_seconds = -1,
                                                .label_selector = "", .resource_version = "" }),
              "/api/v1/pods");

    /* All at once, in a fixed order. */
    is_kapi_opts_t all = {
        .namespace = "ns", .name = "p1", .subresource = "status",
        .watch = 1, .allow_bookmarks = 1, .label_selector = "a=b", .field_selector = "c=d",
        .resource_version = "7", .limit = 10, .continue_token = "t", .timeout_seconds = 30,
        .field_manager = "fm", .force = 1, .dry_run = "All",
    };
    CHECK_STR(path_of(&pods, &all),
              "/api/v1/namespaces/ns/pods/p1/status?watch=1&allowWatchBookmarks=true"
              "&labelSelector=a%3Db&fieldSelector=c%3Dd&resourceVersion=7&limit=10&continue=t"
              "&timeoutSeconds=30&fieldManager=fm&force=true&dryRun=All");
}

/* ---- requests against the fake API server ---- */

static const char *const status_expired =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"message\":\"The provided continue parameter is too old\",\"reason\":\"Expired\",\"code\":410}";
static const char *const status_not_found =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"message\":\"pods \\\"missing\\\" not found\",\"reason\":\"NotFound\",\"code\":404}";

/* Answers by path: configmaps are listed in three pages, secrets fail on
 * page 2, "broken" is not JSON, pods/missing is a 404. */
static void route(const fake_req_t *req, int *status, char *body, size_t cap, void *ud) {
    (void)ud;
    *status = 200;
    if (strstr(req->uri, "/configmaps")) {
        if (strstr(req->uri, "continue=c1%3D%3D"))
            snprintf(body, cap, "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"77\","
                                "\"continue\":\"c2\"},\"items\":[{\"metadata\":{\"name\":\"c\",\"managedFields\":[{}]}},"
                                "{\"metadata\":{\"name\":\"d\"}}]}");
        else if (strstr(req->uri, "continue=c2"))
            snprintf(body, cap, "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"78\","
                                "\"continue\":\"\"},\"items\":[{\"metadata\":{\"name\":\"e\"}}]}");
        else
            snprintf(body, cap, "{\"kind\":\"ConfigMapList\",\"metadata\":{\"resourceVersion\":\"77\","
                                "\"continue\":\"c1==\"},\"items\":[{\"metadata\":{\"name\":\"a\"}},"
                                "{\"metadata\":{\"name\":\"b\",\"labels\":{\"x\":\"[1,2]\"}}}]}");
    } else if (strstr(req->uri, "/secrets")) {
        if (strstr(req->uri, "continue=")) {
            *status = 410;
            snprintf(body, cap, "%s", status_expired);
        } else {
            snprintf(body, cap, "{\"kind\":\"SecretList\",\"metadata\":{\"resourceVersion\":\"5\","
                                "\"continue\":\"s1\"},\"items\":[{\"metadata\":{\"name\":\"s\"}}]}");
        }
    } else if (strstr(req->uri, "/services")) {
        snprintf(body, cap, "{\"kind\":\"ServiceList\",\"metadata\":{\"resourceVersion\":\"9\"},\"items\":[]}");
    } else if (strstr(req->uri, "/endpoints")) {
        snprintf(body, cap, "this is not JSON");
    } else if (strstr(req->uri, "/pods/missing")) {
        *status = 404;
        snprintf(body, cap, "%s", status_not_found);
    } else {
        snprintf(body, cap, "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p1\"},\"method\":\"%s\"}",
                 req->method);
    }
}

typedef struct {
    int calls;
    long code;
    char *body;
    char reason[64];
    char message[256];
    int had_status;
    int had_req;
} outcome_t;

static void outcome_free(outcome_t *o) {
    is_free(o->body);
    memset(o, 0, sizeof *o);
}

static void on_done(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    outcome_t *o = ud;
    o->calls++;
    o->code = res->code;
    o->had_req = req != NULL;
    is_free(o->body);
    o->body = is_strndup(res->body ? res->body : "", res->body ? res->body_len : 0);
    o->had_status = res->status != NULL;
    if (res->status) {
        snprintf(o->reason, sizeof o->reason, "%s", res->status->reason);
        snprintf(o->message, sizeof o->message, "%s", res->status->message);
    }
}

/* Runs the loop until *calls reaches want, or gives up after a few seconds. */
static void run_until(is_loop_t *loop, const int *calls, int want) {
    is_loop_update_time(loop);
    uint64_t deadline = is_loop_now(loop) + 5000;
    while (*calls < want && is_loop_now(loop) < deadline) {
        is_loop_run_once(loop, 20);
        is_loop_update_time(loop);
    }
}

typedef struct {
    is_loop_t loop;
    is_cluster_t cluster;
    fake_api_t api;
} env_t;

static int env_init(env_t *e) {
    if (is_loop_init(&e->loop) != IS_OK) return -1;
    if (fake_api_start(&e->api, route, NULL) != 0) return -1;
    return fake_cluster_init(&e->cluster, &e->loop, "test", e->api.port) == IS_OK ? 0 : -1;
}

static void env_close(env_t *e) {
    is_cluster_close(&e->cluster);
    fake_api_stop(&e->api);
    is_loop_close(&e->loop);
}

static void test_list_pagination(env_t *e) {
    fake_api_reset(&e->api);
    outcome_t out = {0};
    char selector[32];
    snprintf(selector, sizeof selector, "app=web");
    is_kapi_opts_t o = { .namespace = "ns", .label_selector = selector, .resource_version = "0",
                         .limit = 2, .name = "ignored", .watch = 1 };
    is_kapi_list_t *l = NULL;
    CHECK_INT(is_kapi_list(&e->cluster, &configmaps, &o, on_done, &out, &l), IS_OK);
    CHECK(l != NULL);
    /* Later pages are built from the list's own copies. */
    memset(selector, 'X', sizeof selector - 1);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.calls, 1);
    CHECK_INT(out.code, 200);
    CHECK(!out.had_status);
    CHECK_STR(out.body, "{\"apiVersion\":\"v1\",\"kind\":\"List\","
                        "\"items\":[{\"metadata\":{\"name\":\"a\"}},"
                        "{\"metadata\":{\"name\":\"b\",\"labels\":{\"x\":\"[1,2]\"}}},"
                        "{\"metadata\":{\"name\":\"c\",\"managedFields\":[{}]}},{\"metadata\":{\"name\":\"d\"}},"
                        "{\"metadata\":{\"name\":\"e\"}}],\"metadata\":{\"resourceVersion\":\"78\"}}");
    CHECK_INT(fake_api_count(&e->api), 3);
    /* The first page pins the snapshot with resourceVersion; the others
     * carry only the continue token. A list never watches nor names. */
    CHECK_STR(fake_api_req(&e->api, 0).uri,
              "/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dweb&resourceVersion=0&limit=2");
    CHECK_STR(fake_api_req(&e->api, 1).uri,
              "/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dweb&limit=2&continue=c1%3D%3D");
    CHECK_STR(fake_api_req(&e->api, 2).uri,
              "/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dweb&limit=2&continue=c2");
    for (int i = 0; i < 3; i++) CHECK_STR(fake_api_req(&e->api, i).method, "GET");
    outcome_free(&out);

    /* Options a list does not take are neither sent nor kept: the caller's
     * strings may be freed while pages are still to come. */
    fake_api_reset(&e->api);
    char *manager = is_strdup("fm");
    char *dry_run = is_strdup("All");
    o = (is_kapi_opts_t){ .namespace = "ns", .limit = 2, .field_manager = manager,
                          .dry_run = dry_run, .force = 1, .propagation_policy = "Orphan" };
    CHECK_INT(is_kapi_list(&e->cluster, &configmaps, &o, on_done, &out, NULL), IS_OK);
    is_free(manager);
    is_free(dry_run);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.calls, 1);
    CHECK_INT(out.code, 200);
    CHECK_INT(fake_api_count(&e->api), 3);
    CHECK_STR(fake_api_req(&e->api, 0).uri, "/api/v1/namespaces/ns/configmaps?limit=2");
    CHECK_STR(fake_api_req(&e->api, 2).uri, "/api/v1/namespaces/ns/configmaps?limit=2&continue=c2");
    outcome_free(&out);

    /* drop_managed_fields: the items come without metadata.managedFields. */
    fake_api_reset(&e->api);
    o = (is_kapi_opts_t){ .namespace = "ns", .limit = 2, .drop_managed_fields = 1 };
    CHECK_INT(is_kapi_list(&e->cluster, &configmaps, &o, on_done, &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.code, 200);
    CHECK(out.body && strstr(out.body, "{\"metadata\":{\"name\":\"c\"}},{\"metadata\":{\"name\":\"d\"}}") != NULL);
    CHECK(out.body && strstr(out.body, "managedFields") == NULL);
    outcome_free(&out);

    /* Without a limit, pages of 500; an empty list is still a List. */
    fake_api_reset(&e->api);
    CHECK_INT(is_kapi_list(&e->cluster, &(is_kres_t){ NULL, "v1", "services", 1 }, NULL, on_done,
                           &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.calls, 1);
    CHECK_INT(out.code, 200);
    CHECK_STR(out.body, "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[],"
                        "\"metadata\":{\"resourceVersion\":\"9\"}}");
    CHECK_STR(fake_api_req(&e->api, 0).uri, "/api/v1/services?limit=500");
    outcome_free(&out);
}

/* Names of each page's items, "|" between pages; a set error stops. */
typedef struct {
    char seen[256];
    int fail_on_page;
    int pages;
} pages_t;

static int on_page(const is_json_t *doc, int items, void *ud) {
    pages_t *p = ud;
    if (++p->pages == p->fail_on_page) return IS_ELIMIT;
    if (p->pages > 1) strncat(p->seen, "|", sizeof p->seen - strlen(p->seen) - 1);
    int t = items + 1;
    for (int i = 0; i < doc->toks[items].size; i++, t = doc->toks[t].next) {
        char *name = NULL;
        if (is_json_strdup(doc, is_json_path(doc, t, "metadata.name"), &name) == IS_OK)
            strncat(p->seen, name, sizeof p->seen - strlen(p->seen) - 1);
        is_free(name);
    }
    return IS_OK;
}

typedef struct {
    outcome_t out;
    pages_t pages;
} paged_t;

static void paged_done(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    on_done(req, res, &((paged_t *)ud)->out);
}

static int paged_page(const is_json_t *doc, int items, void *ud) {
    return on_page(doc, items, &((paged_t *)ud)->pages);
}

static void test_list_pages(env_t *e) {
    /* Each page goes to the callback as it comes; done's List is empty. */
    fake_api_reset(&e->api);
    paged_t p = {0};
    is_kapi_opts_t o = { .namespace = "ns", .limit = 2 };
    CHECK_INT(is_kapi_list_pages(&e->cluster, &configmaps, &o, paged_page, paged_done, &p, NULL), IS_OK);
    run_until(&e->loop, &p.out.calls, 1);
    CHECK_INT(p.out.code, 200);
    CHECK_STR(p.pages.seen, "ab|cd|e");
    CHECK_STR(p.out.body, "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[],"
                          "\"metadata\":{\"resourceVersion\":\"78\"}}");
    outcome_free(&p.out);

    /* A page the callback refuses ends the list with its error. */
    fake_api_reset(&e->api);
    p = (paged_t){ .pages = { .fail_on_page = 2 } };
    CHECK_INT(is_kapi_list_pages(&e->cluster, &configmaps, &o, paged_page, paged_done, &p, NULL), IS_OK);
    run_until(&e->loop, &p.out.calls, 1);
    CHECK_INT(p.out.calls, 1);
    CHECK_INT(p.out.code, 0);
    CHECK_STR(p.pages.seen, "ab");
    CHECK_INT(fake_api_count(&e->api), 2);
    outcome_free(&p.out);
}

static void test_list_errors(env_t *e) {
    /* 410 on page 2: one done call with the Status of the failed page. */
    fake_api_reset(&e->api);
    outcome_t out = {0};
    CHECK_INT(is_kapi_list(&e->cluster, &(is_kres_t){ NULL, "v1", "secrets", 1 },
                           &(is_kapi_opts_t){ .namespace = "ns", .limit = 1 }, on_done, &out, NULL),
              IS_OK);
    run_until(&e->loop, &out.calls, 1);
    /* A little longer: nothing else may arrive. */
    for (int i = 0; i < 5; i++) is_loop_run_once(&e->loop, 10);
    CHECK_INT(out.calls, 1);
    CHECK_INT(out.code, 410);
    CHECK(out.had_status);
    CHECK_STR(out.reason, "Expired");
    CHECK_STR(out.message, "The provided continue parameter is too old");
    CHECK_STR(out.body, status_expired);
    CHECK_INT(fake_api_count(&e->api), 2);
    CHECK_STR(fake_api_req(&e->api, 1).uri, "/api/v1/namespaces/ns/secrets?limit=1&continue=s1");
    outcome_free(&out);

    /* A page that is not JSON fails the list without a request. */
    CHECK_INT(is_kapi_list(&e->cluster, &(is_kres_t){ NULL, "v1", "endpoints", 1 }, NULL, on_done,
                           &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.calls, 1);
    CHECK_INT(out.code, 0);
    CHECK(!out.had_req);
    CHECK(out.had_status);
    CHECK(strstr(out.message, "not valid JSON") != NULL);
    outcome_free(&out);

    /* Cancelled before the answer: done never runs. */
    fake_api_reset(&e->api);
    is_kapi_list_t *l = NULL;
    CHECK_INT(is_kapi_list(&e->cluster, &configmaps, &(is_kapi_opts_t){ .limit = 2 }, on_done, &out,
                           &l), IS_OK);
    is_kapi_list_cancel(l);
    is_kapi_list_cancel(NULL);
    for (int i = 0; i < 10; i++) is_loop_run_once(&e->loop, 10);
    CHECK_INT(out.calls, 0);
    outcome_free(&out);
}

static void test_list_transport_error(is_loop_t *loop) {
    is_cluster_t down;
    CHECK_INT(fake_cluster_init(&down, loop, "down", fake_refused_port()), IS_OK);
    outcome_t out = {0};
    CHECK_INT(is_kapi_list(&down, &pods, NULL, on_done, &out, NULL), IS_OK);
    run_until(loop, &out.calls, 1);
    CHECK_INT(out.calls, 1);
    CHECK_INT(out.code, 0);
    CHECK_STR(out.reason, "TransportError");
    outcome_free(&out);
    is_cluster_close(&down);
}

static void test_get(env_t *e) {
    fake_api_reset(&e->api);
    outcome_t out = {0};
    is_http_req_t *req = NULL;
    CHECK_INT(is_kapi_get(&e->cluster, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p1" },
                          on_done, &out, &req), IS_OK);
    CHECK(req != NULL);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.code, 200);
    CHECK(!out.had_status);
    CHECK_STR(out.body, "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"p1\"},\"method\":\"GET\"}");
    CHECK_STR(fake_api_req(&e->api, 0).uri, "/api/v1/namespaces/ns/pods/p1");
    outcome_free(&out);

    CHECK_INT(is_kapi_get(&e->cluster, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "missing" },
                          on_done, &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.code, 404);
    CHECK_STR(out.reason, "NotFound");
    CHECK_STR(out.message, "pods \"missing\" not found");
    outcome_free(&out);

    CHECK_INT(is_kapi_get(&e->cluster, &(is_kres_t){ NULL, NULL, "pods", 1 }, NULL, on_done, &out, NULL),
              IS_EINVAL);
    CHECK_INT(out.calls, 0);
}

/* Every buffer has a cap: a body past the cluster's max_body fails the
 * request (success and error bodies alike), and a paged list past max_list
 * fails the list; each names what it was and the limit. */
static void test_caps(env_t *e) {
    outcome_t out = {0};
    size_t saved_body = e->cluster.max_body, saved_list = e->cluster.max_list;
    CHECK_INT(saved_body, IS_HTTP_MAX_BODY);
    CHECK_INT(saved_list, IS_HTTP_MAX_LIST);

    e->cluster.max_body = 40;
    CHECK_INT(is_kapi_get(&e->cluster, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p1" },
                          on_done, &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.code, 0);
    CHECK_STR(out.reason, "ResponseTooLarge");
    CHECK(strstr(out.message, "GET ") != NULL);
    CHECK(strstr(out.message, "/api/v1/namespaces/ns/pods/p1: response body exceeds the limit of 40 bytes") != NULL);
    outcome_free(&out);

    /* An error body too (the 404's Status is longer than 40 bytes). */
    CHECK_INT(is_kapi_get(&e->cluster, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "missing" },
                          on_done, &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.code, 0);
    CHECK_STR(out.reason, "ResponseTooLarge");
    outcome_free(&out);

    /* Within the cap it works as before. */
    e->cluster.max_body = 200;
    CHECK_INT(is_kapi_get(&e->cluster, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p1" },
                          on_done, &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.code, 200);
    outcome_free(&out);
    e->cluster.max_body = saved_body;

    /* The list's pages each fit, their items together do not. */
    e->cluster.max_list = 60;
    CHECK_INT(is_kapi_list(&e->cluster, &configmaps, &(is_kapi_opts_t){ .limit = 2 }, on_done, &out, NULL),
              IS_OK);
    run_until(&e->loop, &out.calls, 1);
    CHECK_INT(out.calls, 1);
    CHECK_INT(out.code, 0);
    CHECK_STR(out.message, "list of configmaps exceeds the limit of 60 bytes");
    outcome_free(&out);
    e->cluster.max_list = saved_list;
}

/* Waits for the request in flight to succeed; returns what the server saw. */
static fake_req_t seen(env_t *e, outcome_t *out) {
    run_until(&e->loop, &out->calls, 1);
    CHECK_INT(out->calls, 1);
    CHECK_INT(out->code, 200);
    outcome_free(out);
    fake_req_t r = fake_api_req(&e->api, fake_api_count(&e->api) - 1);
    return r;
}

static void test_delete(env_t *e) {
    outcome_t out = {0};
    is_kapi_opts_t o = { .namespace = "ns", .name = "p1", .propagation_policy = "Foreground",
                         .precondition_uid = "u-1", .precondition_rv = "42" };
    CHECK_INT(is_kapi_delete(&e->cluster, &pods, &o, on_done, &out, NULL), IS_OK);
    fake_req_t r = seen(e, &out);
    CHECK_STR(r.method, "DELETE");
    CHECK_STR(r.uri, "/api/v1/namespaces/ns/pods/p1");
    CHECK_STR(r.content_type, "application/json");
    CHECK_STR(r.body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\",\"propagationPolicy\":\"Foreground\","
                      "\"preconditions\":{\"uid\":\"u-1\",\"resourceVersion\":\"42\"}}");

    o = (is_kapi_opts_t){ .namespace = "ns", .name = "p1", .precondition_rv = "42" };
    CHECK_INT(is_kapi_delete(&e->cluster, &pods, &o, on_done, &out, NULL), IS_OK);
    r = seen(e, &out);
    CHECK_STR(r.body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
                      "\"preconditions\":{\"resourceVersion\":\"42\"}}");

    o = (is_kapi_opts_t){ .name = "p1", .namespace = "ns", .precondition_uid = "a\"b",
                          .propagation_policy = "Orphan" };
    CHECK_INT(is_kapi_delete(&e->cluster, &pods, &o, on_done, &out, NULL), IS_OK);
    r = seen(e, &out);
    CHECK_STR(r.body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\",\"propagationPolicy\":\"Orphan\","
                      "\"preconditions\":{\"uid\":\"a\\\"b\"}}");

    CHECK_INT(is_kapi_delete(&e->cluster, &namespaces, &(is_kapi_opts_t){ .name = "gone", .dry_run = "All" },
                             on_done, &out, NULL), IS_OK);
    r = seen(e, &out);
    CHECK_STR(r.uri, "/api/v1/namespaces/gone?dryRun=All");
    CHECK_STR(r.body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\"}");

    CHECK_INT(is_kapi_delete(&e->cluster, &pods, NULL, on_done, &out, NULL), IS_OK);
    r = seen(e, &out);
    CHECK_STR(r.uri, "/api/v1/pods");
    CHECK_STR(r.body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\"}");
}

static void test_patch(env_t *e) {
    static const struct { is_patch_type_t type; const char *ct; } types[] = {
        { IS_PATCH_MERGE, "application/merge-patch+json" },
        { IS_PATCH_JSON, "application/json-patch+json" },
        { IS_PATCH_STRATEGIC, "application/strategic-merge-patch+json" },
        { IS_PATCH_APPLY, "application/apply-patch+yaml" },
    };
    const char *body = "{\"metadata\":{\"labels\":{\"a\":\"b\"}}}";
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        outcome_t out = {0};
        is_kapi_opts_t o = { .namespace = "ns", .name = "r1", .field_manager = "me" };
        CHECK_INT(is_kapi_patch(&e->cluster, &requests, &o, types[i].type, body, strlen(body), on_done,
                                &out, NULL), IS_OK);
        fake_req_t r = seen(e, &out);
        CHECK_STR(r.method, "PATCH");
        CHECK_STR(r.content_type, types[i].ct);
        CHECK_STR(r.body, body);
        CHECK_STR(r.uri, "/apis/appstudio.redhat.com/v1alpha1/namespaces/ns/internalrequests/r1?fieldManager=me");
    }

    /* Server-side apply always names a field manager; force is passed on. */
    outcome_t out = {0};
    CHECK_INT(is_kapi_patch(&e->cluster, &requests,
                            &(is_kapi_opts_t){ .namespace = "ns", .name = "r1", .subresource = "status",
                                               .force = 1 },
                            IS_PATCH_APPLY, body, strlen(body), on_done, &out, NULL), IS_OK);
    fake_req_t r = seen(e, &out);
    CHECK_STR(r.uri, "/apis/appstudio.redhat.com/v1alpha1/namespaces/ns/internalrequests/r1/status"
                     "?fieldManager=internal-services&force=true");
    CHECK_INT(is_kapi_patch(&e->cluster, &pods, NULL, IS_PATCH_APPLY, body, strlen(body), on_done, &out,
                            NULL), IS_OK);
    r = seen(e, &out);
    CHECK_STR(r.uri, "/api/v1/pods?fieldManager=internal-services");
    /* Other patch types get no default manager. */
    CHECK_INT(is_kapi_patch(&e->cluster, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p" },
                            IS_PATCH_MERGE, body, strlen(body), on_done, &out, NULL), IS_OK);
    r = seen(e, &out);
    CHECK_STR(r.uri, "/api/v1/namespaces/ns/pods/p");

    int before = fake_api_count(&e->api);
    CHECK_INT(is_kapi_patch(&e->cluster, &pods, NULL, (is_patch_type_t)0, body, strlen(body), on_done,
                            &out, NULL), IS_EINVAL);
    CHECK_INT(is_kapi_patch(&e->cluster, &pods, NULL, (is_patch_type_t)99, body, strlen(body), on_done,
                            &out, NULL), IS_EINVAL);
    for (int i = 0; i < 5; i++) is_loop_run_once(&e->loop, 10);
    CHECK_INT(out.calls, 0);
    CHECK_INT(fake_api_count(&e->api), before);
}

static void test_create_update(env_t *e) {
    const char *body = "{\"metadata\":{\"name\":\"r1\"}}";
    outcome_t out = {0};
    /* A POST goes to the collection: the name is in the body. */
    CHECK_INT(is_kapi_create(&e->cluster, &requests,
                             &(is_kapi_opts_t){ .namespace = "ns", .name = "r1", .subresource = "status",
                                                .field_manager = "fm" },
                             body, strlen(body), on_done, &out, NULL), IS_OK);
    fake_req_t r = seen(e, &out);
    CHECK_STR(r.method, "POST");
    CHECK_STR(r.uri, "/apis/appstudio.redhat.com/v1alpha1/namespaces/ns/internalrequests?fieldManager=fm");
    CHECK_STR(r.content_type, "application/json");
    CHECK_STR(r.body, body);

    CHECK_INT(is_kapi_create(&e->cluster, &namespaces, NULL, body, strlen(body), on_done, &out, NULL),
              IS_OK);
    r = seen(e, &out);
    CHECK_STR(r.uri, "/api/v1/namespaces");

    CHECK_INT(is_kapi_update(&e->cluster, &requests,
                             &(is_kapi_opts_t){ .namespace = "ns", .name = "r1", .subresource = "status" },
                             body, strlen(body), on_done, &out, NULL), IS_OK);
    r = seen(e, &out);
    CHECK_STR(r.method, "PUT");
    CHECK_STR(r.uri, "/apis/appstudio.redhat.com/v1alpha1/namespaces/ns/internalrequests/r1/status");
    CHECK_STR(r.content_type, "application/json");
    CHECK_STR(r.body, body);
}

/* Each attempt counts in rest_client_requests_total by code, method and
 * host:port, and is timed per verb and host; a refused connection is
 * "<error>". */
static void test_metrics(env_t *e) {
    is_metrics_t reg;
    is_metrics_init(&reg);
    CHECK_INT(is_cluster_set_metrics(&e->cluster, &reg), IS_OK);
    outcome_t out = {0};
    CHECK_INT(is_kapi_get(&e->cluster, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "p1" },
                          on_done, &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    outcome_free(&out);
    CHECK_INT(is_kapi_get(&e->cluster, &pods, &(is_kapi_opts_t){ .namespace = "ns", .name = "missing" },
                          on_done, &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    outcome_free(&out);
    int p = e->api.port;
    CHECK(testing_sample(&reg, "rest_client_requests_total{code=\"200\",method=\"GET\",host=\"127.0.0.1:%d\"} ", p) == 1);
    CHECK(testing_sample(&reg, "rest_client_requests_total{code=\"404\",method=\"GET\",host=\"127.0.0.1:%d\"} ", p) == 1);
    CHECK(testing_sample(&reg, "rest_client_request_duration_seconds_count{verb=\"GET\",host=\"127.0.0.1:%d\"} ", p) == 2);
    CHECK(testing_sample(&reg, "rest_client_request_duration_seconds_bucket{verb=\"GET\",host=\"127.0.0.1:%d\",le=\"60\"} ", p) == 2);

    is_cluster_t down;
    int port = fake_refused_port();
    CHECK_INT(fake_cluster_init(&down, &e->loop, "down", port), IS_OK);
    CHECK_INT(is_cluster_set_metrics(&down, &reg), IS_OK);
    CHECK_INT(is_kapi_list(&down, &pods, NULL, on_done, &out, NULL), IS_OK);
    run_until(&e->loop, &out.calls, 1);
    outcome_free(&out);
    CHECK(testing_sample(&reg, "rest_client_requests_total{code=\"<error>\",method=\"GET\",host=\"127.0.0.1:%d\"} ", port) == 1);
    is_cluster_close(&down);
    /* The last request of the cluster was made: reg may go first. */
    is_metrics_free(&reg);
}

#define RUN_WITH(test, arg) do { fprintf(stderr, "-- %s\n", #test); test(arg); } while (0)

static void test_server(void) {
    size_t before = is_alloc_used();
    env_t e;
    if (env_init(&e) != 0) {
        CHECK(!"fake API server did not start");
        return;
    }
    RUN_WITH(test_list_pagination, &e);
    RUN_WITH(test_list_pages, &e);
    RUN_WITH(test_list_errors, &e);
    RUN_WITH(test_list_transport_error, &e.loop);
    RUN_WITH(test_get, &e);
    RUN_WITH(test_caps, &e);
    RUN_WITH(test_delete, &e);
    RUN_WITH(test_patch, &e);
    RUN_WITH(test_create_update, &e);
    RUN_WITH(test_metrics, &e);
    env_close(&e);
    CHECK_INT(is_alloc_used(), before);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    size_t start = is_alloc_used();
    RUN(test_paths);
    RUN(test_query);
    RUN(test_server);
    CHECK_INT(is_alloc_used(), start);
    curl_global_cleanup();
    TESTING_DONE();
}
