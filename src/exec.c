/* Exec credential plugins, run beside the loop. */
#define _GNU_SOURCE
#include "is_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_json.h"

extern char **environ;

/* A credential is a few KiB; the caps keep a runaway plugin from eating the
 * process. Only the start of stderr is kept, for the log line. */
#define EXEC_MAX_STDOUT (1u << 20)
#define EXEC_MAX_STDERR 2048u
#define EXEC_POLL_MS 10

void is_exec_cred_free(is_exec_cred_t *c) {
    if (!c) return;
    is_free(c->token);
    is_free(c->cert.data);
    is_free(c->key.data);
    memset(c, 0, sizeof *c);
}

/* ---- the credential ---------------------------------------------------- */

/* RFC 3339 ("2026-12-02T06:00:00Z", fractions and offsets allowed) to ms. */
static int parse_rfc3339(const char *s, long long *ms) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 19)
        return IS_EINVAL;
    const char *p = s + n;
    long long frac_ms = 0;
    if (*p == '.') {
        long long scale = 100;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10) frac_ms += (*p - '0') * scale;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2) return IS_EINVAL;
        offset = (oh * 60L + om) * 60L * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return IS_EINVAL;
    }
    if (*p) return IS_EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1) return IS_EINVAL;
    *ms = ((long long)t - offset) * 1000 + frac_ms;
    return IS_OK;
}

static int json_string(const is_json_t *doc, int obj, const char *key, char **out) {
    *out = NULL;
    int t = is_json_get(doc, obj, key);
    if (t < 0 || doc->toks[t].type == IS_JSON_NULL) return IS_OK;
    if (doc->toks[t].type != IS_JSON_STRING) return IS_EINVAL;
    int rc = is_json_strdup(doc, t, out);
    if (rc == IS_OK && !**out) {
        is_free(*out);
        *out = NULL;
    }
    return rc;
}

int is_exec_parse_credential(const char *json, size_t len, const char *api_version,
                             is_exec_cred_t *cred, char *err, size_t errlen) {
    memset(cred, 0, sizeof *cred);
    is_json_t doc;
    char *api = NULL, *kind = NULL, *cert = NULL, *key = NULL, *expiry = NULL;
    int rc = is_json_parse(&doc, json, len, NULL);
    if (rc == IS_ENOMEM) goto oom;
    if (rc != IS_OK || doc.toks[0].type != IS_JSON_OBJECT) {
        rc = is_errf(err, errlen, IS_EPARSE, "its output is not an ExecCredential JSON object");
        goto out;
    }
    if ((rc = json_string(&doc, 0, "apiVersion", &api)) == IS_ENOMEM ||
        (rc == IS_OK && (rc = json_string(&doc, 0, "kind", &kind)) == IS_ENOMEM))
        goto oom;
    if (rc != IS_OK || !kind || strcmp(kind, "ExecCredential")) {
        rc = is_errf(err, errlen, IS_EPARSE, "it returned kind \"%s\", not ExecCredential",
                  kind ? kind : "");
        goto out;
    }
    if (!api || strcmp(api, api_version)) {
        rc = is_errf(err, errlen, IS_EPARSE, "it is configured for %s but returned apiVersion \"%s\"",
                  api_version, api ? api : "");
        goto out;
    }
    int status = is_json_get(&doc, 0, "status");
    if (status < 0 || doc.toks[status].type != IS_JSON_OBJECT) {
        rc = is_errf(err, errlen, IS_EPARSE, "it returned no status");
        goto out;
    }
    if ((rc = json_string(&doc, status, "token", &cred->token)) == IS_ENOMEM ||
        (rc == IS_OK && (rc = json_string(&doc, status, "clientCertificateData", &cert)) == IS_ENOMEM) ||
        (rc == IS_OK && (rc = json_string(&doc, status, "clientKeyData", &key)) == IS_ENOMEM) ||
        (rc == IS_OK && (rc = json_string(&doc, status, "expirationTimestamp", &expiry)) == IS_ENOMEM))
        goto oom;
    if (rc != IS_OK) {
        rc = is_errf(err, errlen, IS_EPARSE, "its status has a field that is not a string");
        goto out;
    }
    if (!cert != !key) {
        rc = is_errf(err, errlen, IS_EPARSE, "it returned a client %s without a client %s",
                  cert ? "certificate" : "key", cert ? "key" : "certificate");
        goto out;
    }
    if (!cred->token && !cert) {
        rc = is_errf(err, errlen, IS_EPARSE, "it returned neither a token nor a client certificate and key");
        goto out;
    }
    if (expiry && parse_rfc3339(expiry, &cred->expires_ms) != IS_OK) {
        rc = is_errf(err, errlen, IS_EPARSE, "status.expirationTimestamp \"%s\" is not an RFC 3339 time", expiry);
        goto out;
    }
    if (cert) {
        cred->cert.data = (unsigned char *)cert;
        cred->cert.len = strlen(cert);
        cred->key.data = (unsigned char *)key;
        cred->key.len = strlen(key);
        cert = key = NULL;
    }
    rc = IS_OK;
    goto out;
oom:
    rc = is_errf(err, errlen, IS_ENOMEM, "out of memory");
out:
    if (rc != IS_OK) is_exec_cred_free(cred);
    is_free(api);
    is_free(kind);
    is_free(cert);
    is_free(key);
    is_free(expiry);
    is_json_free(&doc);
    return rc;
}

