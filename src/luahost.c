/* The Lua bridge: the `host` module, coroutine tasks, informers and queues
 * declared from Lua. See is_luahost.h and docs/lua-api.md. */
#include "is_luahost.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "is_alloc.h"
#include "is_buf.h"
#include "is_err.h"
#include "is_informer.h"
#include "is_kapi.h"
#include "is_log.h"
#include "is_luametrics.h"
#include "is_workqueue.h"

/* lua-cjson is linked in (liblua5.4-cjson) rather than loaded from disk,
 * because package.cpath is emptied: no script may load native code. */
int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

/* ---------------------------------------------------------------------- */
/* Tasks: one coroutine each                                              */

typedef struct lh_queue_s lh_queue_t;

typedef struct lh_task_s {
    is_lua_t *host;
    lua_State *co;
    int ref;                  /* registry reference that keeps co alive */
    long used;                /* instructions counted so far */
    int tripped;              /* past the budget: every instruction raises */
    int waiting;              /* a host call is in flight; a bare yield is an error */
    is_http_req_t *req;       /* the call in flight, for cancellation */
    is_kapi_list_t *list;
    is_timer_t sleep;
    int spawn_nargs;          /* arguments waiting for the first resume */
    int is_stop;              /* the main module's stop(), run at shutdown */
    lh_queue_t *queue;        /* reconcile tasks */
    char *key;
    char *what;               /* for logs: "reconcile ns/name", "task" */
    struct lh_task_s *prev, *next;
} lh_task_t;

struct lh_queue_s {
    is_lua_t *host;
    char *name;
    int reconcile_ref;
    is_wq_t wq;
    unsigned long reconciles, errors;
};

typedef struct lh_informer_s {
    is_lua_t *host;
    char *name;
    int on_event_ref;
    is_informer_t inf;
    unsigned long errors;
} lh_informer_t;

typedef struct lh_counter_s {
    double value;
} lh_counter_t;

/* Host state that does not belong in the public struct. */
typedef struct lh_private_s {
    lh_task_t *tasks;         /* live tasks */
    lh_task_t sync;           /* pseudo task for code run on the main thread */
    lh_task_t *current;       /* the task whose code runs now, charged by the hook */
    int stop_running;         /* stop() has not finished yet */
    is_map_t counters;        /* "name{label=\"v\"}" -> lh_counter_t* */
    char *main_module;
    int exit_code;
    int exit_reason_set;
    char exit_reason[2048];   /* host.shutdown's why, capped */
    int leader;
} lh_private_t;

#define PRIV(h) ((lh_private_t *)(h)->priv__)

/* Every thread's extra space holds the host: Lua copies the main thread's
 * into each new one, so also a coroutine a script creates itself leads the
 * count hook back to the host, and from there to the task being run, which
 * is charged for it. (A per-coroutine task pointer would let a script's own
 * coroutine.wrap escape the budget, and could outlive its task.) */
static is_lua_t **host_slot(lua_State *L) { return (is_lua_t **)lua_getextraspace(L); }

/* ---------------------------------------------------------------------- */
/* Allocator and limits                                                   */

static void *lh_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    is_lua_t *h = ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        is_free(ptr);
        h->mem_used -= osize;
        return NULL;
    }
    /* The cap turns a runaway script into a Lua "not enough memory" error
     * in that script, instead of the kernel killing the controller. */
    if (nsize > osize && h->mem_used + (nsize - osize) > h->mem_limit) return NULL;
    void *p = is_realloc(ptr, nsize);
    if (p) h->mem_used = h->mem_used - osize + nsize;
    return p;
}

#define HOOK_STEP 1000

/* Past the budget the hook fires on every instruction of the thread it
 * caught and of the task's own coroutine, and raises each time: a raise
 * once per HOOK_STEP would let `pcall` in a loop catch each one and run
 * for ever. Coroutines made from here on inherit the per-instruction hook;
 * one made before trips on its next count. */
static void count_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    is_lua_t *h = *host_slot(L);
    lh_task_t *t = h && h->priv__ ? PRIV(h)->current : NULL;
    if (!t) return;
    if (!t->tripped) {
        t->used += HOOK_STEP;
        if (t->used <= h->instruction_budget) return;
        t->tripped = 1;
        if (t->co) lua_sethook(t->co, count_hook, LUA_MASKCOUNT, 1);
    }
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "instruction budget of %I exceeded", (lua_Integer)h->instruction_budget);
}

/* ---------------------------------------------------------------------- */
/* Logging helpers                                                        */

static void append_field(is_buf_t *b, const char *key, const char *value) {
    if (b->len) is_buf_appends(b, ",");
    is_buf_append_jsonstr(b, key, strlen(key));
    is_buf_appends(b, ":");
    is_buf_append_jsonstr(b, value ? value : "", value ? strlen(value) : 0);
}

static void log_kv(int level, const char *msg, const char *k1, const char *v1, const char *k2,
                   const char *v2) {
    is_buf_t f;
    is_buf_init(&f);
    if (k1) append_field(&f, k1, v1);
    if (k2) append_field(&f, k2, v2);
    is_log_write(level, msg, f.data);
    is_buf_free(&f);
}

/* ---------------------------------------------------------------------- */
/* Task lifecycle                                                         */

static void task_finish(lh_task_t *t, int ok, const char *error);

static void task_free(lh_task_t *t) {
    lh_private_t *p = PRIV(t->host);
    if (t->prev) t->prev->next = t->next;
    else p->tasks = t->next;
    if (t->next) t->next->prev = t->prev;
    is_timer_stop(&t->sleep);
    if (t->req) is_http_cancel(t->req);
    if (t->list) is_kapi_list_cancel(t->list);
    if (p->current == t) p->current = NULL;
    if (t->is_stop) p->stop_running = 0;
    luaL_unref((lua_State *)t->host->L, LUA_REGISTRYINDEX, t->ref);
    t->host->tasks--;
    is_free(t->key);
    is_free(t->what);
    is_free(t);
}

static void on_sleep_done(is_timer_t *timer);

/* In protected mode, because both allocate and the state may be at its
 * memory cap: a new thread holding the function at index 1, anchored in the
 * registry; returns the reference. */
static int new_thread_p(lua_State *L) {
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushinteger(L, luaL_ref(L, LUA_REGISTRYINDEX));
    return 1;
}

/* Creates a task whose coroutine has the function at the top of L's stack
 * (popped, also on failure). */
static int task_new(is_lua_t *h, const char *what, lh_task_t **out) {
    lua_State *L = h->L;
    lh_task_t *t = is_calloc(1, sizeof *t);
    if (!t || !(t->what = is_strdup(what))) {
        is_free(t);
        lua_pop(L, 1);
        return IS_ENOMEM;
    }
    t->host = h;
    lua_pushcfunction(L, new_thread_p);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        is_free(t->what);
        is_free(t);
        return IS_ENOMEM;
    }
    t->ref = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    t->co = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_sethook(t->co, count_hook, LUA_MASKCOUNT, HOOK_STEP);
    is_timer_init(h->loop, &t->sleep, on_sleep_done, t);
    lh_private_t *p = PRIV(h);
    t->next = p->tasks;
    if (p->tasks) p->tasks->prev = t;
    p->tasks = t;
    h->tasks++;
    *out = t;
    return IS_OK;
}

