/* The client at run time: connect, delete earlier requests of a retried
 * step, create, then wait by list+watch. Each phase runs the loop until it
 * is decided; one deadline (-t) spans them all. See is_client.h. */
#include "is_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_http.h"
#include "is_informer.h"
#include "is_json.h"
#include "is_kapi.h"
#include "is_kubeconfig.h"
#include "is_loop.h"
#include "is_map.h"

#define PIPELINERUN_UID_LABEL "internal-services.appstudio.openshift.io/pipelinerun-uid"

static const is_kres_t ir_res = { "appstudio.redhat.com", "v1alpha1", "internalrequests", 1 };

typedef struct client_s {
    const is_client_opts_t *o;
    const char *prog;
    const char *ns;
    is_loop_t loop;
    is_cluster_t cluster;
    is_timer_t deadline;
    int expired;          /* the deadline passed */
    int decided;          /* the phase is over; exit holds the code (-1: go on) */
    int exit;
    int pending;          /* deletes in flight */
    int draining;         /* the loop stops when the last delete is answered */
    int deletes_sent;     /* earlier requests: deleted once */
    struct del_ctx_s *dels; /* deletes in flight, cancelled at exit */
    is_http_req_t *create_req;
    int seen;             /* wait by name: the request was listed once */
    is_map_t reported;    /* name -> last state printed (owned string) */
    char *name;           /* the created request */
} client_t;

static void decide(client_t *c, int code) {
    if (c->decided) return;
    c->decided = 1;
    c->exit = code;
    is_loop_stop(&c->loop);
}

/* Runs the loop until the phase is decided, the deadline passes or a signal
 * arrives: each of them stops it (the deadline timer keeps it alive). */
static void run_phase(client_t *c) {
    if (!c->decided && !c->expired && is_loop_run(&c->loop) != IS_OK)
        fprintf(stderr, "%s: the event loop failed\n", c->prog);
}

static void on_deadline(is_timer_t *t) {
    client_t *c = t->data;
    c->expired = 1;
    is_loop_stop(&c->loop);
}

/* The request waited for by name (-n, or the one just created); NULL when
 * waiting by labels. */
static const char *wait_name(const client_t *c) {
    return c->name ? c->name : c->o->name;
}

static void print_api_error(client_t *c, const char *what, const is_http_result_t *res) {
    if (res->status)
        fprintf(stderr, "%s: %s: %ld %s: %s\n", c->prog, what, res->status->code, res->status->reason,
                res->status->message);
    else
        fprintf(stderr, "%s: %s: %s\n", c->prog, what, res->error ? res->error : "request failed");
}

/* ---- one request, read from its JSON ---- */

typedef struct ir_s {
    char *name, *pipeline_run, *status, *reason, *message, *generic;
    const char *conditions, *results; /* raw JSON in the object's text */
    size_t conditions_len, results_len;
} ir_t;

static void ir_free(ir_t *ir) {
    is_free(ir->name);
    is_free(ir->pipeline_run);
    is_free(ir->status);
    is_free(ir->reason);
    is_free(ir->message);
    is_free(ir->generic);
    memset(ir, 0, sizeof *ir);
}

static int dup_at(const is_json_t *d, int tok, char **out) {
    if (tok < 0 || d->toks[tok].type != IS_JSON_STRING) return IS_OK;
    return is_json_strdup(d, tok, out);
}

