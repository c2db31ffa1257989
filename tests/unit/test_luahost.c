/* The Lua bridge through a real loop, with main modules from
 * tests/fixtures/lua/luahost_test: task ordering and shutdown, queue
 * outcomes and backoff, counters on /metrics, instruction and memory limits,
 * the trimmed standard library, host.read_scripts, host.kube against a fake
 * API server, and is_lua_start failures. Modules leave their results in the
 * global R, read back here through the state. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "fake_apiserver.h"
#include "is_alloc.h"
#include "is_buf.h"
#include "is_err.h"
#include "is_loop.h"
#include "is_luahost.h"
#include "testing.h"

static char lua_dir[4096];
static is_metrics_t *test_registry; /* host_open passes it on */

static int host_open(is_lua_t *h, is_loop_t *loop, const char *module, size_t memory_limit,
                     long budget) {
    is_lua_opts_t o = {
        .lua_dir = lua_dir, .policy_dir = "/nonexistent", .main_module = module,
        .memory_limit = memory_limit, .instruction_budget = budget, .namespace = "ctl",
        .metrics = test_registry,
    };
    char err[512] = "";
    int rc = is_lua_init(h, loop, &o, err, sizeof err);
    if (rc != IS_OK) fprintf(stderr, "is_lua_init: %s\n", err);
    return rc;
}

/* Evaluates a Lua expression in the host's state (main thread) and returns
 * it through tostring, or "error: ..." when it raised. */
static const char *eval(is_lua_t *h, const char *expr) {
    static char out[8192];
    lua_State *L = h->L;
    char code[2048];
    snprintf(code, sizeof code, "return tostring(%s)", expr);
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
        snprintf(out, sizeof out, "error: %s", lua_tostring(L, -1));
    else
        snprintf(out, sizeof out, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return out;
}

static long long eval_int(is_lua_t *h, const char *expr) {
    const char *s = eval(h, expr);
    char *end;
    long long v = strtoll(s, &end, 10);
    return end != s && *end == 0 ? v : -999999;
}

static int contains(const char *hay, const char *needle) {
    return hay && needle && strstr(hay, needle) != NULL;
}

/* ---- running the loop, capturing the log ---- */

static void watchdog_cb(is_timer_t *t) {
    int *fired = t->data;
    *fired = 1;
    is_loop_stop(t->loop__);
}

/* Runs the loop until something stops it; 1 if the watchdog had to. */
static int run_loop(is_loop_t *loop, uint64_t max_ms) {
    int fired = 0;
    is_timer_t dog;
    is_timer_init(loop, &dog, watchdog_cb, &fired);
    is_timer_start(&dog, max_ms);
    is_loop_run(loop);
    is_timer_stop(&dog);
    return fired;
}

typedef struct {
    int saved_fd;
    FILE *file;
    char *text;   /* malloc'd after capture_end */
} capture_t;

/* The host logs JSON lines on stderr; the tests read them back.
 * IS_TEST_VERBOSE=1 prints them afterwards. */
static void capture_begin(capture_t *c) {
    fflush(stderr);
    c->text = NULL;
    c->file = tmpfile();
    c->saved_fd = dup(2);
    if (c->file && !getenv("IS_TEST_NO_CAPTURE")) dup2(fileno(c->file), 2);
}

static void capture_end(capture_t *c) {
    fflush(stderr);
    dup2(c->saved_fd, 2);
    close(c->saved_fd);
    if (!c->file) return;
    long n = ftell(c->file);
    c->text = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
    rewind(c->file);
    if (c->text && n > 0 && fread(c->text, 1, (size_t)n, c->file) != (size_t)n) c->text[0] = 0;
    fclose(c->file);
    if (getenv("IS_TEST_VERBOSE") && c->text) fputs(c->text, stderr);
}

/* 1 when one log line contains every given string (NULLs are skipped). */
static int log_has(const char *log, const char *a, const char *b, const char *c) {
    const char *line = log;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[8192];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), line);
        if ((!a || strstr(buf, a)) && (!b || strstr(buf, b)) && (!c || strstr(buf, c))) return 1;
        line = end ? end + 1 : NULL;
    }
    return 0;
}

/* log_has for lines of any length: 1 when one line contains a and b. */
static int long_line_has(const char *log, const char *a, const char *b) {
    for (const char *line = log; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *copy = strndup(line, len);
        int found = copy && strstr(copy, a) && (!b || strstr(copy, b));
        free(copy);
        if (found) return 1;
        line = end ? end + 1 : NULL;
    }
    return 0;
}

/* The value of one metrics line "name value", or -1. */
static double metric(const is_lua_t *h, const char *name) {
    is_buf_t b;
    is_buf_init(&b);
    double v = -1;
    if (is_lua_metrics(h, &b) == IS_OK && b.data) {
        size_t n = strlen(name);
        for (const char *p = b.data; (p = strstr(p, name)); p += n) {
            if ((p == b.data || p[-1] == '\n') && p[n] == ' ') {
                v = strtod(p + n + 1, NULL);
                break;
            }
        }
    }
    is_buf_free(&b);
    return v;
}

/* One host on its own loop. */
typedef struct {
    size_t alloc_before;  /* closing must give back all of it */
    is_loop_t loop;
    is_lua_t h;
    char *log;            /* captured by env_run (malloc'd) */
    char after_start[256];/* the probe evaluated between start and the loop */
} env_t;