/* luaL_traceback of the coroutine (1) with the message (2), both light
 * userdata, for lua_pcall. */
static int traceback_of(lua_State *L) {
    luaL_traceback(L, lua_touserdata(L, 1), lua_touserdata(L, 2), 0);
    return 1;
}

/* Resumes t with nargs values already pushed on its stack. Runs until the
 * coroutine yields on a host call, returns, or fails. */
static void task_resume(lh_task_t *t, int nargs) {
    is_lua_t *h = t->host;
    int nres = 0;
    t->waiting = 0;
    lh_private_t *p = PRIV(h);
    lh_task_t *caller = p->current;
    /* A reconcile's budget covers the whole reconcile; a background task
     * (a reload or renewal loop) lives for ever, so its budget covers each
     * run between two host calls. */
    if (!t->queue) t->used = 0;
    p->current = t;
    int st = lua_resume(t->co, h->L, nargs, &nres);
    p->current = caller;
    if (st == LUA_YIELD) {
        if (t->waiting) return;
        lua_pop(t->co, nres);
        task_finish(t, 0, "yielded outside a host call (coroutine.yield at the top level)");
        return;
    }
    if (st == LUA_OK) {
        task_finish(t, 1, NULL);
        return;
    }
    /* The traceback allocates, and after a memory error the failed
     * coroutine still holds what it built: it is made in protected mode and
     * left out when it does not fit. lua_tostring would convert a number in
     * place (an allocation too), so only strings are taken as messages. */
    char budget[80];
    const char *msg = lua_type(t->co, -1) == LUA_TSTRING ? lua_tostring(t->co, -1)
                                                        : "error object is not a string";
    /* A tripped task may end on an error of its own handler ("error in
     * error handling"): the budget is what stopped it. */
    if (t->tripped) {
        snprintf(budget, sizeof budget, "instruction budget of %ld exceeded", h->instruction_budget);
        msg = budget;
    }
    lua_State *L = h->L;
    lua_pushcfunction(L, traceback_of);
    lua_pushlightuserdata(L, t->co);
    lua_pushlightuserdata(L, (void *)msg);
    int traced = lua_pcall(L, 2, 1, 0) == LUA_OK;
    task_finish(t, 0, traced ? lua_tostring(L, -1) : msg);
    lua_pop(L, 1);
    /* What a runaway coroutine built is garbage now, but lauxlib's buffers
     * (string.rep, table.concat) call the allocator directly and fail at the
     * cap without the emergency collection: collect now, so that the next
     * script does not pay for this one. */
    if (st == LUA_ERRMEM || h->mem_used > h->mem_limit / 2) lua_gc(L, LUA_GCCOLLECT, 0);
}

static void on_sleep_done(is_timer_t *timer) {
    lh_task_t *t = timer->data;
    task_resume(t, 0);
}

static void on_spawn_start(is_timer_t *timer) {
    lh_task_t *t = timer->data;
    timer->cb = on_sleep_done;
    task_resume(t, t->spawn_nargs);
}

/* ---------------------------------------------------------------------- */
/* Queues                                                                 */

static void queue_process(is_wq_t *wq, const char *key, void *data);

static void task_finish(lh_task_t *t, int ok, const char *error) {
    is_lua_t *h = t->host;
    lh_queue_t *q = t->queue;
    if (!q) {
        if (!ok) {
            h->script_errors++;
            log_kv(IS_LOG_ERROR, "task failed", "task", t->what, "error", error);
        }
        task_free(t);
        return;
    }
    /* A reconcile returns nil/true (done), {requeue_after = s}, or
     * false, message (retry with backoff); an error also retries. */
    lua_State *co = t->co;
    double requeue_after = -1;
    const char *failure = error;
    if (ok) {
        int n = lua_gettop(co);
        if (n >= 1 && lua_isboolean(co, 1) && !lua_toboolean(co, 1)) {
            ok = 0;
            failure = n >= 2 && lua_isstring(co, 2) ? lua_tostring(co, 2) : "reconcile returned false";
        } else if (n >= 1 && lua_istable(co, 1)) {
            lua_getfield(co, 1, "requeue_after");
            if (lua_isnumber(co, -1)) requeue_after = lua_tonumber(co, -1);
            lua_pop(co, 1);
        }
    }
    q->reconciles++;
    h->reconciles++;
    if (ok) {
        is_wq_forget(&q->wq, t->key);
        if (requeue_after >= 0) is_wq_add_after(&q->wq, t->key, (uint64_t)(requeue_after * 1000.0));
    } else {
        uint64_t delay = 0;
        q->errors++;
        h->reconcile_errors++;
        is_wq_add_rate_limited(&q->wq, t->key, &delay);
        char retry[32];
        snprintf(retry, sizeof retry, "%.3fs", (double)delay / 1000.0);
        is_buf_t f;
        is_buf_init(&f);
        append_field(&f, "queue", q->name);
        append_field(&f, "key", t->key);
        append_field(&f, "retry_in", retry);
        append_field(&f, "error", failure);
        is_log_write(IS_LOG_ERROR, "reconcile failed", f.data);
        is_buf_free(&f);
    }
    char *key = t->key;
    t->key = NULL;
    task_free(t);
    is_wq_done(&q->wq, key);
    is_free(key);
}

static int push_string_p(lua_State *L) {
    lua_pushstring(L, lua_touserdata(L, 1));
    return 1;
}

static void queue_process(is_wq_t *wq, const char *key, void *data) {
    lh_queue_t *q = data;
    is_lua_t *h = q->host;
    lua_State *L = h->L;
    lh_task_t *t;
    is_buf_t what;
    is_buf_init(&what);
    is_buf_printf(&what, "reconcile %s %s", q->name, key);
    lua_rawgeti(L, LUA_REGISTRYINDEX, q->reconcile_ref);
    int rc = task_new(h, what.data ? what.data : "reconcile", &t);
    is_buf_free(&what);
    if (rc == IS_OK && !(t->key = is_strdup(key))) {
        task_free(t);
        rc = IS_ENOMEM;
    }
    if (rc != IS_OK) {
        log_kv(IS_LOG_ERROR, "cannot start a reconcile", "key", key, "error", is_strerror(rc));
        is_wq_add_rate_limited(wq, key, NULL);
        is_wq_done(wq, key);
        return;
    }
    t->queue = q;
    /* key is copied into the coroutine under the same cap as everything. */
    lua_pushcfunction(L, push_string_p);
    lua_pushlightuserdata(L, (void *)key);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        task_finish(t, 0, "not enough memory to start the reconcile");
        return;
    }
    lua_xmove(L, t->co, 1);
    task_resume(t, 1);
}

static void queue_free(void *p) {
    lh_queue_t *q = p;
    is_wq_close(&q->wq);
    luaL_unref((lua_State *)q->host->L, LUA_REGISTRYINDEX, q->reconcile_ref);
    is_free(q->name);
    is_free(q);
}

/* ---------------------------------------------------------------------- */
/* The host module                                                        */

