/* The Lua bridge: one lua_State, the `host` module that is the only door
 * between scripts and the host, and coroutine scheduling.
 *
 * Every reconcile and background task runs as a coroutine; a host call that
 * does I/O (host.kube, host.sleep) starts the operation and yields, and the
 * loop resumes the coroutine when the answer arrives, so thousands of
 * reconciles share one thread without locks. Each coroutine has an
 * instruction budget (a count hook) and the whole state a memory cap (the
 * allocator refuses past it): a runaway script fails its own call with a
 * clear error, never the process. The API is documented in docs/lua-api.md. */
#ifndef IS_LUAHOST_H
#define IS_LUAHOST_H

#include <stddef.h>
#include <stdint.h>
#include "is_loop.h"
#include "is_http.h"
#include "is_map.h"
#include "is_metrics.h"

typedef struct is_lua_s is_lua_t;

/* One argument for a main module run as a command (host.config.args):
 * bytes, not necessarily NUL-terminated text. */
typedef struct is_lua_arg_s {
    const char *data;
    size_t len;
} is_lua_arg_t;

/* host.log caps: one field value (and the message) is cut past
 * IS_LUA_LOG_VALUE_MAX bytes, and fields past IS_LUA_LOG_FIELDS_MAX bytes
 * of a line are dropped; both say so in the line. */
#define IS_LUA_LOG_VALUE_MAX (16 * 1024)
#define IS_LUA_LOG_FIELDS_MAX (64 * 1024)

typedef struct is_lua_opts_s {
    const char *lua_dir;        /* modules: <lua_dir>/?.lua, ?/init.lua */
    const char *policy_dir;     /* exposed as host.config.policy_dir */
    const char *main_module;    /* default "internal_services.main" */
    size_t memory_limit;        /* bytes for the whole state; default 256 MiB */
    long instruction_budget;    /* per reconcile; default 50 million */
    const char *namespace;      /* host.config.namespace */
    int leader_elect;
    const char *leader_election_id;
    double lease_duration;      /* seconds; 0 = the elector's default */
    double renew_deadline;
    double retry_period;
    const char *identity;       /* this process, for leader election */
    double deadline_grace;      /* host.config.deadline_grace, seconds */
    double default_timeout;     /* host.config.default_timeout, seconds */
    int max_concurrent_reconciles; /* host.config.max_concurrent_reconciles */
    const is_lua_arg_t *args;   /* host.config.args, copied into the state */
    size_t nargs;
    is_metrics_t *metrics;      /* host.metric, queue and informer metrics; NULL = none */
} is_lua_opts_t;

struct is_lua_s {
    void *L;                    /* lua_State*; void here so users need no Lua headers */
    is_loop_t *loop;
    size_t mem_used;
    size_t mem_limit;
    long instruction_budget;
    is_map_t clusters;          /* name -> is_cluster_t* (not owned) */
    is_map_t informers;         /* name -> internal (owned) */
    is_map_t queues;            /* name -> internal (owned) */
    is_metrics_t *metrics;      /* not owned; must outlive the host */
    int tasks;                  /* live coroutines */
    int stopping;
    unsigned long reconciles, reconcile_errors, script_errors;
    void *priv__;               /* tasks, counters, main module name */
};

int is_lua_init(is_lua_t *h, is_loop_t *loop, const is_lua_opts_t *opts,
                char *err, size_t errlen);
/* The cluster stays owned by the caller and must outlive the host. */
int is_lua_add_cluster(is_lua_t *h, const char *name, is_cluster_t *c);
/* Requires the main module and calls its start(); it declares informers and
 * queues through host.watch and host.queue. */
int is_lua_start(is_lua_t *h, char *err, size_t errlen);
/* Stops informers and queues; running coroutines are abandoned. */
void is_lua_stop(is_lua_t *h);
/* A graceful stop: stops the informers, then runs the main module's
 * stop() (if it has one) as a task, driving the loop until it returns or
 * timeout_ms pass (IS_ELIMIT). The controller uses it to release its
 * leader Lease on SIGTERM. */
int is_lua_shutdown(is_lua_t *h, uint64_t timeout_ms);
void is_lua_close(is_lua_t *h);
/* The exit code a script asked for with host.shutdown (0 if none). */
int is_lua_exit_code(const is_lua_t *h);
/* The reason it gave (cut at 2047 bytes), or NULL when no script called
 * host.shutdown. */
const char *is_lua_exit_reason(const is_lua_t *h);
/* 1 when every informer has synced at least once (also when none is
 * declared yet, as on a replica waiting for leadership). */
int is_lua_ready(const is_lua_t *h);
/* Appends Prometheus text lines for the host's counters. */
int is_lua_metrics(const is_lua_t *h, struct is_buf_s *out);

#endif