static int env_open(env_t *e, const char *module, size_t memory_limit, long budget) {
    memset(e, 0, sizeof *e);
    e->alloc_before = is_alloc_used();
    CHECK_INT(is_loop_init(&e->loop), IS_OK);
    if (host_open(&e->h, &e->loop, module, memory_limit, budget) == IS_OK) return 0;
    CHECK(!"is_lua_init failed");
    is_loop_close(&e->loop);
    return -1;
}

/* Starts the main module and runs the loop until a script shuts it down;
 * the watchdog fails the test after max_ms. probe (may be NULL) is
 * evaluated right after start, before the loop runs anything. */
static void env_run(env_t *e, uint64_t max_ms, const char *probe) {
    char err[512] = "";
    capture_t cap;
    capture_begin(&cap);
    int start_rc = is_lua_start(&e->h, err, sizeof err);
    if (probe) snprintf(e->after_start, sizeof e->after_start, "%s", eval(&e->h, probe));
    int dog = run_loop(&e->loop, max_ms);
    capture_end(&cap);
    e->log = cap.text;
    if (start_rc != IS_OK) fprintf(stderr, "is_lua_start: %s\n", err);
    CHECK_INT(start_rc, IS_OK);
    CHECK_INT(dog, 0);
}

static void env_close(env_t *e) {
    free(e->log);
    is_lua_stop(&e->h);
    is_lua_close(&e->h);
    is_loop_close(&e->loop);
    CHECK_INT(is_alloc_used(), e->alloc_before);
}

/* ---- host.metric ---- */

static void test_metric(void) {
    is_metrics_t reg;
    is_metrics_init(&reg);
    reg.max_series = 40;
    test_registry = &reg;
    env_t e;
    int opened = env_open(&e, "luahost_test.metrics", 0, 0);
    test_registry = NULL;
    if (opened != 0) return;
    env_run(&e, 5000, NULL);
    is_lua_t *h = &e.h;
    CHECK_STR(eval(h, "R.same"), "true");
    CHECK_STR(eval(h, "R.add"), "true");
    CHECK_STR(eval(h, "R.counter"), "3.0");
    CHECK_STR(eval(h, "R.gauge"), "2.0");
    CHECK_STR(eval(h, "R.hist_count"), "2");
    CHECK_STR(eval(h, "R.hist_sum"), "55.0");
    CHECK(contains(eval(h, "R.negative"), "attempts_total: operation not valid"));
    CHECK(contains(eval(h, "R.set_counter"), "attempts_total: operation not valid"));
    CHECK(contains(eval(h, "R.bad_type"), "invalid option 'summary'"));
    CHECK(contains(eval(h, "R.reshaped"), "registered before with others"));
    CHECK(contains(eval(h, "R.bad_label"), "label request must be a string"));
    CHECK(contains(eval(h, "R.no_buckets"), "a histogram needs buckets"));
    CHECK_STR(eval(h, "R.full"), "nil attempts_total: limit reached");
    CHECK(testing_sample(&reg, "attempts_total{request=\"sign\",succeeded=\"true\"} ") == 3);
    CHECK(testing_sample(&reg, "attempts_total{request=\"publish\",succeeded=\"false\"} ") == 1);
    CHECK(testing_sample(&reg, "attempt_seconds_bucket{request=\"sign\",le=\"10\"} ") == 1);
    CHECK(testing_sample(&reg, "workqueue_adds_total{name=\"internalrequest\",controller=\"internalrequest\"} ") == 1);
    CHECK(testing_sample(&reg, "workqueue_work_duration_seconds_count{name=\"internalrequest\",controller=\"internalrequest\"} ") == 1);
    free(e.log);
    is_lua_stop(h);
    is_lua_close(h);
    is_metrics_free(&reg);
    is_loop_close(&e.loop);
    CHECK_INT(is_alloc_used(), e.alloc_before);

    /* Without a registry host.metric says so. */
    if (env_open(&e, "luahost_test.tasks", 0, 0) != 0) return;
    CHECK(contains(eval(&e.h, "select(2, pcall(require('host').metric, {}))"), "no metrics registry"));
    env_close(&e);
}

/* ---- tasks ---- */