static is_lua_t *host_of(lua_State *L) {
    return (is_lua_t *)lua_touserdata(L, lua_upvalueindex(1));
}

/* A box is a userdata that owns one C resource (a buffer, a DIR*, a
 * FILE*) while host code calls into Lua, which may raise: a raise leaves
 * the box to the collector, whose __gc releases what it holds. The normal
 * path releases it at once with box_release. */
typedef struct lh_box_s {
    void *p;
    void (*release)(void *p);
} lh_box_t;

#define BOX_META "internal_services.box"

static int box_gc(lua_State *L) {
    lh_box_t *b = lua_touserdata(L, 1);
    if (b && b->p) {
        void *p = b->p;
        b->p = NULL;
        b->release(p);
    }
    return 0;
}

/* Pushes an empty box; raises (holding nothing yet) when out of memory. */
static lh_box_t *box_push(lua_State *L, void (*release)(void *p)) {
    lh_box_t *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->release = release;
    luaL_setmetatable(L, BOX_META);
    return b;
}

static void box_release(lh_box_t *b) {
    if (b->p) {
        void *p = b->p;
        b->p = NULL;
        b->release(p);
    }
}

static void release_buf(void *p) {
    is_buf_free(p);
    is_free(p);
}
static void release_dir(void *p) { closedir(p); }
static void release_file(void *p) { fclose(p); }

/* The task of the running coroutine, or an error for calls that must
 * yield but were made elsewhere (the main thread, a nested coroutine). */
static lh_task_t *current_task(lua_State *L, const char *fn) {
    lh_task_t *t = PRIV(host_of(L))->current;
    if (!t || t->co != L || !lua_isyieldable(L))
        luaL_error(L, "%s must be called from a reconcile or a task started with host.spawn", fn);
    return t;
}

/* Replaces the string at the top (of length n) by its first
 * IS_LUA_LOG_VALUE_MAX bytes and a note that it was cut. */
static void cut_string(lua_State *L, size_t n) {
    if (n <= IS_LUA_LOG_VALUE_MAX) return;
    lua_pushlstring(L, lua_tostring(L, -1), IS_LUA_LOG_VALUE_MAX);
    lua_pushfstring(L, "...(%I bytes, cut at the log value limit of %d)", (lua_Integer)n,
                    IS_LUA_LOG_VALUE_MAX);
    lua_concat(L, 2);
    lua_replace(L, -2);
}

/* A log line's fields are capped: a script logging a whole object must not
 * write megabytes per line. A value past IS_LUA_LOG_VALUE_MAX is cut and
 * says so; fields past IS_LUA_LOG_FIELDS_MAX are dropped, and counted. */
static int log_field_value(is_buf_t *f, lua_State *L) {
    int ty = lua_type(L, -1);
    if (ty == LUA_TNUMBER) {
        if (lua_isinteger(L, -1)) return is_buf_printf(f, "%lld", (long long)lua_tointeger(L, -1));
        return is_buf_printf(f, "%.17g", lua_tonumber(L, -1));
    }
    if (ty == LUA_TBOOLEAN) return is_buf_appends(f, lua_toboolean(L, -1) ? "true" : "false");
    size_t n;
    luaL_tolstring(L, -1, &n); /* may raise: f is boxed */
    cut_string(L, n);
    const char *s = lua_tolstring(L, -1, &n);
    int rc = is_buf_append_jsonstr(f, s, n);
    lua_pop(L, 1);
    return rc;
}

static int l_log(lua_State *L) {
    static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
    int level = luaL_checkoption(L, 1, "info", levels);
    size_t mlen;
    luaL_checklstring(L, 2, &mlen);
    if (level < is_log_level()) return 0;
    lua_pushvalue(L, 2);
    cut_string(L, mlen);
    lua_replace(L, 2);
    const char *msg = lua_tostring(L, 2);
    if (!lua_istable(L, 3)) {
        is_log_write(level, msg, NULL);
        return 0;
    }
    lh_box_t *box = box_push(L, release_buf);
    is_buf_t *f = is_calloc(1, sizeof *f);
    if (!f) return luaL_error(L, "host.log: out of memory");
    box->p = f;
    int rc = IS_OK;
    unsigned long dropped = 0;
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        if (lua_type(L, -2) == LUA_TSTRING && rc == IS_OK) {
            if (f->len >= IS_LUA_LOG_FIELDS_MAX) {
                dropped++;
            } else {
                size_t klen;
                lua_pushvalue(L, -2);
                lua_tolstring(L, -1, &klen);
                cut_string(L, klen);
                const char *k = lua_tolstring(L, -1, &klen);
                if (f->len) rc = is_buf_appends(f, ",");
                if (rc == IS_OK) rc = is_buf_append_jsonstr(f, k, klen);
                if (rc == IS_OK) rc = is_buf_appends(f, ":");
                lua_pop(L, 1);
                if (rc == IS_OK) rc = log_field_value(f, L);
            }
        }
        lua_pop(L, 1);
    }
    if (rc == IS_OK && dropped)
        rc = is_buf_printf(f, ",\"fields_dropped\":\"%lu past the log line limit of %d bytes\"", dropped,
                           IS_LUA_LOG_FIELDS_MAX);
    if (rc != IS_OK) {
        box_release(box);
        return luaL_error(L, "host.log: %s", is_strerror(rc));
    }
    is_log_write(level, msg, f->data);
    box_release(box);
    return 0;
}

static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    return 1;
}

static int l_monotonic(lua_State *L) {
    is_lua_t *h = host_of(L);
    is_loop_update_time(h->loop);
    lua_pushinteger(L, (lua_Integer)is_loop_now(h->loop));
    return 1;
}

static int l_count(lua_State *L) {
    is_lua_t *h = host_of(L);
    const char *name = luaL_checkstring(L, 1);
    double delta = luaL_optnumber(L, 2, 1);
    const char *label = luaL_optstring(L, 3, NULL);
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return luaL_error(L, "metric name %s: use lowercase letters, digits and _", name);
    is_buf_t k;
    is_buf_init(&k);
    int rc = label ? is_buf_printf(&k, "internal_services_%s_total{label=", name)
                   : is_buf_printf(&k, "internal_services_%s_total", name);
    if (rc == IS_OK && label) {
        rc = is_buf_append_jsonstr(&k, label, strlen(label));
        if (rc == IS_OK) rc = is_buf_appends(&k, "}");
    }
    lh_counter_t *c = rc == IS_OK ? is_map_get(&PRIV(h)->counters, k.data) : NULL;
    if (rc == IS_OK && !c) {
        c = is_calloc(1, sizeof *c);
        if (!c || is_map_set(&PRIV(h)->counters, k.data, c, NULL) != IS_OK) {
            is_free(c);
            c = NULL;
            rc = IS_ENOMEM;
        }
    }
    is_buf_free(&k);
    if (rc != IS_OK) return luaL_error(L, "host.count: %s", is_strerror(rc));
    c->value += delta;
    return 0;
}

