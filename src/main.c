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
/* The existing controller's LeaderElectionID, so both lock the same Lease
 * and a rolling update between them never runs two leaders. */
#define IS_DEFAULT_LEASE "b548bb9d.redhat.com"
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
    double lease_duration, renew_deadline, retry_period;
    const char *lua_dir;
    const char *policy_dir;
    size_t lua_memory_limit;
    long lua_instruction_budget;
    double deadline_grace;
    double default_timeout;
    int max_concurrent_reconciles;
    int log_level;          /* -1 until a level flag is given */
    int log_format;         /* -1 until --zap-encoder is given */
    int log_time;
    int zap_devel;
} options_t;

static const char usage[] =
    "Usage: internal-services [options]\n"
    "       internal-services check-policies [options] REQUEST.json [CONFIG.json]\n"
    "\n"
    "Runs the internal-services controller: watches InternalRequests on a remote\n"
    "cluster and runs the Tekton pipelines they ask for on this (internal) cluster.\n"
    "Options take one or two dashes and their value after \"=\" or as the next\n"
    "argument (-leader-elect, --metrics-bind-address=:8080, -kubeconfig /x).\n"
    "\n"
    "Options:\n"
    "  --kubeconfig PATH                   internal cluster (default: $KUBECONFIG, a list\n"
    "                                      separated by \":\", else in-cluster, else ~/.kube/config)\n"
    "  --context NAME                      context in --kubeconfig (default: current-context)\n"
    "  --remote-cluster-config-file PATH   kubeconfig of the remote cluster (required)\n"
    "  --remote-context NAME               context in the remote kubeconfig\n"
    "  --metrics-bind-address ADDR         /metrics address, \"0\" to disable (default :8080)\n"
    "  --health-probe-bind-address ADDR    /healthz and /readyz address, \"0\" to disable (default :8081)\n"
    "  --leader-elect[=BOOL]               run only while holding the leader Lease\n"
    "  --leader-election-id NAME           name of the leader Lease (default " IS_DEFAULT_LEASE ")\n"
    "  --lease-duration DURATION           how long a Lease holds without renewal (default 15s)\n"
    "  --leader-renew-deadline DURATION    how long a leader retries renewing (default 10s)\n"
    "  --leader-elector-retry-period DURATION  between election attempts (default 2s)\n"
    "  --lua-dir DIR                       controller Lua modules (default " IS_DEFAULT_LUA_DIR ")\n"
    "  --policy-dir DIR                    policy scripts (default " IS_DEFAULT_POLICY_DIR ")\n"
    "  --lua-memory-limit SIZE             memory cap of the Lua state, e.g. 256Mi (default 256Mi)\n"
    "  --lua-instruction-budget N          instructions per reconcile (default 50000000)\n"
    "  --deadline-grace SECONDS            grace after a PipelineRun's timeout, and for Tekton to\n"
    "                                      end a cancelled one (default 60)\n"
    "  --default-timeout SECONDS           Tekton's default pipeline timeout, for the deadline of a\n"
    "                                      PipelineRun that records none (default 3600)\n"
    "  --max-concurrent-reconciles N       requests reconciled at the same time (default 50)\n"
    "  --log-level LEVEL                   debug, info, warn or error (default info)\n"
    "  --zap-log-level LEVEL               debug, info, error, panic or a verbosity N > 0\n"
    "  --zap-devel[=BOOL]                  console lines at debug level (explicit flags win)\n"
    "  --zap-encoder ENCODER               json (default) or console\n"
    "  --zap-stacktrace-level LEVEL        info, error or panic (accepted; there are no stacks)\n"
    "  --zap-time-encoding ENCODING        iso8601 (default), rfc3339, rfc3339nano, epoch, millis, nano\n"
    "  -h, --help                          show this help\n"
    "  --version                           show the version\n"
    "\n"
    "Environment: SERVICE_NAMESPACE is the controller's namespace (default \"default\").\n"
    "\n"
    "check-policies evaluates a policy directory on a request without any cluster\n"
    "(see internal-services check-policies --help).\n";

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