static void test_tasks(void) {
    env_t e;
    if (env_open(&e, "luahost_test.tasks", 0, 0) != 0) return;
    is_lua_t *h = &e.h;
    env_run(&e, 5000, "table.concat(R.order, ' ')");
    /* Spawned tasks start from the loop: start has finished first. */
    CHECK_STR(e.after_start, "start");
    CHECK_INT(is_lua_exit_code(h), 3);
    CHECK_STR(is_lua_exit_reason(h), "tasks finished");
    CHECK_STR(eval(h, "table.concat(R.order, ' ')"), "start now fast nested:n slow done");
    CHECK(eval_int(h, "R.t.fast - R.t0") >= 20);
    CHECK(eval_int(h, "R.t.slow - R.t0") >= 600);
    CHECK(eval_int(h, "R.t.done - R.t0") >= 800);
    CHECK(eval_int(h, "R.t['nested:n'] - R.t.fast") >= 0);
    CHECK(eval_int(h, "R.t.slow - R.t['nested:n']") >= 0);
    CHECK_STR(eval(h, "R.args"), "a,2,nil");
    CHECK_INT(eval_int(h, "R.nargs"), 60);
    CHECK_INT(eval_int(h, "R.last"), 60);
    /* Yielding calls outside a task fail with an error that says where they belong. */
    CHECK(contains(eval(h, "R.kube_outside"),
                   "host.kube must be called from a reconcile or a task started with host.spawn"));
    CHECK(contains(eval(h, "R.sleep_outside"), "host.sleep must be called from a reconcile"));
    CHECK(contains(eval(h, "R.sleep_nested"), "host.sleep must be called from a reconcile"));
    /* The bare yield and the error are logged task failures, nothing more. */
    CHECK_INT(h->script_errors, 2);
    CHECK(log_has(e.log, "task failed", "task exploded", NULL));
    CHECK(log_has(e.log, "task failed", "yielded outside a host call", NULL));
    CHECK(log_has(e.log, "shutting down", "tasks finished", NULL));
    CHECK(metric(h, "internal_services_script_errors_total") == 2);
    /* The shutdown task was the last one alive. */
    CHECK(metric(h, "internal_services_lua_tasks") <= 1);
    env_close(&e);
}

/* host.config.args reach a command's main module byte for byte (NULs
 * included), and its host.shutdown reason comes back, capped. */
static void test_args(void) {
    size_t before = is_alloc_used();
    is_loop_t loop;
    is_lua_t h;
    CHECK_INT(is_loop_init(&loop), IS_OK);
    const is_lua_arg_t args[2] = { { "request.json", 12 }, { "a\0b", 3 } };
    is_lua_opts_t o = { .lua_dir = lua_dir, .main_module = "luahost_test.args", .args = args, .nargs = 2 };
    char err[512] = "";
    CHECK_INT(is_lua_init(&h, &loop, &o, err, sizeof err), IS_OK);
    CHECK(is_lua_exit_reason(&h) == NULL);
    capture_t cap;
    capture_begin(&cap);
    CHECK_INT(is_lua_start(&h, err, sizeof err), IS_OK);
    CHECK_INT(run_loop(&loop, 2000), 0);
    capture_end(&cap);
    free(cap.text);
    CHECK_INT(eval_int(&h, "R.n"), 2);
    CHECK_STR(eval(&h, "R.first"), "request.json");
    CHECK_INT(eval_int(&h, "R.second_len"), 3);
    CHECK_INT(eval_int(&h, "R.second_nul"), 0);
    CHECK_INT(is_lua_exit_code(&h), 4);
    const char *why = is_lua_exit_reason(&h);
    CHECK(why && strncmp(why, "why:xxx", 7) == 0);
    CHECK_INT(why ? strlen(why) : 0, 2047);
    is_lua_stop(&h);
    is_lua_close(&h);
    is_loop_close(&loop);
    CHECK_INT(is_alloc_used(), before);
}

/* ---- queues ---- */

static void test_queue(void) {
    env_t e;
    if (env_open(&e, "luahost_test.queue", 0, 0) != 0) return;
    is_lua_t *h = &e.h;
    env_run(&e, 5000, NULL);
    CHECK_INT(is_lua_exit_code(h), 0);

    /* nil and true: done once. */
    CHECK_INT(eval_int(h, "R.runs.done"), 1);
    CHECK_INT(eval_int(h, "R.runs.ok_true"), 1);
    /* Five adds while queued: one reconcile. */
    CHECK_INT(eval_int(h, "R.runs.dedup"), 1);
    /* add with a delay. */
    CHECK_INT(eval_int(h, "R.runs.later"), 1);
    CHECK(eval_int(h, "R.times.later[1] - R.t0") >= 100);
    /* requeue_after: looked at again after the delay, not as a failure. */
    CHECK_INT(eval_int(h, "R.runs.requeue"), 3);
    CHECK(eval_int(h, "R.times.requeue[2] - R.times.requeue[1]") >= 50);
    CHECK(eval_int(h, "R.times.requeue[3] - R.times.requeue[2]") >= 50);

    /* false, msg and error(): retried with exponential backoff, 20 ms
     * doubling up to 80 ms, within the 500 ms the module runs. */
    const char *keys[] = { "refuse", "raise" };
    long long failures = 0;
    for (int k = 0; k < 2; k++) {
        char expr[128];
        snprintf(expr, sizeof expr, "R.runs.%s", keys[k]);
        long long runs = eval_int(h, expr);
        failures += runs;
        CHECK(runs >= 3);
        CHECK(runs <= 10);
        const long long min_gap[] = { 20, 40, 80, 80, 80, 80, 80, 80, 80 };
        for (long long i = 2; i <= runs && i <= 10; i++) {
            snprintf(expr, sizeof expr, "R.times.%s[%lld] - R.times.%s[%lld]", keys[k], i, keys[k], i - 1);
            CHECK(eval_int(h, expr) >= min_gap[i - 2]);
        }
    }
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"refuse\"", "not ready yet"));
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"raise\"", "reconcile exploded"));
    CHECK(!log_has(e.log, "reconcile failed", "\"key\":\"requeue\"", NULL));

    long long all = eval_int(h, "(function() local n = 0 for _, v in pairs(R.runs) do n = n + v end return n end)()");
    CHECK(metric(h, "internal_services_reconcile_errors_total{queue=\"work\"}") == (double)failures);
    CHECK(metric(h, "internal_services_reconciles_total{queue=\"work\"}") == (double)all);
    CHECK_INT(h->reconcile_errors, failures);
    CHECK_INT(h->reconciles, all);

    /* host.count */
    CHECK(metric(h, "internal_services_widgets_total{label=\"blue\"}") == 3);
    CHECK(metric(h, "internal_services_widgets_total") == 1);
    CHECK(contains(eval(h, "R.bad_metric"), "metric name Bad-Name"));
    CHECK(contains(eval(h, "R.dup_queue"), "host.queue: work already exists"));
    CHECK(contains(eval(h, "R.no_queue"), "unknown queue nope"));
    env_close(&e);
}