/* Builds the result table of a Kubernetes call on L. */
static void push_result(lua_State *L, const is_http_result_t *res) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, res->code);
    lua_setfield(L, -2, "code");
    lua_pushlstring(L, res->body ? res->body : "", res->body ? res->body_len : 0);
    lua_setfield(L, -2, "body");
    if (res->status) {
        /* message is the API server's own sentence, fit for a status the
         * remote side reads; error, for logs only, adds the method and the
         * URL, which must not leak the internal cluster's address. */
        lua_pushstring(L, res->status->reason);
        lua_setfield(L, -2, "reason");
        lua_pushstring(L, res->status->message);
        lua_setfield(L, -2, "message");
        lua_pushstring(L, res->error ? res->error : res->status->message);
        lua_setfield(L, -2, "error");
    }
}

static int push_result_p(lua_State *L) {
    push_result(L, lua_touserdata(L, 1));
    return 1;
}

static void on_kube_done(is_http_req_t *req, const is_http_result_t *res, void *ud) {
    (void)req;
    lh_task_t *t = ud;
    lua_State *L = t->host->L;
    t->req = NULL;
    t->list = NULL;
    if (!lua_checkstack(t->co, 4)) {
        task_finish(t, 0, "stack overflow delivering a Kubernetes response");
        return;
    }
    /* Built in protected mode on the main thread, because a large response
     * may not fit under the memory cap; then handed to the coroutine. */
    lua_pushcfunction(L, push_result_p);
    lua_pushlightuserdata(L, (void *)res);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        task_finish(t, 0, "not enough memory for the API server's response");
        return;
    }
    lua_xmove(L, t->co, 1);
    task_resume(t, 1);
}

static const char *opt_field(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    const char *s = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the string stays reachable from the table */
    return s;
}

/* The resource named by a host.kube or host.watch table (group, version,
 * resource, cluster_scoped); raises when version or resource is missing. */