/* The state the old scripts print: the Succeeded condition's reason. */
static int ir_read(ir_t *ir, const char *obj, size_t len) {
    is_json_t d;
    memset(ir, 0, sizeof *ir);
    int rc = is_json_parse(&d, obj, len, NULL);
    if (rc == IS_OK) rc = dup_at(&d, is_json_path(&d, 0, "metadata.name"), &ir->name);
    if (rc == IS_OK) rc = dup_at(&d, is_json_path(&d, 0, "status.pipelineRun"), &ir->pipeline_run);
    if (rc == IS_OK) rc = dup_at(&d, is_json_path(&d, 0, "status.results.genericResult"), &ir->generic);
    int res = is_json_path(&d, 0, "status.results");
    if (res >= 0) ir->results = is_json_raw(&d, res, &ir->results_len);
    int conds = is_json_path(&d, 0, "status.conditions");
    if (conds >= 0 && d.toks[conds].type == IS_JSON_ARRAY) {
        ir->conditions = is_json_raw(&d, conds, &ir->conditions_len);
        for (int i = conds + 1, n = 0; rc == IS_OK && n < d.toks[conds].size; i = d.toks[i].next, n++) {
            char *type = NULL;
            if ((rc = dup_at(&d, is_json_get(&d, i, "type"), &type)) != IS_OK) break;
            int succeeded = type && !strcmp(type, "Succeeded");
            is_free(type);
            if (!succeeded) continue;
            rc = dup_at(&d, is_json_get(&d, i, "status"), &ir->status);
            if (rc == IS_OK) rc = dup_at(&d, is_json_get(&d, i, "reason"), &ir->reason);
            if (rc == IS_OK) rc = dup_at(&d, is_json_get(&d, i, "message"), &ir->message);
            break;
        }
    }
    is_json_free(&d);
    if (rc == IS_OK && !ir->name) rc = IS_EPARSE;
    if (rc != IS_OK) ir_free(ir);
    return rc;
}

static int ir_finished(const ir_t *ir) {
    return ir->status && (!strcmp(ir->status, "True") || !strcmp(ir->status, "False"));
}

static int ir_succeeded(const ir_t *ir) {
    return ir->status && !strcmp(ir->status, "True");
}

static const char *ir_state(const ir_t *ir) {
    if (!ir->status) return "no condition yet";
    if (ir_succeeded(ir)) return "succeeded";
    if (!ir_finished(ir)) return "running";
    return ir->reason && ir->reason[0] ? ir->reason : "failed";
}

/* ---- output ---- */

static void append_output_file(client_t *c, const ir_t *ir) {
    char path[512];
    snprintf(path, sizeof path, "/tmp/%s-output.json", ir->name);
    is_buf_t b;
    is_buf_init(&b);
    const char *pr = ir->pipeline_run ? ir->pipeline_run : "";
    int rc = is_buf_appends(&b, "{\"name\":");
    if (rc == IS_OK) rc = is_buf_append_jsonstr(&b, ir->name, strlen(ir->name));
    if (rc == IS_OK) rc = is_buf_appends(&b, ",\"pipelineRun\":");
    if (rc == IS_OK) rc = is_buf_append_jsonstr(&b, pr, strlen(pr));
    if (rc == IS_OK) rc = is_buf_appends(&b, "}\n");
    FILE *f = rc == IS_OK ? fopen(path, "a") : NULL;
    if (!f || fwrite(b.data, 1, b.len, f) != b.len)
        fprintf(stderr, "%s: cannot append to %s\n", c->prog, path);
    if (f) fclose(f);
    is_buf_free(&b);
}

static int write_file(client_t *c, const char *dir, const char *name, const char *data, size_t len) {
    char path[1024];
    if (dir) snprintf(path, sizeof path, "%s/%s", dir, name);
    else snprintf(path, sizeof path, "%s", name);
    FILE *f = fopen(path, "w");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) fprintf(stderr, "%s: cannot write %s\n", c->prog, path);
    return ok ? IS_OK : IS_EIO;
}

static int write_result(client_t *c, const char *name, const char *value) {
    if (!c->o->results_dir) return IS_OK;
    return write_file(c, c->o->results_dir, name, value ? value : "", value ? strlen(value) : 0);
}

/* What a finished wait reports, gathered over every request. */
typedef struct summary_s {
    client_t *c;
    is_buf_t results;     /* by name: that request's results; by label: name -> results */
    is_buf_t names;
    ir_t pick;            /* the first failure, else any: requestReason and requestMessage */
    int n, failed, finished, err;
} summary_t;