/* ---- limits ---- */

/* Runs luahost_test.limits with the given keys. */
static int run_limits(env_t *e, const char *keys, size_t memory_limit, long budget) {
    if (env_open(e, "luahost_test.limits", memory_limit, budget) != 0) return -1;
    char expr[256];
    snprintf(expr, sizeof expr, "(function() LIMIT_KEYS = %s return true end)()", keys);
    CHECK_STR(eval(&e->h, expr), "true");
    env_run(e, 9000, NULL);
    return 0;
}

static void test_instruction_budget(void) {
    env_t e;
    if (run_limits(&e, "{ 'spin', 'spin_wrapped', 'spin_caught', 'spin_caught_wrapped', 'spin_across', 'plain' }",
                   (size_t)8 << 20, 1000000) != 0) return;
    is_lua_t *h = &e.h;
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"spin\"", "instruction budget of 1000000 exceeded"));
    /* A coroutine the script makes itself does not escape the budget. */
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"spin_wrapped\"", "instruction budget of 1000000 exceeded"));
    CHECK_INT(eval_int(h, "R.runs.spin_wrapped"), 2);
    /* Catching the budget error in a loop does not keep a reconcile alive:
     * after the first trip every instruction raises. */
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"spin_caught\"", "instruction budget of 1000000 exceeded"));
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"spin_caught_wrapped\"",
                  "instruction budget of 1000000 exceeded"));
    CHECK_INT(eval_int(h, "R.runs.spin_caught"), 2);
    CHECK_INT(eval_int(h, "R.runs.spin_caught_wrapped"), 2);
    CHECK_STR(eval(h, "R.ok.spin_caught and R.ok.spin_caught_wrapped"), "true");
    /* The budget covers a reconcile across its host calls. */
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"spin_across\"", "instruction budget"));
    /* ... and each run of a background task, which outlived it. */
    CHECK_STR(eval(h, "R.task_done"), "true");
    CHECK(!log_has(e.log, "task failed", NULL, NULL));
    /* Retried, and everything else ran. */
    CHECK_INT(eval_int(h, "R.runs.spin"), 2);
    CHECK_INT(eval_int(h, "R.runs.spin_across"), 2);
    CHECK_INT(eval_int(h, "R.runs.plain"), 1);
    CHECK_STR(eval(h, "R.ok.spin and R.ok.spin_across and R.ok.plain"), "true");
    CHECK(metric(h, "internal_services_reconcile_errors_total{queue=\"limits\"}") == 5);
    CHECK_STR(eval(h, "R.big"), "2097152");
    env_close(&e);
}

static void test_memory_limit(void) {
    env_t e;
    const size_t limit = (size_t)8 << 20;
    if (run_limits(&e, "{ 'bomb', 'plain', 'bomb_small' }", limit, 0) != 0) return;
    is_lua_t *h = &e.h;
    CHECK_INT(h->mem_limit, limit);
    CHECK(h->mem_used <= limit);
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"bomb\"", "not enough memory"));
    CHECK(log_has(e.log, "reconcile failed", "\"key\":\"bomb_small\"", "not enough memory"));
    CHECK_INT(eval_int(h, "R.runs.bomb"), 2);
    CHECK_INT(eval_int(h, "R.runs.bomb_small"), 2);
    CHECK_INT(eval_int(h, "R.runs.plain"), 1);
    CHECK_STR(eval(h, "R.ok.bomb and R.ok.bomb_small and R.ok.plain and R.task_done"), "true");
    CHECK(metric(h, "internal_services_reconcile_errors_total{queue=\"limits\"}") == 2);
    /* The host still allocates: a quarter of the cap after both bombs. */
    CHECK_STR(eval(h, "R.big"), "2097152");
    CHECK(metric(h, "internal_services_lua_memory_bytes") > 0);
    env_close(&e);
}

/* ---- the standard library scripts get ---- */

