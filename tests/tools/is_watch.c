/* is_watch: runs one informer against a real API server and prints every
 * event as a JSON line on stdout. The integration tests drive it to prove
 * the host's list/watch behaviour (ordering, restarts, 410 relists, RBAC and
 * TLS errors) against real kube-apiservers. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_http.h"
#include "is_informer.h"
#include "is_kubeconfig.h"
#include "is_loop.h"
#include "is_metrics.h"

static is_loop_t loop;
/* The informer's counters, read back from the metrics it reports. */
static is_metrics_t registry;

static double counter(const char *name) {
    static const char *const labels[] = { "cluster", "informer", NULL };
    const char *const values[] = { "test", "is_watch" };
    is_metric_t *m;
    is_series_t *s;
    if (is_metrics_counter(&registry, name, "", labels, &m) != IS_OK || is_metric_with(m, values, &s) != IS_OK)
        return -1;
    return is_series_value(s);
}

static void on_signal(int sig) {
    (void)sig;
    is_loop_stop(&loop);
}

static void print_event(const char *type, const char *key, const char *obj, size_t len) {
    is_buf_t b;
    is_buf_init(&b);
    is_buf_printf(&b, "{\"type\":\"%s\",\"key\":", type);
    is_buf_append_jsonstr(&b, key, strlen(key));
    is_buf_appends(&b, ",\"object\":");
    is_buf_append(&b, obj, len);
    is_buf_appends(&b, "}\n");
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    is_buf_free(&b);
}

static void on_add(is_informer_t *inf, const char *key, const char *obj, size_t len) {
    (void)inf;
    print_event("ADDED", key, obj, len);
}

static void on_update(is_informer_t *inf, const char *key, const char *old, size_t old_len,
                      const char *obj, size_t len) {
    (void)inf;
    /* A relist replays unchanged objects as updates; print real changes. */
    if (old_len == len && memcmp(old, obj, len) == 0) return;
    print_event("MODIFIED", key, obj, len);
}

static void on_delete(is_informer_t *inf, const char *key, const char *obj, size_t len) {
    (void)inf;
    print_event("DELETED", key, obj, len);
}

static void on_synced(is_informer_t *inf) {
    printf("{\"type\":\"SYNCED\",\"count\":%zu,\"relists\":%.0f,\"restarts\":%.0f}\n", is_informer_count(inf),
           counter("internal_services_relists_total"), counter("internal_services_watch_restarts_total"));
    fflush(stdout);
}

static void on_error(is_informer_t *inf, const char *what, long code, const char *reason,
                     const char *message, uint64_t retry_ms) {
    (void)inf;
    is_buf_t b;
    is_buf_init(&b);
    is_buf_printf(&b, "{\"type\":\"ERROR\",\"op\":\"%s\",\"code\":%ld,\"reason\":", what, code);
    is_buf_append_jsonstr(&b, reason, strlen(reason));
    is_buf_appends(&b, ",\"message\":");
    is_buf_append_jsonstr(&b, message, strlen(message));
    is_buf_printf(&b, ",\"retry_ms\":%llu}\n", (unsigned long long)retry_ms);
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    is_buf_free(&b);
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        { "kubeconfig", required_argument, NULL, 'k' }, { "group", required_argument, NULL, 'g' },
        { "version", required_argument, NULL, 'v' }, { "resource", required_argument, NULL, 'r' },
        { "namespace", required_argument, NULL, 'n' }, { "label-selector", required_argument, NULL, 'l' },
        { "watch-timeout", required_argument, NULL, 't' }, { "backoff-max-ms", required_argument, NULL, 'b' },
        { "resync-ms", required_argument, NULL, 's' }, { NULL, 0, NULL, 0 },
    };
    const char *kubeconfig = NULL;
    is_informer_opts_t io = { .name = "is_watch", .resource = { "", "v1", NULL, 1 } };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'k': kubeconfig = optarg; break;
        case 'g': io.resource.group = optarg; break;
        case 'v': io.resource.version = optarg; break;
        case 'r': io.resource.plural = optarg; break;
        case 'n': io.namespace = optarg; break;
        case 'l': io.label_selector = optarg; break;
        case 't': io.watch_timeout_s = atoi(optarg); break;
        case 'b': io.backoff_max_ms = (uint64_t)atol(optarg); break;
        case 's': io.resync_ms = (uint64_t)atol(optarg); break;
        default:
            fprintf(stderr, "usage: is_watch --kubeconfig F --group G --version V --resource R "
                            "[--namespace N] [--label-selector S] [--watch-timeout S] [--backoff-max-ms MS]\n");
            return 2;
        }
    }
    if (!kubeconfig || !io.resource.plural) {
        fprintf(stderr, "is_watch: --kubeconfig and --resource are required\n");
        return 2;
    }
    char err[512];
    is_kubeconfig_t kc;
    if (is_kubeconfig_load(&kc, kubeconfig, NULL, err, sizeof err) != IS_OK) {
        fprintf(stderr, "is_watch: %s\n", err);
        is_kubeconfig_free(&kc);
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    is_cluster_t cluster;
    is_informer_t inf;
    static const is_informer_handlers_t handlers = { on_add, on_update, on_delete, on_synced, on_error };
    int rc = is_loop_init(&loop);
    if (rc == IS_OK) rc = is_cluster_init(&cluster, &loop, "test", &kc);
    io.cluster = &cluster;
    if (rc == IS_OK) rc = is_informer_init(&inf, &io, &handlers, NULL);
    if (rc == IS_OK) rc = is_metrics_init(&registry);
    if (rc == IS_OK) rc = is_informer_set_metrics(&inf, &registry);
    if (rc == IS_OK) rc = is_informer_start(&inf);
    if (rc != IS_OK) {
        fprintf(stderr, "is_watch: %s\n", is_strerror(rc));
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    rc = is_loop_run(&loop);
    is_informer_close(&inf);
    is_metrics_free(&registry);
    is_cluster_close(&cluster);
    is_kubeconfig_free(&kc);
    is_loop_close(&loop);
    curl_global_cleanup();
    return rc == IS_OK ? 0 : 1;
}