static is_kres_t check_resource(lua_State *L, int idx, const char *fn) {
    is_kres_t r = { opt_field(L, idx, "group"), opt_field(L, idx, "version"),
                    opt_field(L, idx, "resource"), 1 };
    if (!r.version || !r.plural) luaL_error(L, "%s: version and resource are required", fn);
    lua_getfield(L, idx, "cluster_scoped");
    r.namespaced = !lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

static int l_kube(lua_State *L) {
    is_lua_t *h = host_of(L);
    const char *cluster_name = luaL_checkstring(L, 1);
    static const char *const verbs[] = { "get", "list", "create", "update", "update_status",
                                         "patch", "delete", NULL };
    int verb = luaL_checkoption(L, 2, NULL, verbs);
    luaL_checktype(L, 3, LUA_TTABLE);
    lh_task_t *t = current_task(L, "host.kube");
    is_cluster_t *c = is_map_get(&h->clusters, cluster_name);
    if (!c) return luaL_error(L, "host.kube: unknown cluster %s", cluster_name);

    is_kres_t r = check_resource(L, 3, "host.kube");
    is_kapi_opts_t o = {
        .namespace = opt_field(L, 3, "namespace"),
        .name = opt_field(L, 3, "name"),
        .subresource = opt_field(L, 3, "subresource"),
        .label_selector = opt_field(L, 3, "label_selector"),
        .field_selector = opt_field(L, 3, "field_selector"),
        .field_manager = opt_field(L, 3, "field_manager"),
        .propagation_policy = opt_field(L, 3, "propagation_policy"),
        .precondition_uid = opt_field(L, 3, "precondition_uid"),
        .precondition_rv = opt_field(L, 3, "precondition_resource_version"),
    };
    lua_getfield(L, 3, "force");
    o.force = lua_toboolean(L, -1);
    lua_pop(L, 1);
    size_t blen = 0;
    lua_getfield(L, 3, "body");
    const char *body = lua_isstring(L, -1) ? lua_tolstring(L, -1, &blen) : NULL;
    lua_pop(L, 1);
    if (!body && verb >= 2 && verb <= 5)
        return luaL_error(L, "host.kube: %s needs a body", verbs[verb]);

    int rc;
    switch (verb) {
    case 0: rc = is_kapi_get(c, &r, &o, on_kube_done, t, &t->req); break;
    case 1: rc = is_kapi_list(c, &r, &o, on_kube_done, t, &t->list); break;
    case 2: rc = is_kapi_create(c, &r, &o, body, blen, on_kube_done, t, &t->req); break;
    case 3: rc = is_kapi_update(c, &r, &o, body, blen, on_kube_done, t, &t->req); break;
    case 4:
        o.subresource = "status";
        rc = is_kapi_update(c, &r, &o, body, blen, on_kube_done, t, &t->req);
        break;
    case 5: {
        static const char *const types[] = { "merge", "json", "strategic", "apply", NULL };
        static const is_patch_type_t map[] = { IS_PATCH_MERGE, IS_PATCH_JSON, IS_PATCH_STRATEGIC,
                                               IS_PATCH_APPLY };
        const char *pt = opt_field(L, 3, "patch_type");
        int i = 0;
        if (pt) {
            for (i = 0; types[i] && strcmp(types[i], pt) != 0; i++) {}
            if (!types[i]) return luaL_error(L, "host.kube: unknown patch_type %s", pt);
        }
        rc = is_kapi_patch(c, &r, &o, map[i], body, blen, on_kube_done, t, &t->req);
        break;
    }
    default: rc = is_kapi_delete(c, &r, &o, on_kube_done, t, &t->req); break;
    }
    if (rc != IS_OK) {
        is_http_result_t res = { .code = 0, .body = "", .error = is_strerror(rc) };
        is_kstatus_t st = { 0, (char *)"InternalError", (char *)is_strerror(rc) };
        res.status = &st;
        push_result(L, &res);
        return 1;
    }
    t->waiting = 1;
    return lua_yield(L, 0);
}

static int l_sleep(lua_State *L) {
    double s = luaL_checknumber(L, 1);
    lh_task_t *t = current_task(L, "host.sleep");
    if (s < 0) s = 0;
    if (is_timer_start(&t->sleep, (uint64_t)(s * 1000.0)) != IS_OK)
        return luaL_error(L, "host.sleep: out of memory");
    t->waiting = 1;
    return lua_yield(L, 0);
}

static int l_spawn(lua_State *L) {
    is_lua_t *h = host_of(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    int nargs = lua_gettop(L) - 1;
    /* The arguments are copied once more on this stack and then moved to
     * the new coroutine's: neither has room for them unless asked. */
    luaL_checkstack(L, nargs + 1, "host.spawn: too many arguments");
    lua_pushvalue(L, 1);
    /* task_new takes the function from the main thread's stack. */
    if (L != (lua_State *)h->L) lua_xmove(L, (lua_State *)h->L, 1);
    lh_task_t *t;
    if (task_new(h, "task", &t) != IS_OK) return luaL_error(L, "host.spawn: out of memory");
    if (!lua_checkstack(t->co, nargs)) {
        task_free(t);
        return luaL_error(L, "host.spawn: too many arguments");
    }
    for (int i = 2; i <= nargs + 1; i++) lua_pushvalue(L, i);
    lua_xmove(L, t->co, nargs);
    /* Started from the loop, not from inside the caller, so that the
     * caller's instruction budget is not charged for the new task. */
    t->spawn_nargs = nargs;
    t->sleep.cb = on_spawn_start;
    if (is_timer_start(&t->sleep, 0) != IS_OK) {
        task_free(t);
        return luaL_error(L, "host.spawn: out of memory");
    }
    return 0;
}

static int l_enqueue(lua_State *L) {
    is_lua_t *h = host_of(L);
    const char *name = luaL_checkstring(L, 1);
    const char *key = luaL_checkstring(L, 2);
    double after = luaL_optnumber(L, 3, 0);
    lh_queue_t *q = is_map_get(&h->queues, name);
    if (!q) return luaL_error(L, "host.enqueue: unknown queue %s", name);
    int rc = after > 0 ? is_wq_add_after(&q->wq, key, (uint64_t)(after * 1000.0)) : is_wq_add(&q->wq, key);
    if (rc != IS_OK) return luaL_error(L, "host.enqueue: %s", is_strerror(rc));
    return 0;
}

static double num_field(lua_State *L, int idx, const char *name, double def) {
    lua_getfield(L, idx, name);
    double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

static int l_queue(lua_State *L) {
    is_lua_t *h = host_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *name = opt_field(L, 1, "name");
    if (!name) return luaL_error(L, "host.queue: name is required");
    if (is_map_get(&h->queues, name)) return luaL_error(L, "host.queue: %s already exists", name);
    lua_getfield(L, 1, "reconcile");
    if (!lua_isfunction(L, -1)) return luaL_error(L, "host.queue: reconcile must be a function");
    /* luaL_ref may raise: taken before anything is allocated. */
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lh_queue_t *q = is_calloc(1, sizeof *q);
    if (!q || !(q->name = is_strdup(name))) {
        is_free(q);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "host.queue: out of memory");
    }
    q->host = h;
    q->reconcile_ref = ref;
    if (is_wq_init(&q->wq, h->loop, queue_process, q) != IS_OK ||
        is_map_set(&h->queues, name, q, NULL) != IS_OK) {
        queue_free(q);
        return luaL_error(L, "host.queue: out of memory");
    }
    q->wq.max_active = (int)num_field(L, 1, "max_active", 50);
    q->wq.base_delay_ms = (uint64_t)(num_field(L, 1, "base_delay", 0.005) * 1000.0);
    q->wq.max_delay_ms = (uint64_t)(num_field(L, 1, "max_delay", 1000) * 1000.0);
    if (q->wq.max_active < 1) q->wq.max_active = 1;
    if (q->wq.base_delay_ms < 1) q->wq.base_delay_ms = 1;
    /* workqueue_* series are named after the controller, as in
     * controller-runtime; a queue without metrics still serves. */
    const char *controller = opt_field(L, 1, "controller");
    int rc = h->metrics ? is_wq_set_metrics(&q->wq, h->metrics, controller ? controller : name) : IS_OK;
    if (rc != IS_OK) log_kv(IS_LOG_WARN, "queue metrics unavailable", "queue", name, "error", is_strerror(rc));
    return 0;
}

typedef struct event_args_s {
    int ref;
    const char *kind, *key, *obj, *old;
    size_t len, old_len;
} event_args_t;

/* In protected mode, because the object may not fit under the memory cap:
 * an unprotected raise there would be a Lua panic, which aborts. */
static int on_event_p(lua_State *L) {
    const event_args_t *a = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
    lua_pushstring(L, a->kind);
    int nargs = 1;
    if (a->key) {
        lua_pushstring(L, a->key);
        lua_pushlstring(L, a->obj, a->len);
        nargs = 3;
        if (a->old) {
            lua_pushlstring(L, a->old, a->old_len);
            nargs = 4;
        }
    }
    lua_call(L, nargs, 0);
    return 0;
}

/* Informer events run Lua on the main thread, outside any coroutine:
 * on_event must not yield, and it gets its own instruction budget. */
static void call_on_event(lh_informer_t *li, const char *kind, const char *key, const char *obj,
                          size_t len, const char *old, size_t old_len) {
    is_lua_t *h = li->host;
    lua_State *L = h->L;
    if (h->stopping) return;
    lh_task_t *sync = &PRIV(h)->sync;
    int top = lua_gettop(L);
    event_args_t args = { li->on_event_ref, kind, key, obj, old, len, old_len };
    lua_pushcfunction(L, on_event_p);
    lua_pushlightuserdata(L, &args);
    sync->used = 0;
    sync->tripped = 0;
    lh_task_t *caller = PRIV(h)->current;
    PRIV(h)->current = sync;
    int st = lua_pcall(L, 1, 0, 0);
    PRIV(h)->current = caller;
    /* A trip left the main thread raising on every instruction. */
    if (sync->tripped) lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
    if (st != LUA_OK) {
        li->errors++;
        h->script_errors++;
        is_buf_t f;
        is_buf_init(&f);
        append_field(&f, "informer", li->name);
        append_field(&f, "event", kind);
        append_field(&f, "key", key);
        append_field(&f, "error", lua_tostring(L, -1));
        is_log_write(IS_LOG_ERROR, "informer event handler failed", f.data);
        is_buf_free(&f);
    }
    lua_settop(L, top);
}

static lh_informer_t *li_of(is_informer_t *inf) { return inf->data; }

static void inf_add(is_informer_t *inf, const char *key, const char *obj, size_t len) {
    call_on_event(li_of(inf), "ADDED", key, obj, len, NULL, 0);
}
static void inf_update(is_informer_t *inf, const char *key, const char *old, size_t old_len,
                       const char *obj, size_t len) {
    call_on_event(li_of(inf), "MODIFIED", key, obj, len, old, old_len);
}
static void inf_delete(is_informer_t *inf, const char *key, const char *obj, size_t len) {
    call_on_event(li_of(inf), "DELETED", key, obj, len, NULL, 0);
}
static void inf_synced(is_informer_t *inf) {
    lh_informer_t *li = li_of(inf);
    char count[32];
    snprintf(count, sizeof count, "%zu", is_informer_count(inf));
    log_kv(IS_LOG_INFO, "informer synced", "informer", li->name, "objects", count);
    call_on_event(li, "SYNCED", NULL, NULL, 0, NULL, 0);
}
static void inf_error(is_informer_t *inf, const char *what, long code, const char *reason,
                      const char *message, uint64_t retry_ms) {
    lh_informer_t *li = li_of(inf);
    li->errors++;
    is_buf_t f;
    is_buf_init(&f);
    append_field(&f, "informer", li->name);
    append_field(&f, "cluster", inf->cluster__->name);
    append_field(&f, "op", what);
    is_buf_printf(&f, ",\"code\":%ld", code);
    append_field(&f, "reason", reason);
    append_field(&f, "error", message);
    is_buf_printf(&f, ",\"retry_in_ms\":%llu", (unsigned long long)retry_ms);
    is_log_write(code == 410 ? IS_LOG_INFO : IS_LOG_WARN,
                 code == 410 ? "watch expired, relisting" : "list/watch failed", f.data);
    is_buf_free(&f);
}

static void informer_free(void *p) {
    lh_informer_t *li = p;
    is_informer_close(&li->inf);
    luaL_unref((lua_State *)li->host->L, LUA_REGISTRYINDEX, li->on_event_ref);
    is_free(li->name);
    is_free(li);
}

static int l_watch(lua_State *L) {
    is_lua_t *h = host_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *name = opt_field(L, 1, "name");
    const char *cluster_name = opt_field(L, 1, "cluster");
    if (!name || !cluster_name) return luaL_error(L, "host.watch: name and cluster are required");
    if (is_map_get(&h->informers, name)) return luaL_error(L, "host.watch: %s already exists", name);
    is_cluster_t *c = is_map_get(&h->clusters, cluster_name);
    if (!c) return luaL_error(L, "host.watch: unknown cluster %s", cluster_name);
    lua_getfield(L, 1, "on_event");
    if (!lua_isfunction(L, -1)) return luaL_error(L, "host.watch: on_event must be a function");
    is_informer_opts_t o = {
        .name = name, .cluster = c,
        .resource = check_resource(L, 1, "host.watch"),
        .namespace = opt_field(L, 1, "namespace"),
        .label_selector = opt_field(L, 1, "label_selector"),
        .field_selector = opt_field(L, 1, "field_selector"),
        .resync_ms = (uint64_t)(num_field(L, 1, "resync", 0) * 1000.0),
        .page_size = (int)num_field(L, 1, "page_size", 500),
    };
    static const is_informer_handlers_t handlers = { inf_add, inf_update, inf_delete, inf_synced,
                                                     inf_error };
    int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: before any allocation */
    lh_informer_t *li = is_calloc(1, sizeof *li);
    if (!li || !(li->name = is_strdup(name))) {
        is_free(li);
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "host.watch: out of memory");
    }
    li->host = h;
    li->on_event_ref = ref;
    int rc = is_informer_init(&li->inf, &o, &handlers, li);
    if (rc == IS_OK && h->metrics && is_informer_set_metrics(&li->inf, h->metrics) != IS_OK)
        log_kv(IS_LOG_WARN, "informer metrics unavailable", "informer", name, NULL, NULL);
    if (rc == IS_OK) rc = is_map_set(&h->informers, name, li, NULL);
    if (rc != IS_OK) {
        informer_free(li);
        return luaL_error(L, "host.watch: %s", is_strerror(rc));
    }
    if ((rc = is_informer_start(&li->inf)) != IS_OK)
        return luaL_error(L, "host.watch: %s", is_strerror(rc));
    log_kv(IS_LOG_INFO, "informer started", "informer", name, "cluster", cluster_name);
    return 0;
}

static lh_informer_t *check_informer(lua_State *L, int idx) {
    is_lua_t *h = host_of(L);
    const char *name = luaL_checkstring(L, idx);
    lh_informer_t *li = is_map_get(&h->informers, name);
    if (!li) luaL_error(L, "unknown informer %s", name);
    return li;
}

static int l_cache_get(lua_State *L) {
    lh_informer_t *li = check_informer(L, 1);
    const char *key = luaL_checkstring(L, 2);
    const char *obj;
    size_t len;
    if (is_informer_get(&li->inf, key, &obj, &len) != IS_OK) lua_pushnil(L);
    else lua_pushlstring(L, obj, len);
    return 1;
}

typedef struct list_ctx_s {
    lua_State *L;
    const char *prefix;
    size_t prefix_len;
    lua_Integer n;
} list_ctx_t;

static int list_one(const char *key, const char *obj, size_t len, void *ud) {
    list_ctx_t *c = ud;
    if (c->prefix && (strncmp(key, c->prefix, c->prefix_len) != 0 || key[c->prefix_len] != '/'))
        return 0;
    lua_pushlstring(c->L, obj, len);
    lua_rawseti(c->L, -2, ++c->n);
    return 0;
}

static int l_cache_list(lua_State *L) {
    lh_informer_t *li = check_informer(L, 1);
    list_ctx_t c = { L, luaL_optstring(L, 2, NULL), 0, 0 };
    if (c.prefix) c.prefix_len = strlen(c.prefix);
    lua_createtable(L, (int)is_informer_count(&li->inf), 0);
    is_informer_each(&li->inf, list_one, &c);
    return 1;
}

static int l_synced(lua_State *L) {
    lh_informer_t *li = check_informer(L, 1);
    lua_pushboolean(L, is_informer_synced(&li->inf));
    return 1;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the *.lua files of a directory. The signature covers name, size,
 * mtime and inode of every file after following links, so that a ConfigMap
 * update (which swaps the ..data symlink) changes it. Every allocation here
 * may raise, so the names live in a Lua table and the DIR* and FILE* in
 * boxes: nothing is left behind by a raise. */
static int l_read_scripts(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lh_box_t *dbox = box_push(L, release_dir);                  /* 2 */
    DIR *d = opendir(dir);
    if (!d) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot open policy directory %s: %s", dir, strerror(errno));
        return 2;
    }
    dbox->p = d;
    lua_newtable(L);                                            /* 3: names */
    lua_Integer n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0) continue;
        lua_pushlstring(L, e->d_name, len);
        lua_rawseti(L, 3, ++n);
    }
    box_release(dbox);
    /* Sorted through an array of pointers in Lua memory; the strings stay
     * anchored by the names table. */
    const char **sorted = lua_newuserdatauv(L, (size_t)n * sizeof *sorted + 1, 0); /* 4 */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, i);
        sorted[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_names);
    luaL_Buffer sig;
    lua_createtable(L, (int)n, 0);                              /* 5: result */
    luaL_buffinit(L, &sig);                                     /* 6 */
    int out = 0;
    for (lua_Integer i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, sorted[i]);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        lua_createtable(L, 0, 2);                               /* entry */
        lh_box_t *fbox = box_push(L, release_file);             /* entry, fbox */
        FILE *f = fopen(path, "rb");
        if (!f) {
            lua_pop(L, 2);
            continue;
        }
        fbox->p = f;
        luaL_Buffer src;
        luaL_buffinit(L, &src);
        char chunk[4096];
        size_t got;
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) luaL_addlstring(&src, chunk, got);
        box_release(fbox);
        luaL_pushresult(&src);                                  /* entry, fbox, source */
        lua_setfield(L, -3, "source");
        lua_pop(L, 1);                                          /* entry */
        lua_pushstring(L, sorted[i]);
        lua_setfield(L, -2, "name");
        lua_rawseti(L, 5, ++out);
        char line[512];
        snprintf(line, sizeof line, "%s:%lld:%lld.%09ld:%llu;", sorted[i], (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (unsigned long long)st.st_ino);
        luaL_addstring(&sig, line);
    }
    luaL_pushresult(&sig);
    return 2;
}