static void test_sandbox(void) {
    env_t e;
    if (env_open(&e, "luahost_test.tasks", 0, 0) != 0) return;
    is_lua_t *h = &e.h;
    static const char *const absent[] = { "io", "dofile", "loadfile", "os.execute", "os.exit",
                                          "os.remove", "os.getenv", "package.loadlib" };
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        if (strcmp(eval(h, absent[i]), "nil") != 0) fprintf(stderr, "present: %s\n", absent[i]);
        CHECK_STR(eval(h, absent[i]), "nil");
    }
    CHECK_STR(eval(h, "package.cpath"), "");
    /* Still there: what modules need. */
    CHECK_STR(eval(h, "type(os.time)"), "function");
    CHECK_STR(eval(h, "type(string.format)"), "function");
    CHECK_STR(eval(h, "require('cjson').encode({a = {1, 2}})"), "{\"a\":[1,2]}");
    CHECK_STR(eval(h, "require('cjson').decode('{\"x\":[true]}').x[1]"), "true");
    CHECK(contains(eval(h, "select(2, require('cjson.safe').decode('{'))"), "Expected object key string"));
    /* A native module cannot be found: the C search path is empty. */
    CHECK(contains(eval(h, "select(2, pcall(require, 'lfs'))"), "module 'lfs' not found"));
    /* host.config */
    CHECK_STR(eval(h, "require('host').config.namespace"), "ctl");
    CHECK_STR(eval(h, "require('host').config.lua_dir"), lua_dir);
    CHECK_STR(eval(h, "require('host').config.instruction_budget"), "50000000");
    CHECK_STR(eval(h, "require('host').config.memory_limit"), "268435456");
    env_close(&e);
}

/* ---- host.read_scripts ---- */

static void write_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_read_scripts(void) {
    env_t e;
    if (env_open(&e, "luahost_test.scripts", 0, 0) != 0) return;
    is_lua_t *h = &e.h;
    char dir[] = "/tmp/is_luahost_scripts_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[4096], path2[4096], expr[8192];
    write_file(dir, "b.lua", "return 'b'\n");
    write_file(dir, "a.lua", "return 'a'\n");
    write_file(dir, "notes.txt", "not a script\n");
    write_file(dir, "c.lua.bak", "old\n");
    write_file(dir, ".hidden.lua", "return 'hidden'\n");
    snprintf(path, sizeof path, "%s/dir.lua", dir);
    CHECK_INT(mkdir(path, 0700), 0);

    /* ConfigMap layout: <dir>/..2024_1/p.lua, ..data -> ..2024_1,
     * p.lua -> ..data/p.lua; an update swaps ..data. */
    snprintf(path, sizeof path, "%s/..2024_1", dir);
    CHECK_INT(mkdir(path, 0700), 0);
    write_file(path, "p.lua", "return 1\n");
    snprintf(path, sizeof path, "%s/..data", dir);
    CHECK_INT(symlink("..2024_1", path), 0);
    snprintf(path, sizeof path, "%s/p.lua", dir);
    CHECK_INT(symlink("..data/p.lua", path), 0);

    const char *scripts = "require('luahost_test.scripts')";
    /* A directory without scripts: an empty list (nothing to sort). */
    char empty[] = "/tmp/is_luahost_empty_XXXXXX";
    CHECK(mkdtemp(empty) != NULL);
    snprintf(expr, sizeof expr, "%s.names('%s')", scripts, empty);
    CHECK_STR(eval(h, expr), "");
    rmdir(empty);
    snprintf(expr, sizeof expr, "%s.names('%s')", scripts, dir);
    CHECK_STR(eval(h, expr), "a.lua,b.lua,p.lua");
    snprintf(expr, sizeof expr, "%s.source('%s', 'b.lua')", scripts, dir);
    CHECK_STR(eval(h, expr), "return 'b'\n");
    snprintf(expr, sizeof expr, "%s.source('%s', 'p.lua')", scripts, dir);
    CHECK_STR(eval(h, expr), "return 1\n");

    char sig1[4096], sig2[4096], sig3[4096];
    snprintf(expr, sizeof expr, "%s.signature('%s')", scripts, dir);
    snprintf(sig1, sizeof sig1, "%s", eval(h, expr));
    CHECK(sig1[0] != 0);
    CHECK_STR(eval(h, expr), sig1);

    /* A changed file changes the signature. */
    write_file(dir, "b.lua", "return 'b, changed'\n");
    snprintf(sig2, sizeof sig2, "%s", eval(h, expr));
    CHECK(strcmp(sig1, sig2) != 0);
    snprintf(expr, sizeof expr, "%s.source('%s', 'b.lua')", scripts, dir);
    CHECK_STR(eval(h, expr), "return 'b, changed'\n");

    /* The symlink swap, with a file of the same size and mtime: only the
     * target changed. */
    snprintf(path, sizeof path, "%s/..2024_2", dir);
    CHECK_INT(mkdir(path, 0700), 0);
    write_file(path, "p.lua", "return 2\n");
    snprintf(path, sizeof path, "%s/..2024_1/p.lua", dir);
    snprintf(path2, sizeof path2, "%s/..2024_2/p.lua", dir);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    struct timespec times[2] = { st.st_atim, st.st_mtim };
    CHECK_INT(utimensat(AT_FDCWD, path2, times, 0), 0);
    snprintf(path, sizeof path, "%s/..data_tmp", dir);
    snprintf(path2, sizeof path2, "%s/..data", dir);
    CHECK_INT(symlink("..2024_2", path), 0);
    CHECK_INT(rename(path, path2), 0);
    snprintf(expr, sizeof expr, "%s.signature('%s')", scripts, dir);
    snprintf(sig3, sizeof sig3, "%s", eval(h, expr));
    CHECK(strcmp(sig2, sig3) != 0);
    snprintf(expr, sizeof expr, "%s.source('%s', 'p.lua')", scripts, dir);
    CHECK_STR(eval(h, expr), "return 2\n");

    /* A missing directory: nil and a message. */
    snprintf(expr, sizeof expr, "%s.missing('%s/nope')", scripts, dir);
    CHECK(contains(eval(h, expr), "nil:cannot open policy directory"));

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
    env_close(&e);
}

