/* The Lua bridge's overhead: one thread, one lua_State, M reconciles in
 * flight at once, each a coroutine that yields on host.sleep a few times
 * (standing in for API calls) while holding a decoded InternalRequest.
 *
 * The main module is bench/lua/bench_host/main.lua; it reads its parameters
 * from package.loaded["bench_host.params"], which this program fills in
 * before is_lua_start. Prints wall time, coroutine resumes per second, and
 * Lua memory (is_lua_t.mem_used) per in-flight reconcile: the peak as the
 * garbage collector leaves it, and what is live after a full collection
 * taken while all M are parked.
 *
 * Usage (from the repository root):
 *   bench_lua_host [inflight] [sleeps] [sleep_ms]   (default 10000 5 10)
 * Environment: IS_BENCH_LUA_DIR (default bench/lua), IS_FIXTURES (default
 * tests/fixtures). */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "is_alloc.h"
#include "is_err.h"
#include "is_loop.h"
#include "is_luahost.h"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = bench_xmalloc((size_t)n + 1);
    size_t got = fread(p, 1, (size_t)n, f);
    fclose(f);
    p[got] = '\0';
    *len = got;
    return p;
}

static void set_params(lua_State *L, long inflight, long sleeps, double sleep_s, const char *request,
                       size_t request_len) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, inflight);
    lua_setfield(L, -2, "inflight");
    lua_pushinteger(L, sleeps);
    lua_setfield(L, -2, "sleeps");
    lua_pushnumber(L, sleep_s);
    lua_setfield(L, -2, "sleep_seconds");
    lua_pushlstring(L, request, request_len);
    lua_setfield(L, -2, "request");
    lua_setfield(L, -2, "bench_host.params");
    lua_pop(L, 1);
}

int main(int argc, char **argv) {
    long inflight = bench_arg(argc, argv, 1, 10000);
    long sleeps = bench_arg(argc, argv, 2, 5);
    long sleep_ms = bench_arg(argc, argv, 3, 10);
    const char *lua_dir = getenv("IS_BENCH_LUA_DIR") ? getenv("IS_BENCH_LUA_DIR") : "bench/lua";
    const char *fixtures = getenv("IS_FIXTURES") ? getenv("IS_FIXTURES") : "tests/fixtures";
    char path[4096];
    snprintf(path, sizeof path, "%s/requests/basic.json", fixtures);
    size_t request_len;
    char *request = read_file(path, &request_len);
    if (!request) {
        fprintf(stderr, "bench_lua_host: cannot read %s (run from the repository root)\n", path);
        return 1;
    }

    is_loop_t loop;
    is_lua_t h;
    char err[512];
    if (is_loop_init(&loop) != IS_OK) return 1;
    is_lua_opts_t opts = {
        .lua_dir = lua_dir,
        .main_module = "bench_host.main",
        .memory_limit = (size_t)2 << 30,
    };
    if (is_lua_init(&h, &loop, &opts, err, sizeof err) != IS_OK) {
        fprintf(stderr, "bench_lua_host: %s\n", err);
        return 1;
    }
    set_params(h.L, inflight, sleeps, (double)sleep_ms / 1000.0, request, request_len);
    size_t lua_base = h.mem_used, host_base = is_alloc_used();
    double t0 = bench_now(), cpu0 = bench_cpu();
    if (is_lua_start(&h, err, sizeof err) != IS_OK) {
        fprintf(stderr, "bench_lua_host: %s\n", err);
        return 1;
    }
    size_t lua_idle = h.mem_used;   /* module loaded, queue declared, keys queued */

    size_t peak = 0, peak_host = 0, live_all_parked = 0;
    int max_tasks = 0;
    unsigned long iterations = 0;
    while (h.reconciles < (unsigned long)inflight) {
        if (is_loop_run_once(&loop, 100) != IS_OK) break;
        iterations++;
        if (h.mem_used > peak) peak = h.mem_used;
        if (is_alloc_used() > peak_host) peak_host = is_alloc_used();
        if (h.tasks > max_tasks) max_tasks = h.tasks;
        /* Once, when every reconcile is parked in host.sleep: what is live. */
        if (!live_all_parked && h.tasks >= inflight) {
            lua_gc(h.L, LUA_GCCOLLECT);
            live_all_parked = h.mem_used;
        }
    }
    double wall = bench_now() - t0, cpu = bench_cpu() - cpu0;
    if (h.reconcile_errors || h.reconciles != (unsigned long)inflight) {
        fprintf(stderr, "bench_lua_host: %lu reconciles, %lu failed\n", h.reconciles, h.reconcile_errors);
        return 1;
    }
    double resumes = (double)inflight * (double)(sleeps + 1);
    double ideal = (double)(sleeps * sleep_ms) / 1000.0;
    printf("lua host: %ld reconciles in flight together (max %d coroutines seen), %ld x host.sleep(%.3f) each\n",
           inflight, max_tasks, sleeps, (double)sleep_ms / 1000.0);
    printf("  wall %.3f s (%.3f s of it asleep by design), %lu loop iterations\n", wall, ideal, iterations);
    printf("  %.0f coroutine resumes/s of wall time (%.0f resumes: one start and one per wake-up), "
           "%.0f reconciles/s\n", resumes / wall, resumes, (double)inflight / wall);
    printf("  CPU %.3f s: %.0f resumes per CPU second, %.1f us of CPU per resume (decode, sleeps, queue)\n",
           cpu, resumes / cpu, cpu / resumes * 1e6);
    printf("  Lua memory: %.1f MiB before start, %.1f MiB after start; peak %.1f MiB = %.0f B per in-flight "
           "reconcile (garbage included); live after a full GC with all parked %.0f B per reconcile\n",
           (double)lua_base / 1048576.0, (double)lua_idle / 1048576.0, (double)peak / 1048576.0,
           (double)(peak - lua_idle) / (double)inflight,
           live_all_parked ? (double)(live_all_parked - lua_idle) / (double)inflight : 0.0);
    printf("  all host memory (is_alloc_used, Lua included) at peak: %.0f B per in-flight reconcile\n",
           (double)(peak_host - host_base - (lua_idle - lua_base)) / (double)inflight);
    bench_figure("lua_wall", wall, "s");
    bench_figure("lua_resumes_per_s", resumes / wall, "resumes/s");
    bench_figure("lua_resumes_per_cpu_s", resumes / cpu, "resumes/s");
    bench_figure("lua_peak_bytes_per_inflight", (double)(peak - lua_idle) / (double)inflight, "B");
    bench_figure("lua_live_bytes_per_inflight",
                 live_all_parked ? (double)(live_all_parked - lua_idle) / (double)inflight : 0.0, "B");
    is_lua_close(&h);
    is_loop_close(&loop);
    free(request);
    return 0;
}