/* ---- KUBERNETES_EXEC_INFO ---------------------------------------------- */

static int append_base64(is_buf_t *b, const unsigned char *p, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int rc = is_buf_reserve(b, (n + 2) / 3 * 4 + 1);
    for (size_t i = 0; rc == IS_OK && i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char q[4] = { abc[v >> 18 & 63], abc[v >> 12 & 63], i + 1 < n ? abc[v >> 6 & 63] : '=',
                      i + 2 < n ? abc[v & 63] : '=' };
        rc = is_buf_append(b, q, 4);
    }
    return rc;
}

static int append_field(is_buf_t *b, const char *key, const char *value) {
    if (!value) return IS_OK;
    int rc = is_buf_printf(b, ",\"%s\":", key);
    return rc == IS_OK ? is_buf_append_jsonstr(b, value, strlen(value)) : rc;
}

int is_exec_info(const is_kubeconfig_t *kc, is_buf_t *out) {
    const char *api = kc->exec.api_version;
    int rc = is_buf_appends(out, "{\"apiVersion\":");
    if (rc == IS_OK) rc = is_buf_append_jsonstr(out, api, strlen(api));
    if (rc == IS_OK) rc = is_buf_appends(out, ",\"kind\":\"ExecCredential\",\"spec\":{\"interactive\":false");
    if (rc == IS_OK && kc->exec.provide_cluster_info) {
        /* The field names of ExecCredential's Cluster, kebab case as in a
         * kubeconfig. */
        rc = is_buf_appends(out, ",\"cluster\":{\"server\":");
        if (rc == IS_OK) rc = is_buf_append_jsonstr(out, kc->server, strlen(kc->server));
        if (rc == IS_OK) rc = append_field(out, "tls-server-name", kc->tls_server_name);
        if (rc == IS_OK && kc->insecure_skip_tls_verify)
            rc = is_buf_appends(out, ",\"insecure-skip-tls-verify\":true");
        if (rc == IS_OK && kc->ca.data) {
            rc = is_buf_appends(out, ",\"certificate-authority-data\":\"");
            if (rc == IS_OK) rc = append_base64(out, kc->ca.data, kc->ca.len);
            if (rc == IS_OK) rc = is_buf_appends(out, "\"");
        }
        if (rc == IS_OK) rc = append_field(out, "proxy-url", kc->proxy_url);
        if (rc == IS_OK) rc = is_buf_appends(out, "}");
    }
    return rc == IS_OK ? is_buf_appends(out, "}}") : rc;
}

/* ---- running the plugin ------------------------------------------------ */

static int env_overridden(const char *entry, char *const *env) {
    size_t n = strcspn(entry, "=");
    if (!strncmp(entry, "KUBERNETES_EXEC_INFO=", 21)) return 1;
    for (char *const *e = env; e && *e; e++)
        if (!strncmp(*e, entry, n) && (*e)[n] == '=') return 1;
    return 0;
}

/* Our environment, then the kubeconfig's env (which wins, as in client-go),
 * then KUBERNETES_EXEC_INFO. The strings are borrowed but info. */
static char **build_env(const is_kubeconfig_t *kc, char *info) {
    size_t n = 0, k = 0;
    for (char **e = environ; *e; e++) n++;
    for (char **e = kc->exec.env; e && *e; e++) n++;
    char **envp = is_calloc(n + 2, sizeof *envp);
    if (!envp) return NULL;
    for (char **e = environ; *e; e++)
        if (!env_overridden(*e, kc->exec.env)) envp[k++] = *e;
    for (char **e = kc->exec.env; e && *e; e++) envp[k++] = *e;
    envp[k] = info;
    return envp;
}

/* Where command runs from: itself when it names a path, else the first
 * executable of that name on PATH (Go's exec.LookPath, which client-go
 * uses). Looked up here, not left to posix_spawnp, so a missing plugin is
 * always reported as missing. NULL with errno set when there is none. */