/* ---- no C heap held across a Lua call that raises ---- */

/* Calls module.fn(arg) on the main thread with every allocation from the
 * n-th on failing (the Lua state's too), so each run raises at another
 * point inside the host function. Returns the pcall status. */
static int call_failing_after(is_lua_t *h, const char *module, const char *fn, const char *arg, long n) {
    lua_State *L = h->L;
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    lua_call(L, 1, 1);
    lua_getfield(L, -1, fn);
    lua_pushstring(L, arg);
    is_alloc_fail_after(n);
    int st = lua_pcall(L, 1, 1, 0);
    is_alloc_fail_after(0);
    lua_settop(L, top);
    return st;
}

static void test_raising_calls(void) {
    env_t e;
    /* host.log: a field whose __tostring raises, 10,000 times. */
    if (env_open(&e, "luahost_test.raising", 0, 0) != 0) return;
    size_t before = is_alloc_used();
    CHECK_INT(eval_int(&e.h, "require('luahost_test.raising').log_bombs(10000)"), 10000);
    lua_gc(e.h.L, LUA_GCCOLLECT, 0);
    /* What is still allocated is the state's own, not a buffer per call. */
    CHECK(is_alloc_used() < before + 64 * 1024);
    env_close(&e);
    if (env_open(&e, "luahost_test.raising", 0, 0) != 0) return;

    /* A log line has caps: a value and the message are cut, fields past
     * the line's cap are dropped; each says so. */
    capture_t cap;
    capture_begin(&cap);
    CHECK_STR(eval(&e.h, "require('luahost_test.raising').log_huge()"), "true");
    capture_end(&cap);
    CHECK(long_line_has(cap.text, "big value", "...(100000 bytes, cut at the log value limit of 16384)"));
    CHECK(long_line_has(cap.text, "mmmm...(50000 bytes, cut at the log value limit of 16384)", NULL));
    CHECK(long_line_has(cap.text, "many fields", "past the log line limit of 65536 bytes\""));
    size_t longest = 0;
    for (const char *l = cap.text; l && *l;) {
        const char *end = strchr(l, '\n');
        size_t n = end ? (size_t)(end - l) : strlen(l);
        if (n > longest) longest = n;
        l = end ? end + 1 : NULL;
    }
    CHECK(longest > 16384);
    CHECK(longest < 65536 + 16384 + 1024);
    free(cap.text);
    env_close(&e);

    /* host.read_scripts: out of memory at every allocation in turn, until
     * one run gets through; the state is closed after each few runs. */
    char dir[] = "/tmp/is_luahost_raising_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "p%02d.lua", i);
        write_file(dir, name, "return 'a policy of a few bytes'\n");
    }
    int raised = 0, passed = 0;
    for (long n = 1; n < 4000 && !passed; n += 1) {
        if (env_open(&e, "luahost_test.scripts", 0, 0) != 0) break;
        for (int k = 0; k < 8 && !passed; k++, n++) {
            int st = call_failing_after(&e.h, "luahost_test.scripts", "names", dir, n);
            if (st == LUA_OK) passed = 1;
            else raised++;
        }
        env_close(&e);
    }
    CHECK(raised > 40);
    CHECK_INT(passed, 1);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_INT(system(cmd), 0);
}

/* ---- host.kube ---- */

static const char *const status_not_found =
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
    "\"message\":\"pods \\\"missing\\\" not found\",\"reason\":\"NotFound\",\"code\":404}";

static void route(const fake_req_t *req, int *status, char *body, size_t cap, void *ud) {
    (void)ud;
    *status = 200;
    if (strstr(req->uri, "/pods/missing")) {
        *status = 404;
        snprintf(body, cap, "%s", status_not_found);
    } else if (strstr(req->uri, "/configmaps") && strstr(req->uri, "continue=next")) {
        snprintf(body, cap, "{\"metadata\":{\"resourceVersion\":\"8\"},\"items\":[{\"n\":2}]}");
    } else if (strstr(req->uri, "/configmaps")) {
        snprintf(body, cap, "{\"metadata\":{\"resourceVersion\":\"8\",\"continue\":\"next\"},"
                            "\"items\":[{\"n\":1}]}");
    } else if (strstr(req->uri, "/secrets") && strstr(req->uri, "watch=")) {
        *status = 500;
        snprintf(body, cap, "{\"kind\":\"Status\",\"code\":500,\"reason\":\"InternalError\",\"message\":\"no watch here\"}");
    } else if (strstr(req->uri, "/secrets")) {
        /* One object of 40 KB. */
        int n = snprintf(body, cap, "{\"metadata\":{\"resourceVersion\":\"8\"},\"items\":[{\"metadata\":"
                                    "{\"name\":\"big\",\"namespace\":\"ns\",\"resourceVersion\":\"8\"},\"data\":\"");
        while (n < 40000 && (size_t)n + 8 < cap) body[n++] = 'd';
        snprintf(body + n, cap - (size_t)n, "\"}]}");
    } else {
        snprintf(body, cap, "{\"kind\":\"Pod\",\"method\":\"%s\"}", req->method);
    }
}

