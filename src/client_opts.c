/* The client's command line: flags, durations and the request it builds.
 * Pure functions, no I/O, so every rule is unit-tested. See is_client.h. */
#include "is_client.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"

static const char create_usage[] =
    "Usage: internal-request --pipeline NAME -p taskGitUrl=URL -p taskGitRevision=REV [options]\n"
    "       internal-request --resolver R --resolver-param k=v ... [options]\n"
    "\n"
    "Creates an InternalRequest and, unless -s false, waits for it.\n"
    "\n"
    "  --pipeline NAME          pipeline to run: the git resolver with url and revision from\n"
    "                           -p taskGitUrl and -p taskGitRevision and pathInRepo\n"
    "                           pipelines/internal/NAME/NAME.yaml; with --resolver only the\n"
    "                           request's name prefix\n"
    "  --resolver R             any other resolver (cluster, bundles, ...)\n"
    "  --resolver-param k=v     a parameter of that resolver (repeatable)\n"
    "  -p key=value             a parameter of the pipeline (repeatable)\n"
    "  -l key=value             a label of the request (repeatable); earlier requests with the\n"
    "                           same internal-services.appstudio.openshift.io/pipelinerun-uid\n"
    "                           label are deleted first\n"
    "  --namespace NAMESPACE    default: the kubeconfig's or the pod's namespace\n"
    "  --service-account NAME   the PipelineRun's ServiceAccount\n"
    "  --pipeline-timeout D     default 1h0m0s\n"
    "  --task-timeout D         default 0h55m0s\n"
    "  --finally-timeout D      default 0h5m0s (tasks + finally must not exceed pipeline)\n"
    "  -s true|false            wait for the request to finish (default true)\n"
    "  -t SECONDS               how long to wait (default 3600)\n"
    "  --results-file PATH      write the results JSON there instead of stdout\n"
    "  --results-dir DIR        write the Tekton results requestName, requestReason,\n"
    "                           requestMessage, requestResults and genericResult there\n"
    "  --delete-on-timeout      delete the request when the wait times out\n"
    "  --kubeconfig PATH        default: $KUBECONFIG, else the pod's service account\n"
    "  -h                       this help\n"
    "\n"
    "Exit: 0 succeeded, 21 failed or rejected, 124 timed out, 1 usage or API error.\n";

static const char wait_usage[] =
    "Usage: wait-for-internal-request (-n NAME | -l key=value ...) [-t SECONDS] [options]\n"
    "\n"
    "Waits until the InternalRequest NAME, or every one with all the labels, has finished.\n"
    "\n"
    "  -n NAME                  the request's name\n"
    "  -l key=value             a label the requests carry (repeatable)\n"
    "  -t SECONDS               how long to wait (default 600)\n"
    "  --namespace NAMESPACE    default: the kubeconfig's or the pod's namespace\n"
    "  --results-file PATH      write the results JSON there instead of stdout\n"
    "  --results-dir DIR        write the Tekton results requestName, requestReason,\n"
    "                           requestMessage, requestResults and genericResult there\n"
    "  --delete-on-timeout      delete the unfinished requests when the wait times out\n"
    "  --kubeconfig PATH        default: $KUBECONFIG, else the pod's service account\n"
    "  -h                       this help\n"
    "\n"
    "Exit: 0 all succeeded, 21 any failed or rejected, 124 timed out, 1 usage or API error.\n";

const char *is_client_usage(is_client_mode_t mode) {
    return mode == IS_CLIENT_WAIT ? wait_usage : create_usage;
}

is_client_mode_t is_client_mode_for(const char *argv0) {
    const char *base = argv0 ? strrchr(argv0, '/') : NULL;
    base = base ? base + 1 : (argv0 ? argv0 : "");
    return strcmp(base, "wait-for-internal-request") == 0 ? IS_CLIENT_WAIT : IS_CLIENT_CREATE;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return IS_EINVAL;
}

/* Appends "key=value" from arg to list (split at the first '='). */
static int add_kv(is_client_kv_t *list, int *n, const char *flag, const char *arg,
                  char *err, size_t errlen) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return fail(err, errlen, "%s \"%s\": want key=value", flag, arg);
    if (*n >= IS_CLIENT_MAX_ITEMS)
        return fail(err, errlen, "%s: more than %d given", flag, IS_CLIENT_MAX_ITEMS);
    size_t klen = (size_t)(eq - arg);
    for (int i = 0; i < *n; i++)
        if (strlen(list[i].key) == klen && !memcmp(list[i].key, arg, klen))
            return fail(err, errlen, "%s \"%.*s\" given twice", flag, (int)klen, arg);
    char *key = is_strndup(arg, klen);
    if (!key) return fail(err, errlen, "out of memory");
    list[*n].key = key;
    list[*n].value = eq + 1;
    (*n)++;
    return IS_OK;
}