/* Go's strconv.ParseBool, which the flag package uses. */
static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = { "1", "t", "T", "true", "TRUE", "True" };
    static const char *const no[] = { "0", "f", "F", "false", "FALSE", "False" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (!strcmp(s, yes[i])) return *out = 1, IS_OK;
        if (!strcmp(s, no[i])) return *out = 0, IS_OK;
    }
    return IS_EINVAL;
}

/* Go's time.ParseDuration for the units a lease takes ("90s", "1m30s",
 * "1.5h", "500ms"); a positive number of seconds in *out. */
static int parse_duration(const char *s, double *out) {
    static const struct { const char *unit; double seconds; } units[] = {
        { "ns", 1e-9 }, { "us", 1e-6 }, { "µs", 1e-6 }, { "ms", 1e-3 },
        { "s", 1 }, { "m", 60 }, { "h", 3600 },
    };
    double total = 0;
    if (!*s) return IS_EINVAL;
    while (*s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || v < 0 || *s == '+' || *s == '-') return IS_EINVAL;
        size_t best = 0, k = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].unit);
            if (!strncmp(end, units[i].unit, n) && n > best) best = n, k = i;
        }
        if (!best) return IS_EINVAL;
        total += v * units[k].seconds;
        s = end + best;
    }
    if (total <= 0) return IS_EINVAL;
    *out = total;
    return IS_OK;
}

enum { O_KUBECONFIG = 1, O_CONTEXT, O_REMOTE, O_REMOTE_CONTEXT, O_METRICS, O_HEALTH, O_LEADER,
       O_LEADER_ID, O_LEASE_DURATION, O_RENEW_DEADLINE, O_RETRY_PERIOD, O_LUA_DIR, O_POLICY_DIR,
       O_LUA_MEM, O_LUA_BUDGET, O_GRACE, O_TIMEOUT, O_LOG_LEVEL, O_MAX_RECONCILES, O_ZAP_LEVEL,
       O_ZAP_DEVEL, O_ZAP_ENCODER, O_ZAP_STACKTRACE, O_ZAP_TIME, O_HELP, O_VERSION };

#define FLAG_EXIT 1

typedef struct flag_s {
    const char *name;
    int id;
    int is_bool; /* takes no separate value: -flag or -flag=BOOL, as in Go */
} flag_t;

static const flag_t flags[] = {
    { "kubeconfig", O_KUBECONFIG, 0 },
    { "context", O_CONTEXT, 0 },
    { "remote-cluster-config-file", O_REMOTE, 0 },
    { "remote-context", O_REMOTE_CONTEXT, 0 },
    { "metrics-bind-address", O_METRICS, 0 },
    { "health-probe-bind-address", O_HEALTH, 0 },
    { "leader-elect", O_LEADER, 1 },
    { "leader-election-id", O_LEADER_ID, 0 },
    { "lease-duration", O_LEASE_DURATION, 0 },
    { "leader-renew-deadline", O_RENEW_DEADLINE, 0 },
    { "leader-elector-retry-period", O_RETRY_PERIOD, 0 },
    { "lua-dir", O_LUA_DIR, 0 },
    { "policy-dir", O_POLICY_DIR, 0 },
    { "lua-memory-limit", O_LUA_MEM, 0 },
    { "lua-instruction-budget", O_LUA_BUDGET, 0 },
    { "deadline-grace", O_GRACE, 0 },
    { "default-timeout", O_TIMEOUT, 0 },
    { "log-level", O_LOG_LEVEL, 0 },
    { "max-concurrent-reconciles", O_MAX_RECONCILES, 0 },
    { "zap-log-level", O_ZAP_LEVEL, 0 },
    { "zap-devel", O_ZAP_DEVEL, 1 },
    { "zap-encoder", O_ZAP_ENCODER, 0 },
    { "zap-stacktrace-level", O_ZAP_STACKTRACE, 0 },
    { "zap-time-encoding", O_ZAP_TIME, 0 },
    { "h", O_HELP, 1 },
    { "help", O_HELP, 1 },
    { "version", O_VERSION, 1 },
};