/* The request the server saw whose method and path start match. */
static fake_req_t find_req(fake_api_t *api, const char *method, const char *uri_prefix) {
    for (int i = 0; i < fake_api_count(api); i++) {
        fake_req_t r = fake_api_req(api, i);
        if (strcmp(r.method, method) == 0 && strncmp(r.uri, uri_prefix, strlen(uri_prefix)) == 0)
            return r;
    }
    fake_req_t none;
    memset(&none, 0, sizeof none);
    return none;
}

static void test_kube_calls(env_t *e, fake_api_t *api, is_cluster_t *up, is_cluster_t *down) {
    is_lua_t *h = &e->h;
    CHECK_INT(is_lua_add_cluster(h, "api", up), IS_OK);
    CHECK_INT(is_lua_add_cluster(h, "down", down), IS_OK);
    env_run(e, 8000, NULL);

    CHECK_STR(eval(h, "R.get.code"), "200");
    CHECK_STR(eval(h, "R.get.body"), "{\"kind\":\"Pod\",\"method\":\"GET\"}");
    CHECK_STR(eval(h, "R.get.reason"), "nil");

    CHECK_STR(eval(h, "R.missing.code"), "404");
    CHECK_STR(eval(h, "R.missing.reason"), "NotFound");
    /* The API server's sentence alone: statuses the remote side reads must
     * not carry the internal cluster's URL, which only the log line has. */
    CHECK_STR(eval(h, "R.missing.message"), "pods \"missing\" not found");
    CHECK(contains(eval(h, "R.missing.error"), "GET http://127.0.0.1:"));
    CHECK(contains(eval(h, "R.missing.error"), "404 NotFound: pods \"missing\" not found"));
    CHECK_STR(eval(h, "R.missing.body"), status_not_found);

    CHECK_STR(eval(h, "R.down.code"), "0");
    CHECK_STR(eval(h, "R.down.reason"), "TransportError");
    CHECK(contains(eval(h, "R.down.message"), "127.0.0.1"));

    CHECK_STR(eval(h, "R.list.code"), "200");
    CHECK_STR(eval(h, "R.list.body"),
              "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[{\"n\":1},{\"n\":2}],"
              "\"metadata\":{\"resourceVersion\":\"8\"}}");
    CHECK_STR(find_req(api, "GET", "/api/v1/namespaces/ns/configmaps?").uri,
              "/api/v1/namespaces/ns/configmaps?labelSelector=app%3Dweb&limit=500");

    CHECK_STR(eval(h, "R.patch.code"), "200");
    fake_req_t r = find_req(api, "PATCH", "/api/v1/namespaces/ns/pods/p1");
    CHECK_STR(r.content_type, "application/json-patch+json");
    CHECK_STR(r.body, "[]");

    CHECK_STR(eval(h, "R.delete.code"), "200");
    r = find_req(api, "DELETE", "/api/v1/namespaces/ns/pods/p1");
    CHECK_STR(r.body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\",\"propagationPolicy\":\"Background\","
                      "\"preconditions\":{\"uid\":\"u-1\",\"resourceVersion\":\"9\"}}");

    CHECK_STR(eval(h, "R.status.code"), "200");
    r = find_req(api, "PUT", "/apis/");
    CHECK_STR(r.uri, "/apis/appstudio.redhat.com/v1alpha1/namespaces/ns/internalrequests/r1/status");
    CHECK_STR(r.body, "{}");

    CHECK_STR(eval(h, "R.ns.code"), "200");
    CHECK_STR(find_req(api, "POST", "/api/").uri, "/api/v1/namespaces");

    CHECK(contains(eval(h, "R.unknown_cluster"), "host.kube: unknown cluster nope"));
    CHECK(contains(eval(h, "R.no_body"), "host.kube: create needs a body"));
    CHECK(contains(eval(h, "R.bad_patch"), "host.kube: unknown patch_type yaml"));

    CHECK(metric(h, "internal_services_api_failures_total{cluster=\"down\"}") == 1);
    CHECK(metric(h, "internal_services_api_requests_total{cluster=\"api\"}") >= 8);
}

static void test_kube(void) {
    env_t e;
    fake_api_t api;
    is_cluster_t up, down;
    if (fake_api_start(&api, route, NULL) != 0) {
        CHECK(!"fake API server did not start");
        return;
    }
    if (env_open(&e, "luahost_test.kube", 0, 0) == 0) {
        /* The clusters belong to the caller and outlive the host: what they
         * hold is not the host's to give back. */
        size_t before_clusters = is_alloc_used();
        CHECK_INT(fake_cluster_init(&up, &e.loop, "api", api.port), IS_OK);
        CHECK_INT(fake_cluster_init(&down, &e.loop, "down", fake_refused_port()), IS_OK);
        e.alloc_before += is_alloc_used() - before_clusters;
        test_kube_calls(&e, &api, &up, &down);
        env_close(&e);
        is_cluster_close(&up);
        is_cluster_close(&down);
    }
    fake_api_stop(&api);
}

/* ---- is_lua_start failures ---- */