static int l_set_leader(lua_State *L) {
    is_lua_t *h = host_of(L);
    int leader = lua_toboolean(L, 1);
    if (leader != PRIV(h)->leader) log_kv(IS_LOG_INFO, leader ? "became leader" : "not leader", NULL, NULL, NULL, NULL);
    PRIV(h)->leader = leader;
    return 0;
}

static int l_shutdown(lua_State *L) {
    is_lua_t *h = host_of(L);
    int code = (int)luaL_optinteger(L, 1, 0);
    const char *why = luaL_optstring(L, 2, "shutdown requested by a script");
    log_kv(code ? IS_LOG_ERROR : IS_LOG_INFO, "shutting down", "reason", why, NULL, NULL);
    PRIV(h)->exit_code = code;
    snprintf(PRIV(h)->exit_reason, sizeof PRIV(h)->exit_reason, "%s", why);
    PRIV(h)->exit_reason_set = 1;
    is_loop_stop(h->loop);
    return 0;
}

static const luaL_Reg host_funcs[] = {
    { "log", l_log }, { "now", l_now }, { "monotonic", l_monotonic }, { "count", l_count },
    { "kube", l_kube }, { "sleep", l_sleep }, { "spawn", l_spawn }, { "enqueue", l_enqueue },
    { "queue", l_queue }, { "watch", l_watch }, { "cache_get", l_cache_get },
    { "cache_list", l_cache_list }, { "synced", l_synced }, { "read_scripts", l_read_scripts },
    { "set_leader", l_set_leader }, { "shutdown", l_shutdown }, { NULL, NULL }
};