static const flag_t *find_flag(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strlen(flags[i].name) == len && !strncmp(flags[i].name, name, len)) return &flags[i];
    return NULL;
}

/* Applies one flag's value: IS_OK, IS_EINVAL when the value is bad, or
 * FLAG_EXIT when the process is done (help, version) and exits with *code. */
static int apply_flag(options_t *o, int id, const char *v, int *code) {
    double n;
    int b;
    switch (id) {
    /* Empty is unset, as controller-runtime reads it: KUBECONFIG applies. */
    case O_KUBECONFIG: o->kubeconfig = *v ? v : NULL; break;
    case O_CONTEXT: o->context = v; break;
    case O_REMOTE: o->remote_kubeconfig = v; break;
    case O_REMOTE_CONTEXT: o->remote_context = v; break;
    case O_METRICS: o->metrics_addr = v; break;
    case O_HEALTH: o->health_addr = v; break;
    case O_LEADER: return parse_bool(v, &o->leader_elect);
    case O_LEADER_ID:
        if (!*v) return IS_EINVAL;
        o->leader_election_id = v;
        break;
    case O_LEASE_DURATION: return parse_duration(v, &o->lease_duration);
    case O_RENEW_DEADLINE: return parse_duration(v, &o->renew_deadline);
    case O_RETRY_PERIOD: return parse_duration(v, &o->retry_period);
    case O_LUA_DIR: o->lua_dir = v; break;
    case O_POLICY_DIR: o->policy_dir = v; break;
    case O_LUA_MEM: return parse_size(v, &o->lua_memory_limit);
    case O_LUA_BUDGET:
        if (parse_number(v, 1000, &n) != IS_OK) return IS_EINVAL;
        o->lua_instruction_budget = (long)n;
        break;
    case O_GRACE: return parse_number(v, 0, &o->deadline_grace);
    case O_TIMEOUT: return parse_number(v, 1, &o->default_timeout);
    case O_MAX_RECONCILES:
        if (parse_number(v, 1, &n) != IS_OK || n > 100000 || n != (int)n) return IS_EINVAL;
        o->max_concurrent_reconciles = (int)n;
        break;
    case O_LOG_LEVEL: return (o->log_level = is_log_parse_level(v)) < 0 ? IS_EINVAL : IS_OK;
    case O_ZAP_LEVEL: return (o->log_level = is_log_parse_zap_level(v)) < 0 ? IS_EINVAL : IS_OK;
    case O_ZAP_DEVEL: return parse_bool(v, &o->zap_devel);
    case O_ZAP_ENCODER: return (o->log_format = is_log_parse_format(v)) < 0 ? IS_EINVAL : IS_OK;
    case O_ZAP_STACKTRACE: return is_log_parse_stacktrace_level(v) < 0 ? IS_EINVAL : IS_OK;
    case O_ZAP_TIME: return (o->log_time = is_log_parse_time_encoding(v)) < 0 ? IS_EINVAL : IS_OK;
    case O_HELP:
        if (parse_bool(v, &b) != IS_OK) return IS_EINVAL;
        if (!b) break;
        fputs(usage, stdout);
        *code = 0;
        return FLAG_EXIT;
    case O_VERSION:
        if (parse_bool(v, &b) != IS_OK) return IS_EINVAL;
        if (!b) break;
        printf("internal-services %s\n", IS_VERSION);
        *code = 0;
        return FLAG_EXIT;
    }
    return IS_OK;
}

