/* Kubeconfig and in-cluster connection settings.
 *
 * The YAML is loaded into a libyaml document (the node API) and walked by
 * hand: only the handful of fields one connection needs are read, and every
 * shape error names the path of the offending field so a broken kubeconfig
 * can be fixed from the log line alone. libyaml has no allocator hook, so the
 * parse tree itself lives outside is_alloc for the short time it exists;
 * everything the result holds goes through is_alloc. */
#include "is_kubeconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "is_alloc.h"
#include "is_err.h"

#define KC_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
/* Kubeconfigs, certificates and tokens are small; the cap keeps a reference
 * to something like /dev/zero from eating the process. */
#define KC_MAX_FILE (16u * 1024u * 1024u)
#define KC_PATH_MAX 256

/* One kubeconfig of a KUBECONFIG list (or the only one). */
typedef struct kc_file_s {
    const char *label;    /* its path for messages; NULL for text */
    char *base_dir;       /* where its relative references resolve */
    yaml_document_t doc;
    int loaded;
} kc_file_t;

typedef struct kc_ctx_s {
    const char *label;    /* kubeconfig path for messages; NULL for text */
    const char *base_dir; /* where relative file references resolve */
    yaml_document_t *doc; /* the file being read */
    kc_file_t *files;     /* in KUBECONFIG order: the first to name a thing wins */
    int nfiles;
    const char *list_label; /* all of them, for what no single file answers */
    char *err;
    size_t errlen;
} kc_ctx_t;

static void select_file(kc_ctx_t *c, int i) {
    c->doc = &c->files[i].doc;
    c->label = c->files[i].label;
    c->base_dir = c->files[i].base_dir;
}

static void select_all(kc_ctx_t *c) {
    if (c->nfiles > 1) c->label = c->list_label;
}

/* ---- errors ---------------------------------------------------------- */