static const char *kv_get(const is_client_kv_t *list, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i].key, key)) return list[i].value;
    return NULL;
}

int is_client_duration_ms(const char *s, double *ms) {
    static const struct { const char *unit; double ms; } units[] = {
        { "ns", 1e-6 }, { "us", 1e-3 }, { "\xc2\xb5s", 1e-3 }, { "\xce\xbcs", 1e-3 },
        { "ms", 1 }, { "s", 1e3 }, { "m", 60e3 }, { "h", 3600e3 },
    };
    if (!s || !*s) return IS_EINVAL;
    if (!strcmp(s, "0")) {
        *ms = 0;
        return IS_OK;
    }
    double total = 0;
    while (*s) {
        const char *p = s;
        while (*p >= '0' && *p <= '9') p++;
        int whole = p > s;
        if (*p == '.') {
            const char *q = ++p;
            while (*p >= '0' && *p <= '9') p++;
            if (!whole && p == q) return IS_EINVAL;
        } else if (!whole) {
            return IS_EINVAL;
        }
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end != p) return IS_EINVAL;
        size_t best = 0;
        double mul = 0;
        /* Longest unit first: "ms" before "m", "m" before nothing. */
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t l = strlen(units[i].unit);
            if (l > best && !strncmp(p, units[i].unit, l)) {
                best = l;
                mul = units[i].ms;
            }
        }
        if (!best) return IS_EINVAL;
        total += v * mul;
        s = p + best;
    }
    *ms = total;
    return IS_OK;
}

int is_client_check_timeouts(const is_client_opts_t *o, char *err, size_t errlen) {
    const struct { const char *flag, *value; } t[] = {
        { "--pipeline-timeout", o->pipeline_timeout },
        { "--task-timeout", o->task_timeout },
        { "--finally-timeout", o->finally_timeout },
    };
    double ms[3];
    for (int i = 0; i < 3; i++)
        if (is_client_duration_ms(t[i].value, &ms[i]) != IS_OK)
            return fail(err, errlen, "%s \"%s\" is not a duration (like 1h0m0s, 90m or 0)",
                        t[i].flag, t[i].value ? t[i].value : "");
    /* 0 means no timeout, which no sum exceeds. */
    if (ms[0] > 0 && ms[1] + ms[2] > ms[0])
        return fail(err, errlen,
                    "--task-timeout %s plus --finally-timeout %s exceed --pipeline-timeout %s",
                    o->task_timeout, o->finally_timeout, o->pipeline_timeout);
    return IS_OK;
}

static int parse_seconds(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    /* Ten years is a cap on the timer, not a policy. */
    if (errno || end == s || *end || v <= 0 || v > 315360000L) return IS_EINVAL;
    *out = v;
    return IS_OK;
}