/* Go's flag syntax, which the existing Deployment's args are written in:
 * one or two dashes, the value after "=" or as the next argument (a bool
 * flag only takes "=BOOL"), "--" ends the flags. Returns 0 to run, 1 when
 * the process should exit with *code. */
static int parse_options(int argc, char **argv, options_t *o, int *code) {
    int i = 1;
    *code = 2;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || !arg[1]) break;
        if (!strcmp(arg, "--")) {
            i++;
            break;
        }
        const char *name = arg + (arg[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        size_t shown = (size_t)(name - arg) + len;
        const flag_t *f = len && name[0] != '-' ? find_flag(name, len) : NULL;
        if (!f) {
            fprintf(stderr, "internal-services: unknown option %.*s (see --help)\n", (int)shown, arg);
            return 1;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && f->is_bool) value = "true";
        if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "internal-services: %.*s needs a value (see --help)\n", (int)shown, arg);
                return 1;
            }
            value = argv[++i];
        }
        int rc = apply_flag(o, f->id, value, code);
        if (rc == FLAG_EXIT) return 1;
        if (rc != IS_OK) {
            fprintf(stderr, "internal-services: invalid value \"%s\" for --%s (see --help)\n", value,
                    f->name);
            return 1;
        }
    }
    if (i < argc) {
        fprintf(stderr, "internal-services: unexpected argument %s (see --help)\n", argv[i]);
        return 1;
    }
    if (!o->remote_kubeconfig) {
        fprintf(stderr, "internal-services: --remote-cluster-config-file is required (see --help)\n");
        return 1;
    }
    if (o->renew_deadline >= o->lease_duration) {
        fprintf(stderr, "internal-services: --leader-renew-deadline must be shorter than --lease-duration\n");
        return 1;
    }
    /* client-go's own check: a renewal must have room for a jittered retry. */
    if (o->renew_deadline <= 1.2 * o->retry_period) {
        fprintf(stderr, "internal-services: --leader-renew-deadline must be longer than 1.2 times "
                        "--leader-elector-retry-period\n");
        return 1;
    }
    /* Development mode is zap's: console lines at debug level; a level or
     * an encoder given explicitly wins, whatever the order. */
    if (o->log_level < 0) o->log_level = o->zap_devel ? IS_LOG_DEBUG : IS_LOG_INFO;
    if (o->log_format < 0) o->log_format = o->zap_devel ? IS_LOG_CONSOLE : IS_LOG_JSON;
    *code = 0;
    return 0;
}

typedef struct app_s {
    is_loop_t loop;
    is_cluster_t internal, remote;
    is_lua_t lua;
    is_httpd_t metrics, health;
    is_metrics_t registry;    /* outlives the clusters and the Lua host */
} app_t;

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

/* path is one file (a flag), list a KUBECONFIG list; neither means the
 * in-cluster service account, or outside a cluster ~/.kube/config, in
 * controller-runtime's order. */