static int summarize_one(const char *key, const char *obj, size_t len, void *ud) {
    summary_t *s = ud;
    ir_t ir;
    (void)key;
    if (ir_read(&ir, obj, len) != IS_OK) return 0;
    int by_label = wait_name(s->c) == NULL;
    const char *res = ir.results ? ir.results : "{}";
    size_t res_len = ir.results ? ir.results_len : 2;
    int rc = IS_OK;
    if (by_label) {
        if (s->n) rc = is_buf_appends(&s->results, ",");
        if (rc == IS_OK) rc = is_buf_append_jsonstr(&s->results, ir.name, strlen(ir.name));
        if (rc == IS_OK) rc = is_buf_appends(&s->results, ":");
    }
    if (rc == IS_OK) rc = is_buf_append(&s->results, res, res_len);
    if (rc == IS_OK && s->n) rc = is_buf_appends(&s->names, ",");
    if (rc == IS_OK) rc = is_buf_appends(&s->names, ir.name);
    if (rc != IS_OK) s->err = rc;
    s->n++;
    if (ir_finished(&ir)) s->finished++;
    int failed = ir_finished(&ir) && !ir_succeeded(&ir);
    if (failed) s->failed++;
    if (!s->pick.name || (failed && s->failed == 1)) {
        ir_free(&s->pick);
        s->pick = ir;
    } else {
        ir_free(&ir);
    }
    return 0;
}

static int print_conditions(const char *key, const char *obj, size_t len, void *ud) {
    ir_t ir;
    (void)key;
    (void)ud;
    if (ir_read(&ir, obj, len) != IS_OK) return 0;
    printf("  %s: %.*s\n", ir.name, ir.conditions ? (int)ir.conditions_len : 4,
           ir.conditions ? ir.conditions : "null");
    ir_free(&ir);
    return 0;
}

/* The end of a wait: conditions, the result line, the results JSON. */
static int finish(client_t *c, is_informer_t *inf, const char *result) {
    summary_t s = { .c = c };
    is_buf_init(&s.results);
    is_buf_init(&s.names);
    if (!wait_name(c)) is_buf_appends(&s.results, "{");
    is_informer_each(inf, summarize_one, &s);
    if (!wait_name(c)) is_buf_appends(&s.results, "}");
    if (!s.results.data || s.err) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        is_buf_free(&s.results);
        is_buf_free(&s.names);
        ir_free(&s.pick);
        return IS_ENOMEM;
    }
    printf("Conditions:\n");
    is_informer_each(inf, print_conditions, NULL);
    printf("Result: %s\n", result);
    int rc = IS_OK;
    if (c->o->results_file) rc = write_file(c, NULL, c->o->results_file, s.results.data, s.results.len);
    else printf("%s\n", s.results.data);
    if (rc == IS_OK) rc = write_result(c, "requestName", s.names.data);
    if (rc == IS_OK) rc = write_result(c, "requestReason", s.pick.reason);
    if (rc == IS_OK) rc = write_result(c, "requestMessage", s.pick.message);
    if (rc == IS_OK) rc = write_result(c, "requestResults", s.results.data);
    if (rc == IS_OK) rc = write_result(c, "genericResult", wait_name(c) ? s.pick.generic : NULL);
    fflush(stdout);
    is_buf_free(&s.results);
    is_buf_free(&s.names);
    ir_free(&s.pick);
    return rc;
}

/* ---- phase: wait ---- */

typedef struct tally_s {
    client_t *c;
    int n, finished, failed, err;
} tally_t;