static int kc_fail(kc_ctx_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int kc_fail(kc_ctx_t *c, int code, const char *fmt, ...) {
    if (!c->err || c->errlen == 0) return code;
    int n = c->label ? snprintf(c->err, c->errlen, "kubeconfig %s: ", c->label)
                     : snprintf(c->err, c->errlen, "kubeconfig: ");
    if (n < 0) n = 0;
    if ((size_t)n < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int kc_oom(kc_ctx_t *c) { return kc_fail(c, IS_ENOMEM, "out of memory"); }

/* ---- files ----------------------------------------------------------- */

static long long mtime_ns(const struct stat *st) {
    return (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

/* Reads a whole file into an is_malloc'd, NUL-terminated buffer. On IS_EIO
 * errno says why. st (may be NULL) receives the fstat of the file read, so a
 * token's recorded mtime belongs to exactly the bytes that were read. */
static int read_file(const char *path, char **out, size_t *outlen, struct stat *st) {
    *out = NULL;
    *outlen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return IS_EIO;
    struct stat sb;
    if (fstat(fd, &sb) != 0) goto io_error;
    if (S_ISDIR(sb.st_mode)) {
        errno = EISDIR;
        goto io_error;
    }
    /* Room for the stat size, the NUL and one spare byte, so a regular file
     * is read without growing; keep reading to EOF anyway, because
     * /proc-like files and files growing under us report sizes that lie. */
    size_t cap = (size_t)(sb.st_size > 0 ? sb.st_size : 0) + 2, len = 0;
    if (cap > KC_MAX_FILE) {
        errno = EFBIG;
        goto io_error;
    }
    char *buf = is_malloc(cap);
    if (!buf) {
        close(fd);
        return IS_ENOMEM;
    }
    for (;;) {
        if (len + 1 == cap) {
            if (cap > KC_MAX_FILE) {
                is_free(buf);
                errno = EFBIG;
                goto io_error;
            }
            char *bigger = is_realloc(buf, cap * 2);
            if (!bigger) {
                is_free(buf);
                close(fd);
                return IS_ENOMEM;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR) continue;
            int saved = errno;
            is_free(buf);
            close(fd);
            errno = saved;
            return IS_EIO;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    if (st) *st = sb;
    *out = buf;
    *outlen = len;
    return IS_OK;
io_error: {
        int saved = errno;
        close(fd);
        errno = saved;
        return IS_EIO;
    }
}

/* Joins a file reference to base_dir unless it is absolute. */
static char *resolve_path(const char *base_dir, const char *ref) {
    if (ref[0] == '/' || !base_dir || !base_dir[0]) return is_strdup(ref);
    size_t blen = strlen(base_dir), rlen = strlen(ref);
    char *p = is_malloc(blen + 1 + rlen + 1);
    if (!p) return NULL;
    memcpy(p, base_dir, blen);
    p[blen] = '/';
    memcpy(p + blen + 1, ref, rlen + 1);
    return p;
}

static void strip_trailing_space(char *s) {
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                     s[n - 1] == '\n'))
        s[--n] = '\0';
}

/* Reads a token file; *token is NULL when the file holds only whitespace,
 * so an empty file never turns into an empty Authorization header. */
static int read_token(const char *path, char **token, long long *mtime, long long *size) {
    char *data;
    size_t len;
    struct stat st;
    *token = NULL;
    int rc = read_file(path, &data, &len, &st);
    if (rc != IS_OK) return rc;
    strip_trailing_space(data);
    if (data[0] == '\0') {
        is_free(data);
    } else {
        *token = data;
    }
    *mtime = mtime_ns(&st);
    *size = (long long)st.st_size;
    return IS_OK;
}

/* ---- base64 ---------------------------------------------------------- */

static int b64_value(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Standard-alphabet base64. Whitespace anywhere is skipped (kubeconfigs
 * carry wrapped or folded data) and padding may be omitted, but padding
 * that is present must end the input. IS_EPARSE on anything else. */
static int b64_decode(const char *in, size_t inlen, is_blob_t *out) {
    unsigned char *buf = is_malloc(inlen / 4 * 3 + 4);
    if (!buf) return IS_ENOMEM;
    size_t len = 0, pad = 0, quad = 0;
    unsigned acc = 0;
    for (size_t i = 0; i < inlen; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        int v = b64_value(ch);
        if (v < 0 || pad) goto invalid;
        acc = (acc << 6) | (unsigned)v;
        if (++quad == 4) {
            buf[len++] = (unsigned char)(acc >> 16);
            buf[len++] = (unsigned char)(acc >> 8);
            buf[len++] = (unsigned char)acc;
            acc = 0;
            quad = 0;
        }
    }
    /* A trailing group of 2 or 3 symbols carries 1 or 2 bytes; padding, when
     * present, must fill exactly that group up to four. */
    if (quad == 1 || (pad && quad + pad != 4) || pad > 2) goto invalid;
    if (quad == 2) {
        buf[len++] = (unsigned char)(acc >> 4);
    } else if (quad == 3) {
        buf[len++] = (unsigned char)(acc >> 10);
        buf[len++] = (unsigned char)(acc >> 2);
    }
    buf[len] = 0;
    out->data = buf;
    out->len = len;
    return IS_OK;
invalid:
    is_free(buf);
    return IS_EPARSE;
}

/* ---- YAML access ----------------------------------------------------- */

static yaml_node_t *node_at(kc_ctx_t *c, int index) {
    return yaml_document_get_node(c->doc, index);
}

/* Plain empty, "~" and "null" scalars are YAML nulls: an unset field. */
static int is_null(const yaml_node_t *n) {
    if (!n) return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static yaml_node_t *map_get(kc_ctx_t *c, const yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    size_t klen = strlen(key);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == klen &&
            memcmp(k->data.scalar.value, key, klen) == 0)
            return node_at(c, p->value);
    }
    return NULL;
}

/* The string at map.key, or NULL when absent, null or empty. Non-scalars are
 * IS_EPARSE naming where/key. */
static int get_str(kc_ctx_t *c, const yaml_node_t *map, const char *where,
                   const char *key, const char **out) {
    *out = NULL;
    yaml_node_t *n = map_get(c, map, key);
    if (is_null(n)) return IS_OK;
    if (n->type != YAML_SCALAR_NODE)
        return kc_fail(c, IS_EPARSE, "%s.%s: expected a string", where, key);
    if (n->data.scalar.length == 0) return IS_OK;
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
        return kc_fail(c, IS_EPARSE, "%s.%s: contains a NUL byte", where, key);
    *out = (const char *)n->data.scalar.value;
    return IS_OK;
}

static int get_bool(kc_ctx_t *c, const yaml_node_t *map, const char *where,
                    const char *key, int *out) {
    const char *v;
    int rc = get_str(c, map, where, key, &v);
    if (rc != IS_OK) return rc;
    if (!v || !strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE")) {
        *out = 0;
    } else if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE")) {
        *out = 1;
    } else {
        return kc_fail(c, IS_EPARSE, "%s.%s: expected true or false, got \"%s\"",
                       where, key, v);
    }
    return IS_OK;
}

static int dup_str(kc_ctx_t *c, const char *s, char **out) {
    if (!s) return IS_OK;
    *out = is_strdup(s);
    return *out ? IS_OK : kc_oom(c);
}

/* Finds the entry called name in one file's top-level list (clusters,
 * users or contexts) and returns its inner mapping (cluster, user or
 * context) in *body, which stays NULL when the entry has none. *where
 * receives the field path of that mapping for messages, e.g.
 * "users[2].user". IS_ENOTFOUND, with no message, when the file has none. */
static int find_in_file(kc_ctx_t *c, const yaml_node_t *root, const char *list_key,
                        const char *body_key, const char *name, yaml_node_t **body,
                        char *where, size_t wherelen) {
    *body = NULL;
    yaml_node_t *list = map_get(c, root, list_key);
    if (is_null(list)) return IS_ENOTFOUND;
    if (list->type != YAML_SEQUENCE_NODE)
        return kc_fail(c, IS_EPARSE, "%s: expected a list", list_key);
    int i = 0;
    for (yaml_node_item_t *it = list->data.sequence.items.start;
         it < list->data.sequence.items.top; it++, i++) {
        yaml_node_t *entry = node_at(c, *it);
        char entry_where[KC_PATH_MAX];
        snprintf(entry_where, sizeof entry_where, "%s[%d]", list_key, i);
        if (!entry || entry->type != YAML_MAPPING_NODE)
            return kc_fail(c, IS_EPARSE, "%s: expected a mapping", entry_where);
        const char *entry_name;
        int rc = get_str(c, entry, entry_where, "name", &entry_name);
        if (rc != IS_OK) return rc;
        if (!entry_name || strcmp(entry_name, name) != 0) continue;
        snprintf(where, wherelen, "%s[%d].%s", list_key, i, body_key);
        yaml_node_t *b = map_get(c, entry, body_key);
        if (is_null(b)) return IS_OK;
        if (b->type != YAML_MAPPING_NODE)
            return kc_fail(c, IS_EPARSE, "%s: expected a mapping", where);
        *body = b;
        return IS_OK;
    }
    return IS_ENOTFOUND;
}

/* The entry from the first file that names it, as client-go merges a
 * KUBECONFIG list; that file stays selected, so the entry's relative
 * references resolve against its own directory. */
static int find_named(kc_ctx_t *c, const char *list_key, const char *body_key,
                      const char *kind, const char *name, yaml_node_t **body,
                      char *where, size_t wherelen) {
    for (int i = 0; i < c->nfiles; i++) {
        select_file(c, i);
        int rc = find_in_file(c, yaml_document_get_root_node(c->doc), list_key, body_key, name,
                              body, where, wherelen);
        if (rc != IS_ENOTFOUND) return rc;
    }
    select_all(c);
    return kc_fail(c, IS_ENOTFOUND, "%s \"%s\" not found", kind, name);
}

/* Fills out from key_data (inline base64, which wins as in kubectl) or from
 * the file named by key_file. */
static int load_blob(kc_ctx_t *c, const yaml_node_t *map, const char *where,
                     const char *key_data, const char *key_file, is_blob_t *out) {
    const char *data, *file;
    int rc = get_str(c, map, where, key_data, &data);
    if (rc != IS_OK) return rc;
    if (data) {
        rc = b64_decode(data, strlen(data), out);
        if (rc == IS_ENOMEM) return kc_oom(c);
        if (rc != IS_OK)
            return kc_fail(c, IS_EPARSE, "%s.%s: invalid base64", where, key_data);
        return IS_OK;
    }
    rc = get_str(c, map, where, key_file, &file);
    if (rc != IS_OK || !file) return rc;
    char *path = resolve_path(c->base_dir, file);
    if (!path) return kc_oom(c);
    char *bytes;
    size_t len;
    rc = read_file(path, &bytes, &len, NULL);
    if (rc == IS_EIO)
        kc_fail(c, IS_EIO, "%s.%s: cannot read %s: %s", where, key_file, path,
                strerror(errno));
    else if (rc == IS_ENOMEM)
        kc_oom(c);
    is_free(path);
    if (rc != IS_OK) return rc;
    out->data = (unsigned char *)bytes;
    out->len = len;
    return IS_OK;
}

/* A NULL-terminated array of n + extra slots, zeroed. */
static char **new_strv(kc_ctx_t *c, size_t n, int *rc) {
    char **v = is_calloc(n + 1, sizeof *v);
    *rc = v ? IS_OK : kc_oom(c);
    return v;
}

static void free_strv(char **v) {
    for (char **p = v; p && *p; p++) is_free(*p);
    is_free(v);
}

/* user.exec, checked as client-go checks it: a known apiVersion, a
 * command, string args, name/value env entries, and for v1 an explicit
 * interactiveMode. */
static int load_exec(kc_ctx_t *c, is_kubeconfig_t *kc, const yaml_node_t *user,
                     const char *user_where) {
    yaml_node_t *x = map_get(c, user, "exec");
    if (is_null(x)) return IS_OK;
    char where[KC_PATH_MAX + 8];
    snprintf(where, sizeof where, "%s.exec", user_where);
    if (x->type != YAML_MAPPING_NODE) return kc_fail(c, IS_EPARSE, "%s: expected a mapping", where);
    is_kubeconfig_exec_t *e = &kc->exec;
    const char *api, *command, *mode, *hint;
    int rc;
    if ((rc = get_str(c, x, where, "apiVersion", &api)) != IS_OK) return rc;
    if (!api) return kc_fail(c, IS_EPARSE, "%s.apiVersion: missing", where);
    if (strcmp(api, "client.authentication.k8s.io/v1") && strcmp(api, "client.authentication.k8s.io/v1beta1"))
        return kc_fail(c, IS_EPARSE,
                       "%s.apiVersion: \"%s\" is not supported (client.authentication.k8s.io/v1 or v1beta1)",
                       where, api);
    if ((rc = get_str(c, x, where, "command", &command)) != IS_OK) return rc;
    if (!command) return kc_fail(c, IS_EPARSE, "%s.command: missing", where);
    if ((rc = get_str(c, x, where, "interactiveMode", &mode)) != IS_OK) return rc;
    if (!mode && !strcmp(api, "client.authentication.k8s.io/v1"))
        return kc_fail(c, IS_EPARSE, "%s.interactiveMode: required for %s", where, api);
    if (!mode || !strcmp(mode, "IfAvailable")) e->interactive_mode = IS_EXEC_IF_AVAILABLE;
    else if (!strcmp(mode, "Never")) e->interactive_mode = IS_EXEC_NEVER;
    else if (!strcmp(mode, "Always")) e->interactive_mode = IS_EXEC_ALWAYS;
    else
        return kc_fail(c, IS_EPARSE, "%s.interactiveMode: \"%s\" is not Never, IfAvailable or Always",
                       where, mode);
    if ((rc = get_bool(c, x, where, "provideClusterInfo", &e->provide_cluster_info)) != IS_OK) return rc;
    if ((rc = get_str(c, x, where, "installHint", &hint)) != IS_OK) return rc;
    if ((rc = dup_str(c, hint, &e->install_hint)) != IS_OK) return rc;
    if ((rc = dup_str(c, api, &e->api_version)) != IS_OK) return rc;
    /* A relative command with a slash is relative to its kubeconfig, as
     * client-go resolves it; a bare name is looked up on PATH. */
    e->command = strchr(command, '/') ? resolve_path(c->base_dir, command) : is_strdup(command);
    if (!e->command) return kc_oom(c);

    yaml_node_t *args = map_get(c, x, "args");
    size_t nargs = 0;
    if (!is_null(args)) {
        if (args->type != YAML_SEQUENCE_NODE) return kc_fail(c, IS_EPARSE, "%s.args: expected a list", where);
        nargs = (size_t)(args->data.sequence.items.top - args->data.sequence.items.start);
    }
    if (!(e->argv = new_strv(c, nargs + 1, &rc))) return rc;
    if (!(e->argv[0] = is_strdup(e->command))) return kc_oom(c);
    for (size_t i = 0; i < nargs; i++) {
        yaml_node_t *a = node_at(c, args->data.sequence.items.start[i]);
        if (!a || a->type != YAML_SCALAR_NODE)
            return kc_fail(c, IS_EPARSE, "%s.args[%zu]: expected a string", where, i);
        if (!(e->argv[i + 1] = is_strndup((const char *)a->data.scalar.value, a->data.scalar.length)))
            return kc_oom(c);
    }

    yaml_node_t *env = map_get(c, x, "env");
    size_t nenv = 0;
    if (!is_null(env)) {
        if (env->type != YAML_SEQUENCE_NODE) return kc_fail(c, IS_EPARSE, "%s.env: expected a list", where);
        nenv = (size_t)(env->data.sequence.items.top - env->data.sequence.items.start);
    }
    if (!(e->env = new_strv(c, nenv, &rc))) return rc;
    for (size_t i = 0; i < nenv; i++) {
        char ewhere[KC_PATH_MAX + 48];
        snprintf(ewhere, sizeof ewhere, "%s.env[%zu]", where, i);
        yaml_node_t *entry = node_at(c, env->data.sequence.items.start[i]);
        if (!entry || entry->type != YAML_MAPPING_NODE)
            return kc_fail(c, IS_EPARSE, "%s: expected a mapping", ewhere);
        const char *name, *value;
        if ((rc = get_str(c, entry, ewhere, "name", &name)) != IS_OK) return rc;
        if ((rc = get_str(c, entry, ewhere, "value", &value)) != IS_OK) return rc;
        if (!name || strchr(name, '='))
            return kc_fail(c, IS_EPARSE, "%s.name: expected a variable name", ewhere);
        size_t n = strlen(name) + 1 + (value ? strlen(value) : 0) + 1;
        if (!(e->env[i] = is_malloc(n))) return kc_oom(c);
        snprintf(e->env[i], n, "%s=%s", name, value ? value : "");
    }
    return IS_OK;
}

static int load_cluster(kc_ctx_t *c, is_kubeconfig_t *kc, const char *name) {
    yaml_node_t *cl;
    char where[KC_PATH_MAX];
    int rc = find_named(c, "clusters", "cluster", "cluster", name, &cl, where, sizeof where);
    if (rc != IS_OK) return rc;
    const char *server, *sni;
    if ((rc = get_str(c, cl, where, "server", &server)) != IS_OK) return rc;
    if (!server) return kc_fail(c, IS_EPARSE, "cluster \"%s\" has no server", name);
    /* Request paths start with "/", so a trailing slash would double up. */
    size_t slen = strlen(server);
    while (slen > 0 && server[slen - 1] == '/') slen--;
    if (slen == 0) return kc_fail(c, IS_EPARSE, "cluster \"%s\" has no server", name);
    if (!(kc->server = is_strndup(server, slen))) return kc_oom(c);
    if ((rc = get_str(c, cl, where, "tls-server-name", &sni)) != IS_OK) return rc;
    if ((rc = dup_str(c, sni, &kc->tls_server_name)) != IS_OK) return rc;
    if ((rc = get_bool(c, cl, where, "insecure-skip-tls-verify",
                       &kc->insecure_skip_tls_verify)) != IS_OK)
        return rc;
    const char *proxy;
    if ((rc = get_str(c, cl, where, "proxy-url", &proxy)) != IS_OK) return rc;
    if ((rc = dup_str(c, proxy, &kc->proxy_url)) != IS_OK) return rc;
    return load_blob(c, cl, where, "certificate-authority-data", "certificate-authority",
                     &kc->ca);
}

static int load_user(kc_ctx_t *c, is_kubeconfig_t *kc, const char *name) {
    yaml_node_t *u;
    char where[KC_PATH_MAX];
    int rc = find_named(c, "users", "user", "user", name, &u, where, sizeof where);
    if (rc != IS_OK) return rc;
    /* Legacy auth providers and basic auth are refused outright: silently
     * connecting without the credentials they stand for would only fail
     * later, and more obscurely, with 401s. */
    static const char *const unsupported[] = {"auth-provider", "username", "password"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        if (!is_null(map_get(c, u, unsupported[i])))
            return kc_fail(c, IS_EPARSE, "%s.%s: user \"%s\" uses %s, which is not supported",
                           where, unsupported[i], name, unsupported[i]);
    }
    if ((rc = load_blob(c, u, where, "client-certificate-data", "client-certificate",
                        &kc->client_cert)) != IS_OK)
        return rc;
    if ((rc = load_blob(c, u, where, "client-key-data", "client-key", &kc->client_key)) !=
        IS_OK)
        return rc;
    if (!kc->client_cert.data != !kc->client_key.data)
        return kc_fail(c, IS_EPARSE, "%s: user \"%s\" has a client %s but no client %s",
                       where, name, kc->client_cert.data ? "certificate" : "key",
                       kc->client_cert.data ? "key" : "certificate");

    if ((rc = load_exec(c, kc, u, where)) != IS_OK) return rc;

    /* A token file wins over an inline token, as in client-go: it is the
     * one that stays current when the token rotates. */
    const char *token, *token_file;
    if ((rc = get_str(c, u, where, "tokenFile", &token_file)) != IS_OK) return rc;
    if (token_file) {
        if (!(kc->token_file = resolve_path(c->base_dir, token_file))) return kc_oom(c);
        rc = read_token(kc->token_file, &kc->token, &kc->token_mtime__, &kc->token_size__);
        if (rc == IS_ENOMEM) return kc_oom(c);
        if (rc != IS_OK)
            return kc_fail(c, rc, "%s.tokenFile: cannot read %s: %s", where, kc->token_file,
                           strerror(errno));
        return IS_OK;
    }
    if ((rc = get_str(c, u, where, "token", &token)) != IS_OK) return rc;
    if ((rc = dup_str(c, token, &kc->token)) != IS_OK) return rc;
    if (kc->token) {
        strip_trailing_space(kc->token);
        if (!kc->token[0]) {
            is_free(kc->token);
            kc->token = NULL;
        }
    }
    return IS_OK;
}

/* current-context from the first file that sets it, then the context,
 * its cluster and its user, each from the first file that names it. */
static int load_merged(kc_ctx_t *c, is_kubeconfig_t *kc, const char *context) {
    int rc;
    for (int i = 0; i < c->nfiles && (!context || !context[0]); i++) {
        select_file(c, i);
        yaml_node_t *root = yaml_document_get_root_node(c->doc);
        if ((rc = get_str(c, root, "(top level)", "current-context", &context)) != IS_OK) return rc;
    }
    select_all(c);
    if (!context || !context[0])
        return kc_fail(c, IS_ENOTFOUND, "no current-context and no context given");
    yaml_node_t *ctx;
    char where[KC_PATH_MAX];
    if ((rc = find_named(c, "contexts", "context", "context", context, &ctx, where,
                         sizeof where)) != IS_OK)
        return rc;
    if ((rc = dup_str(c, context, &kc->context)) != IS_OK) return rc;

    const char *cluster, *user, *ns;
    if ((rc = get_str(c, ctx, where, "cluster", &cluster)) != IS_OK) return rc;
    if ((rc = get_str(c, ctx, where, "user", &user)) != IS_OK) return rc;
    if ((rc = get_str(c, ctx, where, "namespace", &ns)) != IS_OK) return rc;
    if (!cluster) return kc_fail(c, IS_EPARSE, "context \"%s\" has no cluster", context);
    if ((rc = dup_str(c, ns, &kc->namespace)) != IS_OK) return rc;
    /* The names point into the context's file, which stays loaded. */
    if ((rc = load_cluster(c, kc, cluster)) != IS_OK) return rc;
    /* A context without a user is legal: anonymous access. */
    if (user && (rc = load_user(c, kc, user)) != IS_OK) return rc;
    return IS_OK;
}

/* Parses one file's YAML into f->doc. */
static int parse_file(kc_ctx_t *c, kc_file_t *f, const char *yaml, size_t len) {
    yaml_parser_t parser;
    c->label = f->label;
    if (!yaml_parser_initialize(&parser)) return kc_oom(c);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    int rc = IS_OK;
    if (!yaml_parser_load(&parser, &f->doc)) {
        if (parser.error == YAML_MEMORY_ERROR)
            rc = kc_oom(c);
        else
            rc = kc_fail(c, IS_EPARSE, "line %lu column %lu: %s",
                         (unsigned long)parser.problem_mark.line + 1,
                         (unsigned long)parser.problem_mark.column + 1,
                         parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_parser_delete(&parser);
    f->loaded = 1;
    yaml_node_t *root = yaml_document_get_root_node(&f->doc);
    if (root && !is_null(root) && root->type != YAML_MAPPING_NODE)
        return kc_fail(c, IS_EPARSE, "top level: expected a mapping");
    return IS_OK;
}

static void free_files(kc_file_t *files, int n) {
    for (int i = 0; i < n; i++) {
        if (files[i].loaded) yaml_document_delete(&files[i].doc);
        is_free(files[i].base_dir);
    }
    is_free(files);
}

/* References inside a file are relative to the file's own directory. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? is_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : is_strdup(".");
}

/* ---- public ---------------------------------------------------------- */

int is_kubeconfig_parse(is_kubeconfig_t *kc, const char *yaml, size_t len,
                        const char *base_dir, const char *context,
                        char *err, size_t errlen) {
    memset(kc, 0, sizeof *kc);
    if (err && errlen) err[0] = '\0';
    kc_ctx_t c = {NULL, NULL, NULL, NULL, 0, NULL, err, errlen};
    kc_file_t *f = is_calloc(1, sizeof *f);
    if (!f) return kc_oom(&c);
    c.files = f;
    c.nfiles = 1;
    int rc = IS_OK;
    if (base_dir && !(f->base_dir = is_strdup(base_dir))) rc = kc_oom(&c);
    if (rc == IS_OK) rc = parse_file(&c, f, yaml, len);
    if (rc == IS_OK) rc = load_merged(&c, kc, context);
    free_files(f, 1);
    return rc;
}

int is_kubeconfig_load(is_kubeconfig_t *kc, const char *path,
                       const char *context, char *err, size_t errlen) {
    memset(kc, 0, sizeof *kc);
    if (err && errlen) err[0] = '\0';
    kc_ctx_t c = {path, NULL, NULL, NULL, 0, NULL, err, errlen};
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, NULL);
    if (rc == IS_ENOMEM) return kc_oom(&c);
    if (rc != IS_OK) return kc_fail(&c, IS_EIO, "cannot read: %s", strerror(errno));
    kc_file_t *f = is_calloc(1, sizeof *f);
    if (!f || !(f->base_dir = dir_of(path))) {
        is_free(text);
        if (f) is_free(f);
        return kc_oom(&c);
    }
    f->label = path;
    c.files = f;
    c.nfiles = 1;
    rc = parse_file(&c, f, text, len);
    is_free(text);
    if (rc == IS_OK) rc = load_merged(&c, kc, context);
    free_files(f, 1);
    return rc;
}

int is_kubeconfig_load_list(is_kubeconfig_t *kc, const char *paths,
                            const char *context, char *err, size_t errlen) {
    memset(kc, 0, sizeof *kc);
    if (err && errlen) err[0] = '\0';
    kc_ctx_t c = {paths, NULL, NULL, NULL, 0, paths, err, errlen};
    /* Every file gets a slot; client-go skips empty entries, repeats and
     * files that do not exist. */
    size_t max = 1;
    for (const char *p = paths; *p; p++) max += *p == ':';
    kc_file_t *files = is_calloc(max, sizeof *files);
    char *copy = is_strdup(paths);
    if (!files || !copy) {
        is_free(files);
        is_free(copy);
        return kc_oom(&c);
    }
    c.files = files;
    int rc = IS_OK;
    char *save = NULL;
    for (char *path = strtok_r(copy, ":", &save); path && rc == IS_OK;
         path = strtok_r(NULL, ":", &save)) {
        int seen = 0;
        for (int i = 0; i < c.nfiles; i++) seen |= !strcmp(files[i].label, path);
        if (seen) continue;
        char *text;
        size_t len;
        c.label = path;
        rc = read_file(path, &text, &len, NULL);
        if (rc == IS_EIO && errno == ENOENT) {
            rc = IS_OK;
            continue;
        }
        if (rc == IS_ENOMEM) rc = kc_oom(&c);
        else if (rc != IS_OK) rc = kc_fail(&c, IS_EIO, "cannot read: %s", strerror(errno));
        if (rc != IS_OK) break;
        kc_file_t *f = &files[c.nfiles++];
        f->label = path;
        if (!(f->base_dir = dir_of(path))) rc = kc_oom(&c);
        if (rc == IS_OK) rc = parse_file(&c, f, text, len);
        is_free(text);
    }
    c.label = paths;
    if (rc == IS_OK && c.nfiles == 0)
        rc = kc_fail(&c, IS_EIO, "none of the files exists");
    if (rc == IS_OK) rc = load_merged(&c, kc, context);
    free_files(files, c.nfiles);
    is_free(copy);
    return rc;
}

static int sa_read(const char *dir, const char *name, char **path, char **data,
                   size_t *len, char *err, size_t errlen) {
    *data = NULL;
    *path = resolve_path(dir, name);
    if (!*path) return is_errf(err, errlen, IS_ENOMEM, "in-cluster config: out of memory");
    return read_file(*path, data, len, NULL);
}

int is_kubeconfig_in_cluster(is_kubeconfig_t *kc, const char *sa_dir,
                             char *err, size_t errlen) {
    memset(kc, 0, sizeof *kc);
    if (err && errlen) err[0] = '\0';
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !host[0])
        return is_errf(err, errlen, IS_ENOTFOUND,
                       "not running in a cluster: KUBERNETES_SERVICE_HOST is not set");
    if (!port || !port[0])
        return is_errf(err, errlen, IS_ENOTFOUND,
                       "not running in a cluster: KUBERNETES_SERVICE_PORT is not set");
    if (!sa_dir) sa_dir = KC_SA_DIR;

    int v6 = strchr(host, ':') != NULL;
    size_t n = strlen("https://[]:") + strlen(host) + strlen(port) + 1;
    if (!(kc->server = is_malloc(n)))
        return is_errf(err, errlen, IS_ENOMEM, "in-cluster config: out of memory");
    snprintf(kc->server, n, v6 ? "https://[%s]:%s" : "https://%s:%s", host, port);

    /* Kept as a file so the bound token is re-read when the kubelet
     * rotates it. */
    if (!(kc->token_file = resolve_path(sa_dir, "token")))
        return is_errf(err, errlen, IS_ENOMEM, "in-cluster config: out of memory");
    int rc = read_token(kc->token_file, &kc->token, &kc->token_mtime__, &kc->token_size__);
    if (rc == IS_ENOMEM) return is_errf(err, errlen, rc, "in-cluster config: out of memory");
    if (rc != IS_OK)
        return is_errf(err, errlen, rc, "in-cluster config: cannot read %s: %s",
                       kc->token_file, strerror(errno));

    char *path, *data;
    size_t len;
    rc = sa_read(sa_dir, "ca.crt", &path, &data, &len, err, errlen);
    if (rc == IS_OK) {
        kc->ca.data = (unsigned char *)data;
        kc->ca.len = len;
    } else if (rc == IS_EIO) {
        is_errf(err, errlen, rc, "in-cluster config: cannot read %s: %s", path,
                strerror(errno));
    } else if (path) {
        is_errf(err, errlen, rc, "in-cluster config: out of memory");
    }
    is_free(path);
    if (rc != IS_OK) return rc;

    /* The namespace file is advisory: without it the caller's default
     * applies. */
    rc = sa_read(sa_dir, "namespace", &path, &data, &len, err, errlen);
    int missing = rc == IS_EIO && errno == ENOENT;
    if (rc == IS_OK) {
        strip_trailing_space(data);
        if (data[0]) {
            kc->namespace = data;
        } else {
            is_free(data);
        }
    } else if (rc == IS_EIO && !missing) {
        is_errf(err, errlen, rc, "in-cluster config: cannot read %s: %s", path,
                strerror(errno));
    } else if (rc == IS_ENOMEM && path) {
        is_errf(err, errlen, rc, "in-cluster config: out of memory");
    }
    is_free(path);
    return rc == IS_OK || missing ? IS_OK : rc;
}

void is_kubeconfig_free(is_kubeconfig_t *kc) {
    if (!kc) return;
    is_free(kc->context);
    is_free(kc->server);
    is_free(kc->tls_server_name);
    is_free(kc->ca.data);
    is_free(kc->client_cert.data);
    is_free(kc->client_key.data);
    is_free(kc->token);
    is_free(kc->token_file);
    is_free(kc->namespace);
    is_free(kc->proxy_url);
    is_free(kc->exec.api_version);
    is_free(kc->exec.command);
    is_free(kc->exec.install_hint);
    free_strv(kc->exec.argv);
    free_strv(kc->exec.env);
    memset(kc, 0, sizeof *kc);
}

int is_kubeconfig_refresh_token(is_kubeconfig_t *kc, int *changed) {
    if (changed) *changed = 0;
    if (!kc->token_file) return IS_OK;
    /* stat first: this runs on every 401 and must be cheap when nothing
     * moved. */
    struct stat st;
    if (stat(kc->token_file, &st) != 0) return IS_EIO;
    if (mtime_ns(&st) == kc->token_mtime__ && (long long)st.st_size == kc->token_size__)
        return IS_OK;
    char *token;
    long long mtime, size;
    int rc = read_token(kc->token_file, &token, &mtime, &size);
    /* On failure the old token stays and the stamps stay old, so the next
     * call tries again. */
    if (rc != IS_OK) return rc;
    int differs = (!token != !kc->token) || (token && strcmp(token, kc->token) != 0);
    if (differs) {
        is_free(kc->token);
        kc->token = token;
        if (changed) *changed = 1;
    } else {
        is_free(token);
    }
    kc->token_mtime__ = mtime;
    kc->token_size__ = size;
    return IS_OK;
}
