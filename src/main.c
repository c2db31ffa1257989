/* internal-services: the controller executable.
 *
 * Wires the pieces: two cluster connections (internal, remote), the Lua
 * host that declares informers and queues, the probes and metrics server,
 * and the event loop that drives them all. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_http.h"
#include "is_httpd.h"
#include "is_kubeconfig.h"
#include "is_log.h"
#include "is_loop.h"
#include "is_luahost.h"
#include "is_metrics.h"

#ifndef IS_DEFAULT_LUA_DIR
#define IS_DEFAULT_LUA_DIR "/usr/share/internal-services/lua"
#endif
#ifndef IS_DEFAULT_POLICY_DIR
#define IS_DEFAULT_POLICY_DIR "/etc/internal-services/policies"
#endif

typedef struct options_s {
    const char *kubeconfig;
    const char *context;
    const char *remote_kubeconfig;
    const char *remote_context;
    const char *metrics_addr;
    const char *health_addr;
    int leader_elect;
    const char *leader_election_id;
    const char *lua_dir;
    const char *policy_dir;
    size_t lua_memory_limit;
    long lua_instruction_budget;
    double deadline_grace;
    double default_timeout;
    int max_concurrent_reconciles;
    int log_level;
} options_t;

static const char usage[] =
    "Usage: internal-services [options]\n"
    "\n"
    "Runs the internal-services controller: watches InternalRequests on a remote\n"
    "cluster and runs the Tekton pipelines they ask for on this (internal) cluster.\n"
    "\n"
    "Options:\n"
    "  --kubeconfig PATH                   internal cluster (default: $KUBECONFIG, else in-cluster)\n"
    "  --context NAME                      context in --kubeconfig (default: current-context)\n"
    "  --remote-cluster-config-file PATH   kubeconfig of the remote cluster (required)\n"
    "  --remote-context NAME               context in the remote kubeconfig\n"
    "  --metrics-bind-address ADDR         /metrics address, \"0\" to disable (default :8080)\n"
    "  --health-probe-bind-address ADDR    /healthz and /readyz address, \"0\" to disable (default :8081)\n"
    "  --leader-elect                      run only while holding the leader Lease\n"
    "  --leader-election-id NAME           name of the leader Lease (default internal-services-leader)\n"
    "  --lua-dir DIR                       controller Lua modules (default " IS_DEFAULT_LUA_DIR ")\n"
    "  --policy-dir DIR                    policy scripts (default " IS_DEFAULT_POLICY_DIR ")\n"
    "  --lua-memory-limit SIZE             memory cap of the Lua state, e.g. 256Mi (default 256Mi)\n"
    "  --lua-instruction-budget N          instructions per reconcile (default 50000000)\n"
    "  --deadline-grace SECONDS            grace after a request's pipeline timeout (default 60)\n"
    "  --default-timeout SECONDS           pipeline timeout when a request sets none (default 3600)\n"
    "  --max-concurrent-reconciles N       requests reconciled at the same time (default 50)\n"
    "  --log-level LEVEL                   debug, info, warn or error (default info)\n"
    "  --help                              show this help\n"
    "  --version                           show the version\n"
    "\n"
    "Environment: SERVICE_NAMESPACE is the controller's namespace (default \"default\").\n";

static int parse_size(const char *s, size_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return IS_EINVAL;
    unsigned long long mul = 1;
    if (!strcmp(end, "Ki")) mul = 1ULL << 10;
    else if (!strcmp(end, "Mi")) mul = 1ULL << 20;
    else if (!strcmp(end, "Gi")) mul = 1ULL << 30;
    else if (*end) return IS_EINVAL;
    if (v == 0 || v > (~0ULL) / mul) return IS_EINVAL;
    *out = (size_t)(v * mul);
    return IS_OK;
}

static int parse_number(const char *s, double min, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < min) return IS_EINVAL;
    *out = v;
    return IS_OK;
}

/* Returns 0 to run, 1 when the process should exit with *code. */
static int parse_options(int argc, char **argv, options_t *o, int *code) {
    enum { O_KUBECONFIG = 1, O_CONTEXT, O_REMOTE, O_REMOTE_CONTEXT, O_METRICS, O_HEALTH, O_LEADER,
           O_LEADER_ID, O_LUA_DIR, O_POLICY_DIR, O_LUA_MEM, O_LUA_BUDGET, O_GRACE, O_TIMEOUT,
           O_LOG_LEVEL, O_MAX_RECONCILES, O_HELP, O_VERSION };
    static const struct option longopts[] = {
        { "kubeconfig", required_argument, NULL, O_KUBECONFIG },
        { "context", required_argument, NULL, O_CONTEXT },
        { "remote-cluster-config-file", required_argument, NULL, O_REMOTE },
        { "remote-context", required_argument, NULL, O_REMOTE_CONTEXT },
        { "metrics-bind-address", required_argument, NULL, O_METRICS },
        { "health-probe-bind-address", required_argument, NULL, O_HEALTH },
        { "leader-elect", optional_argument, NULL, O_LEADER },
        { "leader-election-id", required_argument, NULL, O_LEADER_ID },
        { "lua-dir", required_argument, NULL, O_LUA_DIR },
        { "policy-dir", required_argument, NULL, O_POLICY_DIR },
        { "lua-memory-limit", required_argument, NULL, O_LUA_MEM },
        { "lua-instruction-budget", required_argument, NULL, O_LUA_BUDGET },
        { "deadline-grace", required_argument, NULL, O_GRACE },
        { "default-timeout", required_argument, NULL, O_TIMEOUT },
        { "log-level", required_argument, NULL, O_LOG_LEVEL },
        { "max-concurrent-reconciles", required_argument, NULL, O_MAX_RECONCILES },
        { "help", no_argument, NULL, O_HELP },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 },
    };
    double n;
    int c, idx = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, &idx)) != -1) {
        switch (c) {
        case O_KUBECONFIG: o->kubeconfig = optarg; break;
        case O_CONTEXT: o->context = optarg; break;
        case O_REMOTE: o->remote_kubeconfig = optarg; break;
        case O_REMOTE_CONTEXT: o->remote_context = optarg; break;
        case O_METRICS: o->metrics_addr = optarg; break;
        case O_HEALTH: o->health_addr = optarg; break;
        case O_LEADER:
            if (!optarg || !strcmp(optarg, "true")) o->leader_elect = 1;
            else if (!strcmp(optarg, "false")) o->leader_elect = 0;
            else goto bad_value;
            break;
        case O_LEADER_ID: o->leader_election_id = optarg; break;
        case O_LUA_DIR: o->lua_dir = optarg; break;
        case O_POLICY_DIR: o->policy_dir = optarg; break;
        case O_LUA_MEM:
            if (parse_size(optarg, &o->lua_memory_limit) != IS_OK) goto bad_value;
            break;
        case O_LUA_BUDGET:
            if (parse_number(optarg, 1000, &n) != IS_OK) goto bad_value;
            o->lua_instruction_budget = (long)n;
            break;
        case O_GRACE:
            if (parse_number(optarg, 0, &o->deadline_grace) != IS_OK) goto bad_value;
            break;
        case O_TIMEOUT:
            if (parse_number(optarg, 1, &o->default_timeout) != IS_OK) goto bad_value;
            break;
        case O_MAX_RECONCILES:
            if (parse_number(optarg, 1, &n) != IS_OK || n > 100000 || n != (int)n) goto bad_value;
            o->max_concurrent_reconciles = (int)n;
            break;
        case O_LOG_LEVEL:
            if ((o->log_level = is_log_parse_level(optarg)) < 0) goto bad_value;
            break;
        case O_HELP:
            fputs(usage, stdout);
            *code = 0;
            return 1;
        case O_VERSION:
            printf("internal-services %s\n", IS_VERSION);
            *code = 0;
            return 1;
        case ':':
            fprintf(stderr, "internal-services: %s needs a value (see --help)\n", argv[optind - 1]);
            *code = 2;
            return 1;
        default:
            fprintf(stderr, "internal-services: unknown option %s (see --help)\n", argv[optind - 1]);
            *code = 2;
            return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "internal-services: unexpected argument %s (see --help)\n", argv[optind]);
        *code = 2;
        return 1;
    }
    if (!o->remote_kubeconfig) {
        fprintf(stderr, "internal-services: --remote-cluster-config-file is required (see --help)\n");
        *code = 2;
        return 1;
    }
    return 0;