/* Prints each request's state when it changes, and its end once. */
static int tally_one(const char *key, const char *obj, size_t len, void *ud) {
    tally_t *t = ud;
    client_t *c = t->c;
    ir_t ir;
    (void)key;
    int rc = ir_read(&ir, obj, len);
    if (rc == IS_ENOMEM) t->err = rc;
    if (rc != IS_OK) return 0;
    t->n++;
    const char *state = ir_state(&ir);
    const char *last = is_map_get(&c->reported, ir.name);
    if (!last || strcmp(last, state)) {
        printf("  %s: %s\n", ir.name, state);
        if (ir_finished(&ir)) {
            printf("  %s: conditions %.*s\n", ir.name, (int)ir.conditions_len, ir.conditions);
            printf("  %s: pipelineRun %s\n", ir.name, ir.pipeline_run ? ir.pipeline_run : "(none)");
            append_output_file(c, &ir);
        }
        char *copy = is_strdup(state);
        void *old = NULL;
        if (!copy || is_map_set(&c->reported, ir.name, copy, &old) != IS_OK) {
            is_free(copy);
            t->err = IS_ENOMEM;
        }
        is_free(old);
    }
    if (ir_finished(&ir)) t->finished++;
    if (ir_finished(&ir) && !ir_succeeded(&ir)) t->failed++;
    ir_free(&ir);
    return 0;
}

static void evaluate(is_informer_t *inf) {
    client_t *c = inf->data;
    if (!is_informer_synced(inf) || c->decided) return;
    tally_t t = { .c = c };
    is_informer_each(inf, tally_one, &t);
    fflush(stdout);
    if (t.err) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        decide(c, IS_CLIENT_EXIT_USAGE);
        return;
    }
    if (wait_name(c)) {
        if (t.n) c->seen = 1;
        else {
            const char *name = wait_name(c);
            if (c->seen) printf("InternalRequest '%s' was deleted\n", name);
            else fprintf(stderr, "%s: InternalRequest '%s' not found in namespace %s\n", c->prog, name, c->ns);
            decide(c, c->seen ? IS_CLIENT_EXIT_FAILED : IS_CLIENT_EXIT_USAGE);
            return;
        }
    }
    if (!t.n || t.finished < t.n) return;
    printf("All InternalRequests have been completed\n");
    if (t.failed) printf("ERROR: At least one InternalRequest failed\n");
    int rc = finish(c, inf, t.failed ? "failure" : "success");
    decide(c, rc != IS_OK ? IS_CLIENT_EXIT_USAGE : t.failed ? IS_CLIENT_EXIT_FAILED : IS_CLIENT_EXIT_OK);
}

static void w_add(is_informer_t *inf, const char *key, const char *obj, size_t len) {
    (void)key, (void)obj, (void)len;
    evaluate(inf);
}
static void w_update(is_informer_t *inf, const char *key, const char *o, size_t ol, const char *obj, size_t len) {
    (void)key, (void)o, (void)ol, (void)obj, (void)len;
    evaluate(inf);
}
static void w_delete(is_informer_t *inf, const char *key, const char *obj, size_t len) {
    (void)key, (void)obj, (void)len;
    evaluate(inf);
}
static void w_synced(is_informer_t *inf) {
    evaluate(inf);
}

static void w_error(is_informer_t *inf, const char *what, long code, const char *reason,
                    const char *message, uint64_t retry_ms) {
    client_t *c = inf->data;
    fprintf(stderr, "%s: %s failed: %ld %s: %s (retrying in %llu ms)\n", c->prog, what, code, reason,
            message, (unsigned long long)retry_ms);
}

static void on_deleted(is_http_req_t *req, const is_http_result_t *res, void *ud);

typedef struct del_ctx_s {
    client_t *c;
    char *name;
    is_http_req_t *req;
    struct del_ctx_s *next;
} del_ctx_t;