static int load_cluster(app_t *app, is_cluster_t *c, const char *name, const char *path,
                        const char *list, const char *context) {
    is_kubeconfig_t kc;
    char err[1024], home_config[4096];
    int rc;
    const char *home = getenv("HOME");
    if (path) rc = is_kubeconfig_load(&kc, path, context, err, sizeof err);
    else if (list) rc = is_kubeconfig_load_list(&kc, list, context, err, sizeof err);
    else rc = is_kubeconfig_in_cluster(&kc, NULL, err, sizeof err);
    if (rc == IS_ENOTFOUND && !path && !list && home && home[0] &&
        (size_t)snprintf(home_config, sizeof home_config, "%s/.kube/config", home) < sizeof home_config &&
        access(home_config, F_OK) == 0) {
        is_kubeconfig_free(&kc);
        rc = is_kubeconfig_load(&kc, home_config, context, err, sizeof err);
    }
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

/* ---- check-policies: the policy chain run once, outside any cluster ---- */

static const char check_usage[] =
    "Usage: internal-services check-policies [options] REQUEST.json [CONFIG.json]\n"
    "\n"
    "Evaluates the policies of a policy directory on an InternalRequest (and\n"
    "an InternalServicesConfig), as the controller would: the same Lua, sandbox\n"
    "and limits. Prints \"allow (...)\" or \"deny (POLICY): MESSAGE\".\n"
    "Exit status: 0 allowed, 1 denied, 2 nothing decided (a policy that does\n"
    "not compile, unreadable or invalid input, bad usage).\n"
    "\n"
    "Options:\n"
    "  --policy-dir DIR     policy scripts (default " IS_DEFAULT_POLICY_DIR ")\n"
    "  --lua-dir DIR        controller Lua modules (default " IS_DEFAULT_LUA_DIR ")\n"
    "  --namespace NS       the controller's namespace, context.namespace for the\n"
    "                       policies (default $SERVICE_NAMESPACE, else internal-services)\n"
    "  --help               show this help\n";

/* An input file's cap: far above any API object (etcd refuses 1.5 MiB). */
#define CHECK_MAX_INPUT ((size_t)16 << 20)

static int check_policies(int argc, char **argv) {
    enum { C_POLICY_DIR = 1, C_LUA_DIR, C_NAMESPACE, C_HELP };
    static const struct option longopts[] = {
        { "policy-dir", required_argument, NULL, C_POLICY_DIR },
        { "lua-dir", required_argument, NULL, C_LUA_DIR },
        { "namespace", required_argument, NULL, C_NAMESPACE },
        { "help", no_argument, NULL, C_HELP },
        { NULL, 0, NULL, 0 },
    };
    const char *policy_dir = IS_DEFAULT_POLICY_DIR, *lua_dir = IS_DEFAULT_LUA_DIR;
    const char *ns = getenv("SERVICE_NAMESPACE");
    if (!ns || !ns[0]) ns = "internal-services";
    int c, idx = 0;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", longopts, &idx)) != -1) {
        switch (c) {
        case C_POLICY_DIR: policy_dir = optarg; break;
        case C_LUA_DIR: lua_dir = optarg; break;
        case C_NAMESPACE: ns = optarg; break;
        case C_HELP: fputs(check_usage, stdout); return 0;
        case ':':
            fprintf(stderr, "internal-services check-policies: %s needs a value (see --help)\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "internal-services check-policies: unknown option %s (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    int nfiles = argc - optind;
    if (nfiles < 1 || nfiles > 2) {
        fprintf(stderr, "internal-services check-policies: want REQUEST.json and optionally CONFIG.json, got %d "
                        "file%s (see --help)\n", nfiles, nfiles == 1 ? "" : "s");
        return 2;
    }

    /* args: file name, text, for the request and the config. */
    is_buf_t text[2];
    is_lua_arg_t args[4];
    int code = 2;
    for (int i = 0; i < 2; i++) is_buf_init(&text[i]);
    for (int i = 0; i < nfiles; i++) {
        const char *path = argv[optind + i];
        int rc = is_buf_append_file(&text[i], path, CHECK_MAX_INPUT);
        if (rc != IS_OK) {
            if (rc == IS_EIO) fprintf(stderr, "internal-services check-policies: %s: %s\n", path, strerror(errno));
            else if (rc == IS_ELIMIT) fprintf(stderr, "internal-services check-policies: %s: larger than %zu bytes\n",
                                              path, CHECK_MAX_INPUT);
            else fprintf(stderr, "internal-services check-policies: %s: %s\n", path, is_strerror(rc));
            goto out_text;
        }
        args[2 * i] = (is_lua_arg_t){ path, strlen(path) };
        args[2 * i + 1] = (is_lua_arg_t){ text[i].data ? text[i].data : "", text[i].len };
    }

    /* The host's own logs stay quiet: the verdict is the output. */
    is_log_set_level(IS_LOG_ERROR + 1);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "internal-services check-policies: cannot initialise libcurl\n");
        goto out_text;
    }
    is_loop_t *loop = is_calloc(1, sizeof *loop);
    is_lua_t *lua = is_calloc(1, sizeof *lua);
    char err[512];
    if (!loop || !lua || is_loop_init(loop) != IS_OK) {
        fprintf(stderr, "internal-services check-policies: out of memory\n");
        is_free(loop);
        is_free(lua);
        goto out_curl;
    }
    is_lua_opts_t lo = {
        .lua_dir = lua_dir, .policy_dir = policy_dir, .namespace = ns,
        .main_module = "internal_services.check_policies", .args = args, .nargs = (size_t)nfiles * 2,
    };
    if (is_lua_init(lua, loop, &lo, err, sizeof err) != IS_OK ||
        is_lua_start(lua, err, sizeof err) != IS_OK) {
        fprintf(stderr, "internal-services check-policies: %s\n", err);
    } else if (is_loop_run(loop) == IS_OK && is_lua_exit_reason(lua)) {
        code = is_lua_exit_code(lua);
        if (code == 0 || code == 1) {
            printf("%s\n", is_lua_exit_reason(lua));
        } else {
            fprintf(stderr, "internal-services check-policies: %s\n", is_lua_exit_reason(lua));
            code = 2;
        }
    } else {
        fprintf(stderr, "internal-services check-policies: the policies gave no verdict\n");
    }
    if (lua->priv__) {
        is_lua_stop(lua);
        is_lua_close(lua);
    }
    is_loop_close(loop);
    is_free(lua);
    is_free(loop);
out_curl:
    curl_global_cleanup();
out_text:
    for (int i = 0; i < 2; i++) is_buf_free(&text[i]);
    return code;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "check-policies")) return check_policies(argc - 1, argv + 1);
    options_t o = {
        .metrics_addr = ":8080", .health_addr = ":8081",
        .leader_election_id = IS_DEFAULT_LEASE,
        .lease_duration = 15, .renew_deadline = 10, .retry_period = 2,
        .lua_dir = IS_DEFAULT_LUA_DIR, .policy_dir = IS_DEFAULT_POLICY_DIR,
        .deadline_grace = 60, .default_timeout = 3600, .max_concurrent_reconciles = 50,
        .log_level = -1, .log_format = -1, .log_time = IS_LOG_TIME_ISO8601,
    };
    int code = 0;
    if (parse_options(argc, argv, &o, &code)) return code;
    /* --kubeconfig names one file; KUBECONFIG may list several. */
    const char *kubeconfig_list = o.kubeconfig ? NULL : getenv("KUBECONFIG");
    if (kubeconfig_list && !kubeconfig_list[0]) kubeconfig_list = NULL;
    is_log_set_level(o.log_level);
    is_log_set_format(o.log_format);
    is_log_set_time_encoding(o.log_time);

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
        .lease_duration = o.lease_duration, .renew_deadline = o.renew_deadline,
        .retry_period = o.retry_period,
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
    if (load_cluster(app, &app->internal, "internal", o.kubeconfig, kubeconfig_list, o.context) != IS_OK ||
        load_cluster(app, &app->remote, "remote", o.remote_kubeconfig, NULL, o.remote_context) != IS_OK) {
        code = 1;
        goto out_lua;
    }
    if (is_httpd_start(&app->metrics, &app->loop, o.metrics_addr, serve, app, err, sizeof err) != IS_OK ||
        is_httpd_start(&app->health, &app->loop, o.health_addr, serve, app, err, sizeof err) != IS_OK) {
        fprintf(stderr, "internal-services: %s\n", err);
        code = 1;
        goto out_httpd;
    }

    is_loop_stop_on_signals(&app->loop);

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
    is_loop_stop_on_signals(NULL);

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