int is_client_parse(is_client_opts_t *o, is_client_mode_t mode, int argc, char **argv,
                    char *err, size_t errlen) {
    enum { O_PIPELINE = 256, O_RESOLVER, O_RESOLVER_PARAM, O_NAMESPACE, O_SA, O_PIPELINE_TIMEOUT,
           O_TASK_TIMEOUT, O_FINALLY_TIMEOUT, O_KUBECONFIG, O_RESULTS_FILE, O_RESULTS_DIR,
           O_DELETE_ON_TIMEOUT, O_HELP };
    static const struct option create_opts[] = {
        { "pipeline", required_argument, NULL, O_PIPELINE },
        { "resolver", required_argument, NULL, O_RESOLVER },
        { "resolver-param", required_argument, NULL, O_RESOLVER_PARAM },
        { "service-account", required_argument, NULL, O_SA },
        { "pipeline-timeout", required_argument, NULL, O_PIPELINE_TIMEOUT },
        { "task-timeout", required_argument, NULL, O_TASK_TIMEOUT },
        { "finally-timeout", required_argument, NULL, O_FINALLY_TIMEOUT },
        { "namespace", required_argument, NULL, O_NAMESPACE },
        { "kubeconfig", required_argument, NULL, O_KUBECONFIG },
        { "results-file", required_argument, NULL, O_RESULTS_FILE },
        { "results-dir", required_argument, NULL, O_RESULTS_DIR },
        { "delete-on-timeout", no_argument, NULL, O_DELETE_ON_TIMEOUT },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    /* The wait command shares the tail of the create command's table. */
    const struct option *longopts = mode == IS_CLIENT_WAIT ? create_opts + 7 : create_opts;
    const char *shortopts = mode == IS_CLIENT_WAIT ? ":n:l:t:h" : ":p:l:s:t:h";

    memset(o, 0, sizeof *o);
    o->mode = mode;
    o->sync = 1;
    o->timeout_s = mode == IS_CLIENT_WAIT ? 600 : 3600;
    o->pipeline_timeout = "1h0m0s";
    o->task_timeout = "0h55m0s";
    o->finally_timeout = "0h5m0s";
    if (errlen) err[0] = '\0';

    opterr = 0;
    optind = 0; /* glibc: a full reset, so the parser can run more than once */
    int c, rc;
    while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        switch (c) {
        case O_PIPELINE: o->pipeline = optarg; break;
        case O_RESOLVER: o->resolver = optarg; break;
        case O_RESOLVER_PARAM:
            rc = add_kv(o->resolver_params, &o->nresolver_params, "--resolver-param", optarg, err, errlen);
            if (rc != IS_OK) return rc;
            break;
        case 'p':
            if ((rc = add_kv(o->params, &o->nparams, "-p", optarg, err, errlen)) != IS_OK) return rc;
            break;
        case 'l':
            if ((rc = add_kv(o->labels, &o->nlabels, "-l", optarg, err, errlen)) != IS_OK) return rc;
            break;
        case 'n': o->name = optarg; break;
        case 's':
            if (!strcmp(optarg, "true")) o->sync = 1;
            else if (!strcmp(optarg, "false")) o->sync = 0;
            else return fail(err, errlen, "-s \"%s\": want true or false", optarg);
            break;
        case 't':
            if (parse_seconds(optarg, &o->timeout_s) != IS_OK)
                return fail(err, errlen, "-t \"%s\": want a positive number of seconds", optarg);
            break;
        case O_NAMESPACE: o->namespace = optarg; break;
        case O_SA: o->service_account = optarg; break;
        case O_PIPELINE_TIMEOUT: o->pipeline_timeout = optarg; break;
        case O_TASK_TIMEOUT: o->task_timeout = optarg; break;
        case O_FINALLY_TIMEOUT: o->finally_timeout = optarg; break;
        case O_KUBECONFIG: o->kubeconfig = optarg; break;
        case O_RESULTS_FILE: o->results_file = optarg; break;
        case O_RESULTS_DIR: o->results_dir = optarg; break;
        case O_DELETE_ON_TIMEOUT: o->delete_on_timeout = 1; break;
        case 'h':
        case O_HELP:
            return IS_EAGAIN;
        case ':':
            return fail(err, errlen, "%s needs a value (see -h)", argv[optind - 1]);
        default:
            if (optopt && optopt < 256)
                return fail(err, errlen, "unknown option -%c (see -h)", optopt);
            return fail(err, errlen, "unknown option %s (see -h)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fail(err, errlen, "unexpected argument \"%s\" (see -h)", argv[optind]);

    if (mode == IS_CLIENT_WAIT) {
        if (!o->name == !o->nlabels)
            return fail(err, errlen, o->name ? "give -n NAME or -l key=value, not both"
                                             : "give -n NAME or -l key=value (see -h)");
        return IS_OK;
    }
    if (o->nresolver_params && !o->resolver)
        return fail(err, errlen, "--resolver-param needs --resolver");
    if (!o->resolver) {
        if (!o->pipeline) return fail(err, errlen, "--pipeline NAME or --resolver R is required (see -h)");
        if (!kv_get(o->params, o->nparams, "taskGitUrl") || !kv_get(o->params, o->nparams, "taskGitRevision"))
            return fail(err, errlen, "--pipeline needs -p taskGitUrl=URL and -p taskGitRevision=REV "
                                     "(the git resolver's url and revision)");
    }
    return is_client_check_timeouts(o, err, errlen);
}

void is_client_opts_free(is_client_opts_t *o) {
    for (int i = 0; i < o->nresolver_params; i++) is_free(o->resolver_params[i].key);
    for (int i = 0; i < o->nparams; i++) is_free(o->params[i].key);
    for (int i = 0; i < o->nlabels; i++) is_free(o->labels[i].key);
    o->nresolver_params = o->nparams = o->nlabels = 0;
}

static int append_str(is_buf_t *b, const char *s) {
    return is_buf_append_jsonstr(b, s, strlen(s));
}

static int append_kv_object(is_buf_t *b, const is_client_kv_t *list, int n) {
    int rc = is_buf_appends(b, "{");
    for (int i = 0; i < n && rc == IS_OK; i++) {
        if (i) rc = is_buf_appends(b, ",");
        if (rc == IS_OK) rc = append_str(b, list[i].key);
        if (rc == IS_OK) rc = is_buf_appends(b, ":");
        if (rc == IS_OK) rc = append_str(b, list[i].value);
    }
    return rc == IS_OK ? is_buf_appends(b, "}") : rc;
}

static int append_ref_param(is_buf_t *b, int first, const char *name, const char *value) {
    int rc = is_buf_appends(b, first ? "{\"name\":" : ",{\"name\":");
    if (rc == IS_OK) rc = append_str(b, name);
    if (rc == IS_OK) rc = is_buf_appends(b, ",\"value\":");
    if (rc == IS_OK) rc = append_str(b, value);
    return rc == IS_OK ? is_buf_appends(b, "}") : rc;
}

int is_client_request_json(const is_client_opts_t *o, const char *namespace, is_buf_t *b) {
    const char *prefix = o->pipeline;
    if (!prefix) prefix = kv_get(o->resolver_params, o->nresolver_params, "name");
    if (!prefix) prefix = "internalrequest";
    is_buf_t gen;
    is_buf_init(&gen);
    int rc = is_buf_printf(&gen, "%s-", prefix);
    if (rc == IS_OK)
        rc = is_buf_appends(b, "{\"apiVersion\":\"appstudio.redhat.com/v1alpha1\",\"kind\":\"InternalRequest\","
                               "\"metadata\":{\"generateName\":");
    if (rc == IS_OK) rc = append_str(b, gen.data);
    is_buf_free(&gen);
    if (rc == IS_OK) rc = is_buf_appends(b, ",\"namespace\":");
    if (rc == IS_OK) rc = append_str(b, namespace);
    if (rc == IS_OK && o->nlabels) {
        rc = is_buf_appends(b, ",\"labels\":");
        if (rc == IS_OK) rc = append_kv_object(b, o->labels, o->nlabels);
    }
    if (rc == IS_OK) rc = is_buf_appends(b, "},\"spec\":{\"pipeline\":{\"pipelineRef\":{\"resolver\":");
    if (rc == IS_OK) rc = append_str(b, o->resolver ? o->resolver : "git");
    if (rc == IS_OK) rc = is_buf_appends(b, ",\"params\":[");
    if (o->resolver) {
        for (int i = 0; i < o->nresolver_params && rc == IS_OK; i++)
            rc = append_ref_param(b, i == 0, o->resolver_params[i].key, o->resolver_params[i].value);
    } else {
        is_buf_t path;
        is_buf_init(&path);
        if (rc == IS_OK) rc = is_buf_printf(&path, "pipelines/internal/%s/%s.yaml", o->pipeline, o->pipeline);
        if (rc == IS_OK) rc = append_ref_param(b, 1, "url", kv_get(o->params, o->nparams, "taskGitUrl"));
        if (rc == IS_OK) rc = append_ref_param(b, 0, "revision", kv_get(o->params, o->nparams, "taskGitRevision"));
        if (rc == IS_OK) rc = append_ref_param(b, 0, "pathInRepo", path.data);
        is_buf_free(&path);
    }
    if (rc == IS_OK) rc = is_buf_appends(b, "]}},\"params\":");
    if (rc == IS_OK) rc = append_kv_object(b, o->params, o->nparams);
    if (rc == IS_OK) rc = is_buf_appends(b, ",\"timeouts\":{\"pipeline\":");
    if (rc == IS_OK) rc = append_str(b, o->pipeline_timeout);
    if (rc == IS_OK) rc = is_buf_appends(b, ",\"tasks\":");
    if (rc == IS_OK) rc = append_str(b, o->task_timeout);
    if (rc == IS_OK) rc = is_buf_appends(b, ",\"finally\":");
    if (rc == IS_OK) rc = append_str(b, o->finally_timeout);
    if (rc == IS_OK) rc = is_buf_appends(b, "}");
    if (rc == IS_OK && o->service_account) {
        rc = is_buf_appends(b, ",\"serviceAccount\":");
        if (rc == IS_OK) rc = append_str(b, o->service_account);
    }
    return rc == IS_OK ? is_buf_appends(b, "}}") : rc;
}