bad_value:
    fprintf(stderr, "internal-services: invalid value \"%s\" for --%s (see --help)\n", optarg,
            longopts[idx].name);
    *code = 2;
    return 1;
}

typedef struct app_s {
    is_loop_t loop;
    is_cluster_t internal, remote;
    is_lua_t lua;
    is_httpd_t metrics, health;
    is_metrics_t registry;    /* outlives the clusters and the Lua host */
} app_t;

static is_loop_t *signal_loop;

static void on_signal(int sig) {
    (void)sig;
    if (signal_loop) is_loop_stop(signal_loop);
}

static int serve(const char *path, is_buf_t *body, const char **type, void *ud) {
    app_t *app = ud;
    if (!strcmp(path, "/healthz") || !strcmp(path, "/livez")) {
        is_buf_appends(body, "ok\n");
        return 200;
    }
    if (!strcmp(path, "/readyz")) {
        int ready = is_lua_ready(&app->lua);
        is_buf_appends(body, ready ? "ok\n" : "informers not synced\n");
        return ready ? 200 : 503;
    }
    if (!strcmp(path, "/metrics")) {
        *type = "text/plain; version=0.0.4; charset=utf-8";
        is_buf_printf(body, "# HELP internal_services_memory_bytes Bytes the host holds, the Lua state included.\n"
                      "# TYPE internal_services_memory_bytes gauge\ninternal_services_memory_bytes %zu\n",
                      is_alloc_used());
        if (is_metrics_render(&app->registry, body) != IS_OK || is_lua_metrics(&app->lua, body) != IS_OK) {
            is_buf_reset(body);
            is_buf_appends(body, "cannot render the metrics\n");
            return 500;
        }
        return 200;
    }
    is_buf_appends(body, "not found\n");
    return 404;
}