static char *find_executable(const char *command) {
    if (strchr(command, '/')) {
        if (access(command, X_OK) != 0) return NULL;
        char *copy = is_strdup(command);
        if (!copy) errno = ENOMEM;
        return copy;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    size_t clen = strlen(command);
    for (const char *p = path;; ) {
        size_t dlen = strcspn(p, ":");
        size_t n = (dlen ? dlen : 1) + 1 + clen + 1;
        char *full = is_malloc(n);
        if (!full) {
            errno = ENOMEM;
            return NULL;
        }
        /* An empty PATH entry is the current directory. */
        snprintf(full, n, "%.*s/%s", (int)(dlen ? dlen : 1), dlen ? p : ".", command);
        struct stat st;
        if (access(full, X_OK) == 0 && stat(full, &st) == 0 && S_ISREG(st.st_mode)) return full;
        is_free(full);
        if (!p[dlen]) break;
        p += dlen + 1;
    }
    errno = ENOENT;
    return NULL;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Reads what is there; at EOF the fd is closed. cap bounds what is kept. */
static int drain(int *fd, is_buf_t *b, size_t cap, int *overflow) {
    char chunk[4096];
    while (*fd >= 0) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n > 0) {
            size_t room = b->len < cap ? cap - b->len : 0;
            if ((size_t)n > room) *overflow = 1;
            if (room && is_buf_append(b, chunk, (size_t)n < room ? (size_t)n : room) != IS_OK)
                return IS_ENOMEM;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return IS_OK;
        close_fd(fd);
    }
    return IS_OK;
}

/* Everything x holds is released before the callback, which may start the
 * plugin again in the same struct. */
static void finish(is_exec_t *x, int status, is_exec_cred_t *cred, const char *msg) {
    x->running__ = 0;
    is_timer_stop(&x->timer__);
    close_fd(&x->out__);
    close_fd(&x->err__);
    is_buf_free(&x->stdout__);
    is_buf_free(&x->stderr__);
    char *api = x->api_version__, *command = x->command__;
    x->api_version__ = x->command__ = NULL;
    is_exec_cred_t none;
    memset(&none, 0, sizeof none);
    x->cb(x, status, cred ? cred : &none, msg, x->ud);
    is_exec_cred_free(cred);
    is_free(api);
    is_free(command);
}

/* The first line of what the plugin wrote on stderr, for the message. */
static const char *stderr_line(is_exec_t *x) {
    if (!x->stderr__.data) return "";
    char *nl = strchr(x->stderr__.data, '\n');
    if (nl) *nl = '\0';
    return x->stderr__.data;
}

static void on_poll(is_timer_t *t) {
    is_exec_t *x = t->data;
    char msg[512 + EXEC_MAX_STDERR];
    int over_out = 0, over_err = 0;
    if (drain(&x->out__, &x->stdout__, EXEC_MAX_STDOUT, &over_out) != IS_OK ||
        drain(&x->err__, &x->stderr__, EXEC_MAX_STDERR, &over_err) != IS_OK) {
        kill(x->pid__, SIGKILL);
        waitpid(x->pid__, NULL, 0);
        snprintf(msg, sizeof msg, "exec plugin %s: out of memory reading its output", x->command__);
        finish(x, IS_ENOMEM, NULL, msg);
        return;
    }
    int wstatus = 0;
    pid_t done = x->out__ < 0 && x->err__ < 0 ? waitpid(x->pid__, &wstatus, WNOHANG) : 0;
    if (done == 0) {
        if (is_loop_now(x->loop__) < x->deadline__) {
            is_timer_start(&x->timer__, EXEC_POLL_MS);
            return;
        }
        kill(x->pid__, SIGKILL);
        waitpid(x->pid__, NULL, 0);
        snprintf(msg, sizeof msg, "exec plugin %s: no answer within %gs, killed", x->command__,
                 (double)x->timeout_ms__ / 1000);
        finish(x, IS_ELIMIT, NULL, msg);
    } else if (done < 0 || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        if (done > 0 && WIFSIGNALED(wstatus))
            snprintf(msg, sizeof msg, "exec plugin %s: killed by signal %d", x->command__,
                     WTERMSIG(wstatus));
        else
            snprintf(msg, sizeof msg, "exec plugin %s: exit status %d%s%s", x->command__,
                     done > 0 ? WEXITSTATUS(wstatus) : -1, x->stderr__.len ? ": " : "",
                     stderr_line(x));
        finish(x, IS_EINVAL, NULL, msg);
    } else if (over_out) {
        snprintf(msg, sizeof msg, "exec plugin %s: its output exceeds %u bytes", x->command__,
                 EXEC_MAX_STDOUT);
        finish(x, IS_ELIMIT, NULL, msg);
    } else {
        is_exec_cred_t cred;
        char why[256];
        const char *out = x->stdout__.data ? x->stdout__.data : "";
        int rc = is_exec_parse_credential(out, x->stdout__.len, x->api_version__, &cred, why, sizeof why);
        if (rc == IS_OK) {
            finish(x, IS_OK, &cred, NULL);
        } else {
            snprintf(msg, sizeof msg, "exec plugin %s: %s", x->command__, why);
            finish(x, rc, NULL, msg);
        }
    }
}

int is_exec_start(is_exec_t *x, is_loop_t *loop, const is_kubeconfig_t *kc, long timeout_ms,
                  is_exec_done_cb cb, void *ud, char *err, size_t errlen) {
    memset(x, 0, sizeof *x);
    x->out__ = x->err__ = -1;
    const is_kubeconfig_exec_t *e = &kc->exec;
    if (!e->command) return is_errf(err, errlen, IS_EINVAL, "no exec plugin configured");
    if (e->interactive_mode == IS_EXEC_ALWAYS)
        return is_errf(err, errlen, IS_EINVAL,
                    "exec plugin %s: interactiveMode Always needs a terminal, and the controller has none",
                    e->command);
    is_buf_t info;
    is_buf_init(&info);
    int rc = is_buf_appends(&info, "KUBERNETES_EXEC_INFO=");
    if (rc == IS_OK) rc = is_exec_info(kc, &info);
    char *program = find_executable(e->command);
    if (!program && errno != ENOMEM) {
        is_buf_free(&info);
        return is_errf(err, errlen, IS_ENOTFOUND, "exec plugin %s: executable not found%s%s", e->command,
                       e->install_hint ? ": " : "", e->install_hint ? e->install_hint : "");
    }
    char **envp = rc == IS_OK && program ? build_env(kc, info.data) : NULL;
    x->api_version__ = is_strdup(e->api_version);
    x->command__ = is_strdup(e->command);
    if (!envp || !x->api_version__ || !x->command__) {
        is_free(program);
        is_free(envp);
        is_buf_free(&info);
        is_free(x->api_version__);
        is_free(x->command__);
        return is_errf(err, errlen, IS_ENOMEM, "exec plugin %s: out of memory", e->command);
    }
    int out[2] = { -1, -1 }, errp[2] = { -1, -1 };
    posix_spawn_file_actions_t fa;
    int fa_ok = 0;
    pid_t pid = -1;
    rc = IS_EIO;
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) goto spawn_failed;
    if (posix_spawn_file_actions_init(&fa) != 0) goto spawn_failed;
    fa_ok = 1;
    if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
        posix_spawn_file_actions_adddup2(&fa, out[1], 1) != 0 ||
        posix_spawn_file_actions_adddup2(&fa, errp[1], 2) != 0)
        goto spawn_failed;
    errno = posix_spawn(&pid, program, &fa, NULL, e->argv, envp);
    if (errno != 0) {
        pid = -1;
        goto spawn_failed;
    }
    is_free(program);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(errp[1]);
    is_free(envp);
    is_buf_free(&info);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(errp[0], F_SETFL, O_NONBLOCK);
    x->loop__ = loop;
    x->pid__ = pid;
    x->out__ = out[0];
    x->err__ = errp[0];
    x->timeout_ms__ = timeout_ms;
    x->deadline__ = is_loop_now(loop) + (uint64_t)timeout_ms;
    x->cb = cb;
    x->ud = ud;
    x->running__ = 1;
    is_buf_init(&x->stdout__);
    is_buf_init(&x->stderr__);
    /* A pipe at EOF never reads as ready to the loop's poll, so the plugin
     * is looked at on a short timer instead: it runs once per credential. */
    is_timer_init(loop, &x->timer__, on_poll, x);
    return is_timer_start(&x->timer__, 1);

spawn_failed: {
        int saved = errno;
        if (fa_ok) posix_spawn_file_actions_destroy(&fa);
        for (int i = 0; i < 2; i++) {
            if (out[i] >= 0) close(out[i]);
            if (errp[i] >= 0) close(errp[i]);
        }
        is_free(program);
        is_free(envp);
        is_buf_free(&info);
        is_free(x->api_version__);
        is_free(x->command__);
        x->api_version__ = x->command__ = NULL;
        return is_errf(err, errlen, rc, "exec plugin %s: cannot run: %s", e->command, strerror(saved));
    }
}

void is_exec_cancel(is_exec_t *x) {
    if (!x->running__) return;
    x->running__ = 0;
    is_timer_stop(&x->timer__);
    kill(x->pid__, SIGKILL);
    waitpid(x->pid__, NULL, 0);
    close_fd(&x->out__);
    close_fd(&x->err__);
    is_buf_free(&x->stdout__);
    is_buf_free(&x->stderr__);
    is_free(x->api_version__);
    is_free(x->command__);
    x->api_version__ = x->command__ = NULL;
}

int is_exec_running(const is_exec_t *x) { return x->running__; }