typedef struct host_opts_box_s {
    is_lua_t *h;
    const is_lua_opts_t *o;
} host_opts_box_t;

static int open_host(lua_State *L) {
    host_opts_box_t *box = lua_touserdata(L, lua_upvalueindex(1));
    is_lua_t *h = box->h;
    lua_newtable(L);
    lua_pushlightuserdata(L, h);
    luaL_setfuncs(L, host_funcs, 1);
    is_luametrics_open(L, h->metrics);
    return 1;
}

static void set_str(lua_State *L, const char *k, const char *v) {
    if (!v) return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* Removes what trusted modules do not need and policies must never reach:
 * process control, files, and native code loading. */
static void restrict_globals(lua_State *L) {
    static const char *const globals[] = { "dofile", "loadfile", "io", NULL };
    static const char *const os_fns[] = { "execute", "exit", "remove", "rename", "tmpname",
                                          "getenv", "setlocale", NULL };
    for (int i = 0; globals[i]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, globals[i]);
    }
    lua_getglobal(L, "os");
    for (int i = 0; os_fns[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, os_fns[i]);
    }
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    lua_pushnil(L);
    lua_setfield(L, -2, "loadlib");
    lua_pushstring(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
}

static int init_state(lua_State *L) {
    host_opts_box_t *box = lua_touserdata(L, 1);
    is_lua_t *h = box->h;
    const is_lua_opts_t *o = box->o;
    luaL_openlibs(L);
    restrict_globals(L);
    luaL_newmetatable(L, BOX_META);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua", o->lua_dir, o->lua_dir);
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pushcfunction(L, luaopen_cjson_safe);
    lua_setfield(L, -2, "cjson.safe");
    lua_pushlightuserdata(L, box);
    lua_pushcclosure(L, open_host, 1);
    lua_setfield(L, -2, "host");
    lua_pop(L, 2);

    /* host.config: what the scripts know about this process. */
    lua_getglobal(L, "require");
    lua_pushstring(L, "host");
    lua_call(L, 1, 1);
    lua_newtable(L);
    set_str(L, "namespace", o->namespace ? o->namespace : "default");
    set_str(L, "policy_dir", o->policy_dir);
    set_str(L, "lua_dir", o->lua_dir);
    set_str(L, "leader_election_id", o->leader_election_id);
    set_str(L, "identity", o->identity);
    lua_pushboolean(L, o->leader_elect);
    lua_setfield(L, -2, "leader_elect");
    if (o->lease_duration > 0) {
        lua_pushnumber(L, o->lease_duration);
        lua_setfield(L, -2, "lease_duration");
    }
    if (o->renew_deadline > 0) {
        lua_pushnumber(L, o->renew_deadline);
        lua_setfield(L, -2, "renew_deadline");
    }
    if (o->retry_period > 0) {
        lua_pushnumber(L, o->retry_period);
        lua_setfield(L, -2, "retry_period");
    }
    lua_pushinteger(L, h->instruction_budget);
    lua_setfield(L, -2, "instruction_budget");
    lua_pushinteger(L, (lua_Integer)h->mem_limit);
    lua_setfield(L, -2, "memory_limit");
    lua_pushnumber(L, o->deadline_grace);
    lua_setfield(L, -2, "deadline_grace");
    lua_pushnumber(L, o->default_timeout);
    lua_setfield(L, -2, "default_timeout");
    lua_pushinteger(L, o->max_concurrent_reconciles > 0 ? o->max_concurrent_reconciles : 50);
    lua_setfield(L, -2, "max_concurrent_reconciles");
    lua_createtable(L, (int)o->nargs, 0);
    for (size_t i = 0; i < o->nargs; i++) {
        lua_pushlstring(L, o->args[i].data, o->args[i].len);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "args");
    lua_setfield(L, -2, "config");
    lua_pop(L, 1);
    return 0;
}

int is_lua_init(is_lua_t *h, is_loop_t *loop, const is_lua_opts_t *o, char *err, size_t errlen) {
    memset(h, 0, sizeof *h);
    h->loop = loop;
    h->metrics = o->metrics;
    h->mem_limit = o->memory_limit ? o->memory_limit : (size_t)256 << 20;
    h->instruction_budget = o->instruction_budget ? o->instruction_budget : 50000000L;
    is_map_init(&h->clusters);
    is_map_init(&h->informers);
    is_map_init(&h->queues);
    lh_private_t *p = is_calloc(1, sizeof *p);
    if (!p) goto oom;
    h->priv__ = p;
    is_map_init(&p->counters);
    p->sync.host = h;
    p->main_module = is_strdup(o->main_module ? o->main_module : "internal_services.main");
    if (!p->main_module) goto oom;
    lua_State *L = lua_newstate(lh_alloc, h);
    if (!L) goto oom;
    h->L = L;
    *host_slot(L) = h;
    /* Charges informer handlers, which run on the main thread (the sync
     * pseudo task); outside them no task is current and the hook returns. */
    lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_STEP);
    host_opts_box_t box = { h, o };
    lua_pushcfunction(L, init_state);
    lua_pushlightuserdata(L, &box);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        snprintf(err, errlen, "lua: %s", lua_tostring(L, -1));
        is_lua_close(h);
        return IS_ELUA;
    }
    /* The box lives on this stack frame only; the host module, once
     * required, keeps its own light userdata of h. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushnil(L);
    lua_setfield(L, -2, "host");
    lua_pop(L, 2);
    return IS_OK;
oom:
    snprintf(err, errlen, "out of memory creating the Lua state");
    is_lua_close(h);
    return IS_ENOMEM;
}

int is_lua_add_cluster(is_lua_t *h, const char *name, is_cluster_t *c) {
    return is_map_set(&h->clusters, name, c, NULL);
}

int is_lua_start(is_lua_t *h, char *err, size_t errlen) {
    lua_State *L = h->L;
    lua_getglobal(L, "require");
    lua_pushstring(L, PRIV(h)->main_module);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(err, errlen, "loading %s: %s", PRIV(h)->main_module, lua_tostring(L, -1));
        lua_pop(L, 1);
        return IS_ELUA;
    }
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "%s must return a table with a start function", PRIV(h)->main_module);
        lua_pop(L, 1);
        return IS_ELUA;
    }
    lua_getfield(L, -1, "start");
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "%s.start is not a function", PRIV(h)->main_module);
        lua_pop(L, 1);
        return IS_ELUA;
    }
    lh_task_t *t;
    if (task_new(h, "start", &t) != IS_OK) {
        snprintf(err, errlen, "out of memory");
        return IS_ENOMEM;
    }
    /* start runs as a task so that it may yield; a failure before its
     * first yield is reported to the caller, which exits. */
    unsigned long before = h->script_errors;
    task_resume(t, 0);
    if (h->script_errors != before) {
        snprintf(err, errlen, "%s.start failed (see the log)", PRIV(h)->main_module);
        return IS_ELUA;
    }
    return IS_OK;
}