static int load_cluster(app_t *app, is_cluster_t *c, const char *name, const char *path,
                        const char *context) {
    is_kubeconfig_t kc;
    char err[512];
    int rc;
    if (path) rc = is_kubeconfig_load(&kc, path, context, err, sizeof err);
    else rc = is_kubeconfig_in_cluster(&kc, NULL, err, sizeof err);
    if (rc != IS_OK) {
        fprintf(stderr, "internal-services: %s cluster: %s\n", name, err);
        is_kubeconfig_free(&kc);
        return rc;
    }
    rc = is_cluster_init(c, &app->loop, name, &kc);
    is_kubeconfig_free(&kc);
    if (rc == IS_OK) rc = is_cluster_set_metrics(c, &app->registry);
    if (rc == IS_OK) rc = is_lua_add_cluster(&app->lua, name, c);
    if (rc != IS_OK) fprintf(stderr, "internal-services: %s cluster: %s\n", name, is_strerror(rc));
    return rc;
}

int main(int argc, char **argv) {
    options_t o = {
        .metrics_addr = ":8080", .health_addr = ":8081",
        .leader_election_id = "internal-services-leader",
        .lua_dir = IS_DEFAULT_LUA_DIR, .policy_dir = IS_DEFAULT_POLICY_DIR,
        .deadline_grace = 60, .default_timeout = 3600, .max_concurrent_reconciles = 50,
        .log_level = IS_LOG_INFO,
    };
    int code = 0;
    if (!o.kubeconfig) o.kubeconfig = getenv("KUBECONFIG");
    if (parse_options(argc, argv, &o, &code)) return code;
    is_log_set_level(o.log_level);

    const char *ns = getenv("SERVICE_NAMESPACE");
    if (!ns || !ns[0]) ns = "default";
    char hostname[128] = "internal-services";
    gethostname(hostname, sizeof hostname - 1);
    char identity[192];
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(identity, sizeof identity, "%s_%08x", hostname, (unsigned)rand());

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "internal-services: cannot initialise libcurl\n");
        return 1;
    }
    app_t *app = is_calloc(1, sizeof *app);
    if (!app || is_loop_init(&app->loop) != IS_OK || is_metrics_init(&app->registry) != IS_OK ||
        is_metrics_register_process(&app->registry) != IS_OK) {
        fprintf(stderr, "internal-services: out of memory\n");
        return 1;
    }
    char err[512];
    is_lua_opts_t lo = {
        .lua_dir = o.lua_dir, .policy_dir = o.policy_dir, .memory_limit = o.lua_memory_limit,
        .instruction_budget = o.lua_instruction_budget, .namespace = ns,
        .leader_elect = o.leader_elect, .leader_election_id = o.leader_election_id,
        .identity = identity, .deadline_grace = o.deadline_grace, .default_timeout = o.default_timeout,
        .max_concurrent_reconciles = o.max_concurrent_reconciles,
        .metrics = &app->registry,
    };
    int rc = is_lua_init(&app->lua, &app->loop, &lo, err, sizeof err);
    if (rc != IS_OK) {
        fprintf(stderr, "internal-services: %s\n", err);
        code = 1;
        goto out_loop;
    }
    if (load_cluster(app, &app->internal, "internal", o.kubeconfig, o.context) != IS_OK ||
        load_cluster(app, &app->remote, "remote", o.remote_kubeconfig, o.remote_context) != IS_OK) {
        code = 1;
        goto out_lua;
    }
    if (is_httpd_start(&app->metrics, &app->loop, o.metrics_addr, serve, app, err, sizeof err) != IS_OK ||
        is_httpd_start(&app->health, &app->loop, o.health_addr, serve, app, err, sizeof err) != IS_OK) {
        fprintf(stderr, "internal-services: %s\n", err);
        code = 1;
        goto out_httpd;
    }

    signal_loop = &app->loop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    is_buf_t f;
    is_buf_init(&f);
    is_buf_printf(&f, "\"version\":\"%s\",\"namespace\":\"%s\",\"internal\":\"%s\",\"remote\":\"%s\","
                      "\"metrics_port\":%d,\"health_port\":%d,\"identity\":\"%s\"",
                  IS_VERSION, ns, app->internal.kc.server, app->remote.kc.server,
                  is_httpd_port(&app->metrics), is_httpd_port(&app->health), identity);
    is_log_write(IS_LOG_INFO, "starting", f.data);
    is_buf_free(&f);

    if (is_lua_start(&app->lua, err, sizeof err) != IS_OK) {
        fprintf(stderr, "internal-services: %s\n", err);
        code = 1;
        goto out_httpd;
    }
    rc = is_loop_run(&app->loop);
    code = is_lua_exit_code(&app->lua);
    /* A signal, not a script, stopped the loop: let the scripts finish up
     * (release the leader Lease) for a few seconds. */
    if (!code) is_lua_shutdown(&app->lua, 5000);
    if (rc != IS_OK && !code) code = 1;
    is_log_write(IS_LOG_INFO, "stopped", NULL);
    signal_loop = NULL;

out_httpd:
    is_httpd_stop(&app->metrics);
    is_httpd_stop(&app->health);
out_lua:
    is_lua_stop(&app->lua);
    is_lua_close(&app->lua);
    if (app->internal.name) is_cluster_close(&app->internal);
    if (app->remote.name) is_cluster_close(&app->remote);
out_loop:
    is_loop_close(&app->loop);
    is_metrics_free(&app->registry);
    is_free(app);
    curl_global_cleanup();
    return code;
}
