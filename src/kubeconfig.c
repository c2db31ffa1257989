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

typedef struct kc_ctx_s {
    const char *label;    /* kubeconfig path for messages; NULL for text */
    const char *base_dir; /* where relative file references resolve */
    yaml_document_t *doc;
    char *err;
    size_t errlen;
} kc_ctx_t;

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

/* Finds the entry called name in the top-level list (clusters, users or
 * contexts) and returns its inner mapping (cluster, user or context) in
 * *body, which stays NULL when the entry has none. *where receives the
 * field path of that mapping for messages, e.g. "users[2].user". */
static int find_named(kc_ctx_t *c, const yaml_node_t *root, const char *list_key,
                      const char *body_key, const char *kind, const char *name,
                      yaml_node_t **body, char *where, size_t wherelen) {
    *body = NULL;
    yaml_node_t *list = map_get(c, root, list_key);
    if (!is_null(list)) {
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
    }
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

static int load_cluster(kc_ctx_t *c, is_kubeconfig_t *kc, const yaml_node_t *root,
                        const char *name) {
    yaml_node_t *cl;
    char where[KC_PATH_MAX];
    int rc = find_named(c, root, "clusters", "cluster", "cluster", name, &cl, where,
                        sizeof where);
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
    return load_blob(c, cl, where, "certificate-authority-data", "certificate-authority",
                     &kc->ca);
}

static int load_user(kc_ctx_t *c, is_kubeconfig_t *kc, const yaml_node_t *root,
                     const char *name) {
    yaml_node_t *u;
    char where[KC_PATH_MAX];
    int rc = find_named(c, root, "users", "user", "user", name, &u, where, sizeof where);
    if (rc != IS_OK) return rc;
    /* Plugins and basic auth are refused outright: silently connecting
     * without the credentials they stand for would only fail later, and
     * more obscurely, with 401s. */
    static const char *const unsupported[] = {"exec", "auth-provider", "username",
                                              "password"};
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

static int load_document(kc_ctx_t *c, is_kubeconfig_t *kc, const char *context) {
    yaml_node_t *root = yaml_document_get_root_node(c->doc);
    if (root && !is_null(root) && root->type != YAML_MAPPING_NODE)
        return kc_fail(c, IS_EPARSE, "top level: expected a mapping");
    if (!context || !context[0]) {
        int rc = get_str(c, root, "(top level)", "current-context", &context);
        if (rc != IS_OK) return rc;
        if (!context) return kc_fail(c, IS_ENOTFOUND, "no current-context and no context given");
    }
    yaml_node_t *ctx;
    char where[KC_PATH_MAX];
    int rc = find_named(c, root, "contexts", "context", "context", context, &ctx, where,
                        sizeof where);
    if (rc != IS_OK) return rc;
    if ((rc = dup_str(c, context, &kc->context)) != IS_OK) return rc;

    const char *cluster, *user, *ns;
    if ((rc = get_str(c, ctx, where, "cluster", &cluster)) != IS_OK) return rc;
    if ((rc = get_str(c, ctx, where, "user", &user)) != IS_OK) return rc;
    if ((rc = get_str(c, ctx, where, "namespace", &ns)) != IS_OK) return rc;
    if (!cluster) return kc_fail(c, IS_EPARSE, "context \"%s\" has no cluster", context);
    if ((rc = dup_str(c, ns, &kc->namespace)) != IS_OK) return rc;
    if ((rc = load_cluster(c, kc, root, cluster)) != IS_OK) return rc;
    /* A context without a user is legal: anonymous access. */
    if (user && (rc = load_user(c, kc, root, user)) != IS_OK) return rc;
    return IS_OK;
}

static int parse_labelled(is_kubeconfig_t *kc, const char *yaml, size_t len,
                          const char *label, const char *base_dir, const char *context,
                          char *err, size_t errlen) {
    kc_ctx_t c = {label, base_dir, NULL, err, errlen};
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return kc_oom(&c);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    int rc = IS_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        if (parser.error == YAML_MEMORY_ERROR)
            rc = kc_oom(&c);
        else
            rc = kc_fail(&c, IS_EPARSE, "line %lu column %lu: %s",
                         (unsigned long)parser.problem_mark.line + 1,
                         (unsigned long)parser.problem_mark.column + 1,
                         parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return rc;
    }
    c.doc = &doc;
    rc = load_document(&c, kc, context);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- public ---------------------------------------------------------- */

int is_kubeconfig_parse(is_kubeconfig_t *kc, const char *yaml, size_t len,
                        const char *base_dir, const char *context,
                        char *err, size_t errlen) {
    memset(kc, 0, sizeof *kc);
    if (err && errlen) err[0] = '\0';
    return parse_labelled(kc, yaml, len, NULL, base_dir, context, err, errlen);
}

int is_kubeconfig_load(is_kubeconfig_t *kc, const char *path,
                       const char *context, char *err, size_t errlen) {
    memset(kc, 0, sizeof *kc);
    if (err && errlen) err[0] = '\0';
    kc_ctx_t c = {path, NULL, NULL, err, errlen};
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, NULL);
    if (rc == IS_ENOMEM) return kc_oom(&c);
    if (rc != IS_OK) return kc_fail(&c, IS_EIO, "cannot read: %s", strerror(errno));

    /* References inside the file are relative to the file's own directory. */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? is_strndup(path, slash == path ? 1 : (size_t)(slash - path))
                      : is_strdup(".");
    if (!dir) {
        is_free(text);
        return kc_oom(&c);
    }
    rc = parse_labelled(kc, text, len, path, dir, context, err, errlen);
    is_free(dir);
    is_free(text);
    return rc;
}

static int sa_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int sa_fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int sa_read(const char *dir, const char *name, char **path, char **data,
                   size_t *len, char *err, size_t errlen) {
    *data = NULL;
    *path = resolve_path(dir, name);
    if (!*path) return sa_fail(err, errlen, IS_ENOMEM, "in-cluster config: out of memory");
    return read_file(*path, data, len, NULL);
}

int is_kubeconfig_in_cluster(is_kubeconfig_t *kc, const char *sa_dir,
                             char *err, size_t errlen) {
    memset(kc, 0, sizeof *kc);
    if (err && errlen) err[0] = '\0';
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !host[0])
        return sa_fail(err, errlen, IS_ENOTFOUND,
                       "not running in a cluster: KUBERNETES_SERVICE_HOST is not set");
    if (!port || !port[0])
        return sa_fail(err, errlen, IS_ENOTFOUND,
                       "not running in a cluster: KUBERNETES_SERVICE_PORT is not set");
    if (!sa_dir) sa_dir = KC_SA_DIR;

    int v6 = strchr(host, ':') != NULL;
    size_t n = strlen("https://[]:") + strlen(host) + strlen(port) + 1;
    if (!(kc->server = is_malloc(n)))
        return sa_fail(err, errlen, IS_ENOMEM, "in-cluster config: out of memory");
    snprintf(kc->server, n, v6 ? "https://[%s]:%s" : "https://%s:%s", host, port);

    /* Kept as a file so the bound token is re-read when the kubelet
     * rotates it. */
    if (!(kc->token_file = resolve_path(sa_dir, "token")))
        return sa_fail(err, errlen, IS_ENOMEM, "in-cluster config: out of memory");
    int rc = read_token(kc->token_file, &kc->token, &kc->token_mtime__, &kc->token_size__);
    if (rc == IS_ENOMEM) return sa_fail(err, errlen, rc, "in-cluster config: out of memory");
    if (rc != IS_OK)
        return sa_fail(err, errlen, rc, "in-cluster config: cannot read %s: %s",
                       kc->token_file, strerror(errno));

    char *path, *data;
    size_t len;
    rc = sa_read(sa_dir, "ca.crt", &path, &data, &len, err, errlen);
    if (rc == IS_OK) {
        kc->ca.data = (unsigned char *)data;
        kc->ca.len = len;
    } else if (rc == IS_EIO) {
        sa_fail(err, errlen, rc, "in-cluster config: cannot read %s: %s", path,
                strerror(errno));
    } else if (path) {
        sa_fail(err, errlen, rc, "in-cluster config: out of memory");
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
        sa_fail(err, errlen, rc, "in-cluster config: cannot read %s: %s", path,
                strerror(errno));
    } else if (rc == IS_ENOMEM && path) {
        sa_fail(err, errlen, rc, "in-cluster config: out of memory");
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
