/* Cluster connection settings: from a kubeconfig file (parsed with libyaml)
 * or from the in-cluster service account.
 *
 * The result is flattened to what one connection needs. Certificate and key
 * material is always held in memory (file references are read at load time),
 * because libcurl receives it through its blob options and nothing secret is
 * ever written to disk. */
#ifndef IS_KUBECONFIG_H
#define IS_KUBECONFIG_H

#include <stddef.h>

typedef struct is_blob_s {
    unsigned char *data; /* owned; NULL when absent */
    size_t len;
} is_blob_t;

enum { IS_EXEC_NEVER = 0, IS_EXEC_IF_AVAILABLE, IS_EXEC_ALWAYS };

/* A user's exec credential plugin (client.authentication.k8s.io). */
typedef struct is_kubeconfig_exec_s {
    char *api_version;    /* client.authentication.k8s.io/v1 or /v1beta1 */
    char *command;        /* NULL when the user has no plugin */
    char **argv;          /* command, then args; NULL-terminated */
    char **env;           /* "NAME=value" added to ours; NULL-terminated */
    int interactive_mode; /* IS_EXEC_*; v1beta1 defaults to IfAvailable */
    int provide_cluster_info;
    char *install_hint;
} is_kubeconfig_exec_t;

typedef struct is_kubeconfig_s {
    char *context;        /* the context used; NULL for in-cluster */
    char *server;         /* "https://host:port", no trailing slash */
    char *tls_server_name;/* optional override for SNI/verification */
    is_blob_t ca;         /* PEM; empty = system trust store */
    int insecure_skip_tls_verify;
    is_blob_t client_cert;/* PEM */
    is_blob_t client_key; /* PEM */
    char *token;          /* bearer token; NULL when none */
    char *token_file;     /* when set, the token is re-read from here */
    char *namespace;      /* context namespace; NULL when unset */
    char *proxy_url;      /* cluster proxy-url; NULL when unset */
    is_kubeconfig_exec_t exec;
    long long token_mtime__; /* internal: token_file mtime at last read (ns) */
    long long token_size__;  /* internal: token_file size at last read */
} is_kubeconfig_t;

/* Loads path with the given context (NULL = current-context). On failure
 * returns IS_EIO, IS_EPARSE, IS_ENOTFOUND or IS_ENOMEM and writes one clear
 * sentence to err (e.g. "kubeconfig /x: context \"foo\" not found"). The
 * struct is zeroed first; call is_kubeconfig_free in every case. */
int is_kubeconfig_load(is_kubeconfig_t *kc, const char *path,
                       const char *context, char *err, size_t errlen);
/* KUBECONFIG: a colon-separated list merged as client-go merges it. Empty
 * entries, repeats and files that do not exist are skipped; every map entry
 * (cluster, user, context) and current-context come from the first file
 * that sets them; each entry's file references resolve against its own
 * file's directory. IS_EIO when no file of the list exists. */
int is_kubeconfig_load_list(is_kubeconfig_t *kc, const char *paths,
                            const char *context, char *err, size_t errlen);
/* Same, from YAML text in memory (the remote kubeconfig read from a Secret).
 * Relative file references resolve against base_dir (may be NULL). */
int is_kubeconfig_parse(is_kubeconfig_t *kc, const char *yaml, size_t len,
                        const char *base_dir, const char *context,
                        char *err, size_t errlen);
/* In-cluster: KUBERNETES_SERVICE_HOST/_PORT, and the service account's
 * token, ca.crt and namespace under sa_dir (NULL = the standard
 * /var/run/secrets/kubernetes.io/serviceaccount). */
int is_kubeconfig_in_cluster(is_kubeconfig_t *kc, const char *sa_dir,
                             char *err, size_t errlen);
void is_kubeconfig_free(is_kubeconfig_t *kc);

/* Re-reads token_file into token if the file changed since the last read
 * (bound service-account tokens rotate). *changed is set to 1 when the token
 * is new. IS_OK when there is no token file. */
int is_kubeconfig_refresh_token(is_kubeconfig_t *kc, int *changed);

#endif