static void start_fails(const char *module, const char *want1, const char *want2, const char *log_want) {
    env_t e;
    if (env_open(&e, module, 0, 0) != 0) return;
    char err[1024] = "";
    capture_t cap;
    capture_begin(&cap);
    int rc = is_lua_start(&e.h, err, sizeof err);
    capture_end(&cap);
    e.log = cap.text;
    CHECK_INT(rc, IS_ELUA);
    if (!contains(err, want1) || !contains(err, want2)) fprintf(stderr, "err: %s\n", err);
    CHECK(contains(err, want1));
    CHECK(contains(err, want2));
    if (log_want) CHECK(log_has(e.log, log_want, NULL, NULL));
    env_close(&e);
}

/* ---- graceful shutdown ---- */

/* An informer event delivered with the state at its memory cap: pushing
 * the object fails, which must be that handler's error in the log, not a
 * Lua panic outside protected mode that aborts the process. */
static void test_event_oom(void) {
    env_t e;
    fake_api_t api;
    is_cluster_t up;
    if (fake_api_start(&api, route, NULL) != 0) {
        CHECK(!"fake API server did not start");
        return;
    }
    if (env_open(&e, "luahost_test.event_oom", (size_t)4 << 20, 0) == 0) {
        size_t before_cluster = is_alloc_used();
        CHECK_INT(fake_cluster_init(&up, &e.loop, "api", api.port), IS_OK);
        e.alloc_before += is_alloc_used() - before_cluster;
        CHECK_INT(is_lua_add_cluster(&e.h, "api", &up), IS_OK);
        char err[512] = "";
        capture_t cap;
        capture_begin(&cap);
        CHECK_INT(is_lua_start(&e.h, err, sizeof err), IS_OK);
        /* Until the list has arrived and its event failed (slow under
         * valgrind); nothing else stops the loop. */
        for (int i = 0; i < 100 && e.h.script_errors == 0; i++) run_loop(&e.loop, 100);
        CHECK(e.h.script_errors >= 1);
        capture_end(&cap);
        /* Give the memory back, without allocating, and look. */
        lua_State *L = e.h.L;
        lua_getglobal(L, "R");
        lua_pushnil(L);
        lua_setfield(L, -2, "fill");
        lua_pop(L, 1);
        lua_gc(L, LUA_GCCOLLECT, 0);
        CHECK(log_has(cap.text, "informer event handler failed", "\"informer\":\"big\"", "not enough memory"));
        CHECK_STR(eval(&e.h, "1 + 1"), "2");
        free(cap.text);
        env_close(&e);
        is_cluster_close(&up);
    }
    fake_api_stop(&api);
}

static void test_shutdown(void) {
    env_t e;
    if (env_open(&e, "luahost_test.stopping", 0, 0) != 0) return;
    is_lua_t *h = &e.h;
    env_run(&e, 5000, NULL);
    /* stop() yields on a host call; the loop runs until it returns. */
    CHECK_INT(is_lua_shutdown(h, 2000), IS_OK);
    CHECK_STR(eval(h, "R.stopped"), "true");
    env_close(&e);

    /* A stop() that outlives the timeout is abandoned with IS_ELIMIT. */
    if (env_open(&e, "luahost_test.stopping", 0, 0) != 0) return;
    h = &e.h;
    CHECK_STR(eval(h, "(function() STOP_SECONDS = 30 return true end)()"), "true");
    env_run(&e, 5000, NULL);
    is_loop_update_time(&e.loop);
    uint64_t t0 = is_loop_now(&e.loop);
    CHECK_INT(is_lua_shutdown(h, 300), IS_ELIMIT);
    is_loop_update_time(&e.loop);
    CHECK(is_loop_now(&e.loop) - t0 >= 300);
    CHECK(is_loop_now(&e.loop) - t0 < 5000);
    CHECK_STR(eval(h, "R.stopped"), "false");
    env_close(&e);

    /* A main module without stop() has nothing to run. */
    if (env_open(&e, "luahost_test.tasks", 0, 0) != 0) return;
    env_run(&e, 5000, NULL);
    CHECK_INT(is_lua_shutdown(&e.h, 100), IS_OK);
    env_close(&e);
}

static void test_start_failures(void) {
    start_fails("luahost_test.missing", "loading luahost_test.missing",
                "module 'luahost_test.missing' not found", NULL);
    start_fails("luahost_test.bad_start", "luahost_test.bad_start.start failed", "see the log",
                "cannot start: no configuration");
    start_fails("luahost_test.not_table", "luahost_test.not_table must return a table", "start", NULL);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *fixtures = getenv("IS_FIXTURES");
    snprintf(lua_dir, sizeof lua_dir, "%s/lua", fixtures ? fixtures : "tests/fixtures");
    size_t start = is_alloc_used();
    RUN(test_metric);
    RUN(test_tasks);
    RUN(test_args);
    RUN(test_queue);
    RUN(test_instruction_budget);
    RUN(test_memory_limit);
    RUN(test_sandbox);
    RUN(test_read_scripts);
    RUN(test_raising_calls);
    RUN(test_kube);
    RUN(test_event_oom);
    RUN(test_shutdown);
    RUN(test_start_failures);
    CHECK_INT(is_alloc_used(), start);
    curl_global_cleanup();
    TESTING_DONE();
}