static void del_unlink(client_t *c, del_ctx_t *d) {
    for (del_ctx_t **p = &c->dels; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    c->pending--;
    is_free(d->name);
    is_free(d);
}

static int delete_request(client_t *c, const char *name) {
    del_ctx_t *d = is_calloc(1, sizeof *d);
    if (!d || !(d->name = is_strdup(name))) {
        is_free(d);
        return IS_ENOMEM;
    }
    d->c = c;
    is_kapi_opts_t ko = { .namespace = c->ns, .name = name, .propagation_policy = "Background" };
    int rc = is_kapi_delete(&c->cluster, &ir_res, &ko, on_deleted, d, &d->req);
    if (rc != IS_OK) {
        is_free(d->name);
        is_free(d);
        return rc;
    }
    d->next = c->dels;
    c->dels = d;
    c->pending++;
    return IS_OK;
}

static void on_deleted(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    del_ctx_t *d = ud;
    client_t *c = d->c;
    (void)req;
    if (res->code >= 200 && res->code < 300) printf("InternalRequest '%s' deleted\n", d->name);
    else if (res->code == 404) printf("InternalRequest '%s' already gone\n", d->name);
    else print_api_error(c, "deleting an InternalRequest", res);
    fflush(stdout);
    del_unlink(c, d);
    if (c->draining && c->pending == 0) is_loop_stop(&c->loop);
}

static int delete_unfinished(const char *key, const char *obj, size_t len, void *ud) {
    client_t *c = ud;
    ir_t ir;
    (void)key;
    if (ir_read(&ir, obj, len) != IS_OK) return 0;
    int rc = ir_finished(&ir) ? IS_OK : delete_request(c, ir.name);
    ir_free(&ir);
    return rc;
}

static int join_labels(const is_client_opts_t *o, is_buf_t *sel) {
    int rc = IS_OK;
    for (int i = 0; i < o->nlabels && rc == IS_OK; i++)
        rc = is_buf_printf(sel, "%s%s=%s", i ? "," : "", o->labels[i].key, o->labels[i].value);
    return rc;
}

static int wait_phase(client_t *c) {
    const is_client_opts_t *o = c->o;
    const char *name = wait_name(c);
    is_buf_t sel;
    is_buf_init(&sel);
    int rc = name ? is_buf_printf(&sel, "metadata.name=%s", name) : join_labels(o, &sel);
    if (rc != IS_OK) {
        is_buf_free(&sel);
        return IS_CLIENT_EXIT_USAGE;
    }
    if (name) printf("Waiting for InternalRequest '%s' (timeout %lds)\n", name, o->timeout_s);
    else printf("Waiting for the InternalRequests with labels %s (timeout %lds)\n", sel.data, o->timeout_s);
    fflush(stdout);
    static const is_informer_handlers_t h = { w_add, w_update, w_delete, w_synced, w_error };
    is_informer_opts_t io = {
        .name = "internalrequests", .cluster = &c->cluster, .resource = ir_res, .namespace = c->ns,
        .field_selector = name ? sel.data : NULL, .label_selector = name ? NULL : sel.data,
        .backoff_max_ms = 5000,
    };
    is_informer_t inf;
    c->decided = 0;
    rc = is_informer_init(&inf, &io, &h, c);
    is_buf_free(&sel);
    if (rc == IS_OK) rc = is_informer_start(&inf);
    if (rc != IS_OK) {
        fprintf(stderr, "%s: cannot watch: %s\n", c->prog, is_strerror(rc));
        is_informer_close(&inf);
        return IS_CLIENT_EXIT_USAGE;
    }
    run_phase(c);
    int code = c->exit;
    if (!c->decided && !c->expired) {
        fprintf(stderr, "%s: interrupted\n", c->prog);
        code = IS_CLIENT_EXIT_USAGE;
    } else if (!c->decided) {
        code = IS_CLIENT_EXIT_TIMEOUT;
        printf("ERROR: Timeout while waiting for the InternalRequests to complete\n");
        if (is_informer_synced(&inf)) {
            printf("Conditions:\n");
            is_informer_each(&inf, print_conditions, NULL);
        }
        printf("Result: timeout\n");
        fflush(stdout);
        is_informer_stop(&inf);
        if (o->delete_on_timeout) {
            if (is_informer_each(&inf, delete_unfinished, c) != IS_OK)
                fprintf(stderr, "%s: cannot delete: out of memory\n", c->prog);
            /* Deletes are answered quickly; a minute bounds a dead server. */
            is_timer_start(&c->deadline, 60000);
            c->expired = 0;
            c->draining = 1;
            /* The last answer, the minute or a signal stops the loop. */
            if (c->pending && is_loop_run(&c->loop) != IS_OK)
                fprintf(stderr, "%s: the event loop failed\n", c->prog);
            if (c->pending) fprintf(stderr, "%s: the deletion was not confirmed\n", c->prog);
        }
    }
    is_informer_close(&inf);
    return code;
}

/* ---- phase: delete the requests of an earlier try of the same step ---- */

static void p_check(is_informer_t *inf) {
    client_t *c = inf->data;
    if (is_informer_synced(inf) && is_informer_count(inf) == 0) decide(c, -1);
}

static int p_delete(const char *key, const char *obj, size_t len, void *ud) {
    client_t *c = ud;
    ir_t ir;
    (void)key;
    if (ir_read(&ir, obj, len) != IS_OK) return 0;
    printf("Deleting InternalRequest '%s' of an earlier run (same %s)\n", ir.name, PIPELINERUN_UID_LABEL);
    int rc = delete_request(c, ir.name);
    ir_free(&ir);
    return rc;
}

static void p_synced(is_informer_t *inf) {
    client_t *c = inf->data;
    if (!c->deletes_sent && is_informer_count(inf) > 0) {
        c->deletes_sent = 1;
        if (is_informer_each(inf, p_delete, c) != IS_OK) {
            fprintf(stderr, "%s: cannot delete earlier requests: out of memory\n", c->prog);
            decide(c, IS_CLIENT_EXIT_USAGE);
            return;
        }
        fflush(stdout);
    }
    p_check(inf);
}

static void p_delete_ev(is_informer_t *inf, const char *key, const char *obj, size_t len) {
    (void)key, (void)obj, (void)len;
    p_check(inf);
}

static int delete_earlier(client_t *c, const char *uid) {
    is_buf_t sel;
    is_buf_init(&sel);
    if (is_buf_printf(&sel, "%s=%s", PIPELINERUN_UID_LABEL, uid) != IS_OK) return IS_CLIENT_EXIT_USAGE;
    static const is_informer_handlers_t h = { NULL, NULL, p_delete_ev, p_synced, w_error };
    is_informer_opts_t io = { .name = "earlier", .cluster = &c->cluster, .resource = ir_res,
                              .namespace = c->ns, .label_selector = sel.data, .backoff_max_ms = 5000 };
    is_informer_t inf;
    c->decided = 0;
    int rc = is_informer_init(&inf, &io, &h, c);
    is_buf_free(&sel);
    if (rc == IS_OK) rc = is_informer_start(&inf);
    if (rc == IS_OK) run_phase(c);
    int code = c->decided ? c->exit : c->expired ? IS_CLIENT_EXIT_TIMEOUT : IS_CLIENT_EXIT_USAGE;
    if (rc != IS_OK) {
        fprintf(stderr, "%s: cannot list earlier requests: %s\n", c->prog, is_strerror(rc));
        code = IS_CLIENT_EXIT_USAGE;
    } else if (code == IS_CLIENT_EXIT_TIMEOUT) {
        printf("ERROR: Timeout while waiting for earlier InternalRequests to be deleted\nResult: timeout\n");
    }
    is_informer_close(&inf);
    return code;
}

/* ---- phase: create ---- */

static void on_created(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    client_t *c = ud;
    (void)req;
    c->create_req = NULL;
    if (res->code != 201 && res->code != 200) {
        print_api_error(c, "cannot create the InternalRequest", res);
        decide(c, IS_CLIENT_EXIT_USAGE);
        return;
    }
    is_json_t d;
    int rc = is_json_parse(&d, res->body, res->body_len, NULL);
    if (rc == IS_OK) rc = dup_at(&d, is_json_path(&d, 0, "metadata.name"), &c->name);
    is_json_free(&d);
    if (rc != IS_OK || !c->name) {
        fprintf(stderr, "%s: the API server's answer has no metadata.name\n", c->prog);
        decide(c, IS_CLIENT_EXIT_USAGE);
        return;
    }
    printf("InternalRequest '%s' created.\n", c->name);
    fflush(stdout);
    decide(c, -1);
}

static int create_phase(client_t *c) {
    is_buf_t body;
    is_buf_init(&body);
    int rc = is_client_request_json(c->o, c->ns, &body);
    is_kapi_opts_t ko = { .namespace = c->ns };
    c->decided = 0;
    if (rc == IS_OK) rc = is_kapi_create(&c->cluster, &ir_res, &ko, body.data, body.len, on_created, c, &c->create_req);
    is_buf_free(&body);
    if (rc != IS_OK) {
        fprintf(stderr, "%s: cannot create the InternalRequest: %s\n", c->prog, is_strerror(rc));
        return IS_CLIENT_EXIT_USAGE;
    }
    run_phase(c);
    if (!c->decided) {
        fprintf(stderr, "%s: no answer from the API server to the create\n", c->prog);
        return c->expired ? IS_CLIENT_EXIT_TIMEOUT : IS_CLIENT_EXIT_USAGE;
    }
    if (c->exit == -1 && write_result(c, "requestName", c->name) != IS_OK) return IS_CLIENT_EXIT_USAGE;
    return c->exit;
}

/* ---- the command ---- */

static int connect_cluster(client_t *c) {
    const char *path = c->o->kubeconfig ? c->o->kubeconfig : getenv("KUBECONFIG");
    is_kubeconfig_t kc;
    char err[512];
    int rc = path && path[0] ? is_kubeconfig_load(&kc, path, NULL, err, sizeof err)
                             : is_kubeconfig_in_cluster(&kc, NULL, err, sizeof err);
    if (rc == IS_OK) rc = is_cluster_init(&c->cluster, &c->loop, "remote", &kc);
    else fprintf(stderr, "%s: %s\n", c->prog, err);
    is_kubeconfig_free(&kc);
    if (rc != IS_OK) return rc;
    c->ns = c->o->namespace ? c->o->namespace : c->cluster.kc.namespace ? c->cluster.kc.namespace : "default";
    return IS_OK;
}

int is_client_run(const is_client_opts_t *o) {
    client_t *c = is_calloc(1, sizeof *c);
    if (!c) {
        fputs("internal-request: out of memory\n", stderr);
        return IS_CLIENT_EXIT_USAGE;
    }
    c->o = o;
    c->prog = o->mode == IS_CLIENT_WAIT ? "wait-for-internal-request" : "internal-request";
    is_map_init(&c->reported);
    int code = IS_CLIENT_EXIT_USAGE;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || is_loop_init(&c->loop) != IS_OK) {
        fprintf(stderr, "%s: cannot initialise libcurl\n", c->prog);
        is_free(c);
        return code;
    }
    if (connect_cluster(c) != IS_OK) goto out;
    is_loop_stop_on_signals(&c->loop);
    is_timer_init(&c->loop, &c->deadline, on_deadline, c);
    is_timer_start(&c->deadline, (uint64_t)o->timeout_s * 1000);

    code = -1;
    if (o->mode == IS_CLIENT_CREATE) {
        for (int i = 0; i < o->nlabels && code == -1; i++)
            if (!strcmp(o->labels[i].key, PIPELINERUN_UID_LABEL)) code = delete_earlier(c, o->labels[i].value);
        if (code == -1) code = create_phase(c);
        if (code == -1 && !o->sync) code = IS_CLIENT_EXIT_OK;
        if (code == -1) printf("Sync flag set to true. Waiting for the InternalRequest to be completed.\n");
    }
    if (code == -1) code = wait_phase(c);

out:
    is_loop_stop_on_signals(NULL);
    if (c->create_req) is_http_cancel(c->create_req);
    while (c->dels) {
        is_http_cancel(c->dels->req);
        del_unlink(c, c->dels);
    }
    if (c->cluster.name) {
        is_timer_stop(&c->deadline);
        is_cluster_close(&c->cluster);
    }
    is_loop_close(&c->loop);
    is_map_free(&c->reported, is_free);
    is_free(c->name);
    is_free(c);
    curl_global_cleanup();
    return code;
}