int is_lua_shutdown(is_lua_t *h, uint64_t timeout_ms) {
    lua_State *L = h->L;
    lh_private_t *p = PRIV(h);
    is_lua_stop(h);
    lua_getglobal(L, "require");
    lua_pushstring(L, p->main_module);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        return IS_OK;
    }
    lua_getfield(L, -1, "stop");
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return IS_OK;
    }
    lh_task_t *t;
    if (task_new(h, "stop", &t) != IS_OK) return IS_ENOMEM;
    t->is_stop = 1;
    p->stop_running = 1;
    task_resume(t, 0);
    /* stop() may call the API (to release the Lease): the loop runs on,
     * with the informers already stopped, until it returns or time is up. */
    is_loop_update_time(h->loop);
    uint64_t deadline = is_loop_now(h->loop) + timeout_ms;
    while (p->stop_running && is_loop_now(h->loop) < deadline) {
        is_loop_run_once(h->loop, 100);
        is_loop_update_time(h->loop);
    }
    if (!p->stop_running) return IS_OK;
    log_kv(IS_LOG_WARN, "stop() did not finish in time", NULL, NULL, NULL, NULL);
    return IS_ELIMIT;
}

void is_lua_stop(is_lua_t *h) {
    h->stopping = 1;
    size_t iter = 0;
    const char *k;
    void *v;
    while (is_map_next(&h->informers, &iter, &k, &v)) is_informer_stop(&((lh_informer_t *)v)->inf);
}

void is_lua_close(is_lua_t *h) {
    lh_private_t *p = PRIV(h);
    h->stopping = 1;
    if (p) {
        while (p->tasks) task_free(p->tasks);
    }
    is_map_free(&h->informers, informer_free);
    is_map_free(&h->queues, queue_free);
    is_map_free(&h->clusters, NULL);
    if (h->L) lua_close(h->L);
    h->L = NULL;
    if (p) {
        is_map_free(&p->counters, is_free);
        is_free(p->main_module);
        is_free(p);
    }
    h->priv__ = NULL;
}

int is_lua_ready(const is_lua_t *h) {
    size_t iter = 0;
    const char *k;
    void *v;
    /* A replica waiting for leadership has no informers yet and is ready:
     * a standby that never became ready would stall rolling updates. */
    while (is_map_next(&h->informers, &iter, &k, &v))
        if (!is_informer_synced(&((lh_informer_t *)v)->inf)) return 0;
    return 1;
}

int is_lua_exit_code(const is_lua_t *h) { return h->priv__ ? PRIV(h)->exit_code : 0; }

const char *is_lua_exit_reason(const is_lua_t *h) {
    return h->priv__ && PRIV(h)->exit_reason_set ? PRIV(h)->exit_reason : NULL;
}

int is_lua_metrics(const is_lua_t *h, is_buf_t *out) {
    int rc = IS_OK;
    size_t iter = 0;
    const char *k;
    void *v;
#define P(...) do { if (rc == IS_OK) rc = is_buf_printf(out, __VA_ARGS__); } while (0)
    P("# HELP internal_services_lua_memory_bytes Bytes held by the Lua state.\n# TYPE internal_services_lua_memory_bytes gauge\ninternal_services_lua_memory_bytes %zu\n", h->mem_used);
    P("# HELP internal_services_lua_tasks Live Lua coroutines (reconciles and background tasks).\n# TYPE internal_services_lua_tasks gauge\ninternal_services_lua_tasks %d\n", h->tasks);
    P("# HELP internal_services_script_errors_total Lua tasks and informer event handlers that failed.\n# TYPE internal_services_script_errors_total counter\ninternal_services_script_errors_total %lu\n",
      h->script_errors);
    P("# HELP internal_services_leader 1 while this process leads (or runs without leader election).\n# TYPE internal_services_leader gauge\ninternal_services_leader %d\n", PRIV(h)->leader);
    P("# HELP internal_services_reconciles_total Reconciles finished, by queue.\n# TYPE internal_services_reconciles_total counter\n");
    P("# HELP internal_services_reconcile_errors_total Reconciles that failed and were retried, by queue.\n# TYPE internal_services_reconcile_errors_total counter\n");
    P("# HELP internal_services_queue_depth Keys queued or waiting on a delay, by queue.\n# TYPE internal_services_queue_depth gauge\n");
    P("# HELP internal_services_queue_active Keys being reconciled, by queue.\n# TYPE internal_services_queue_active gauge\n");
    while (is_map_next(&h->queues, &iter, &k, &v)) {
        const lh_queue_t *q = v;
        P("internal_services_reconciles_total{queue=\"%s\"} %lu\n", k, q->reconciles);
        P("internal_services_reconcile_errors_total{queue=\"%s\"} %lu\n", k, q->errors);
        P("internal_services_queue_depth{queue=\"%s\"} %zu\n", k, is_wq_len(&q->wq) + is_wq_waiting(&q->wq));
        P("internal_services_queue_active{queue=\"%s\"} %d\n", k, is_wq_active(&q->wq));
    }
    P("# HELP internal_services_informer_objects Objects in the informer's cache.\n");
    P("# TYPE internal_services_informer_objects gauge\n");
    iter = 0;
    while (is_map_next(&h->informers, &iter, &k, &v))
        P("internal_services_informer_objects{informer=\"%s\"} %zu\n", k, is_informer_count(&((const lh_informer_t *)v)->inf));
    P("# HELP internal_services_api_requests_total Requests started to an API server, by cluster.\n# TYPE internal_services_api_requests_total counter\n");
    P("# HELP internal_services_api_failures_total Requests to an API server that failed (transport error or code >= 400), by cluster.\n# TYPE internal_services_api_failures_total counter\n");
    iter = 0;
    while (is_map_next(&h->clusters, &iter, &k, &v)) {
        const is_cluster_t *c = v;
        P("internal_services_api_requests_total{cluster=\"%s\"} %lu\n", k, c->requests);
        P("internal_services_api_failures_total{cluster=\"%s\"} %lu\n", k, c->failures);
    }
    iter = 0;
    while (is_map_next(&PRIV(h)->counters, &iter, &k, &v))
        P("%s %.17g\n", k, ((const lh_counter_t *)v)->value);
#undef P
    return rc;
}
