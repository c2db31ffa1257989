/* The remote side's client: `internal-request` creates an InternalRequest
 * and (by default) waits for it; `wait-for-internal-request` only waits.
 * One executable, chosen by the name it is called by, with the flags, output
 * lines and exit codes of the shell scripts release pipelines already call.
 *
 * Waiting is a list+watch (is_informer), so completion is seen as soon as the
 * controller writes the status; a dropped stream resumes, a 410 relists. */
#ifndef IS_CLIENT_H
#define IS_CLIENT_H

#include <stddef.h>
#include "is_buf.h"

/* Exit codes of the existing scripts. */
enum {
    IS_CLIENT_EXIT_OK = 0,
    IS_CLIENT_EXIT_USAGE = 1,    /* bad flags, or the API refused the call */
    IS_CLIENT_EXIT_FAILED = 21,  /* a request failed or was rejected */
    IS_CLIENT_EXIT_TIMEOUT = 124
};

typedef enum { IS_CLIENT_CREATE = 1, IS_CLIENT_WAIT } is_client_mode_t;

#define IS_CLIENT_MAX_ITEMS 256  /* -p, -l and --resolver-param, each */

typedef struct is_client_kv_s {
    char *key;          /* owned copy of the part before the first '=' */
    const char *value;  /* into argv, after the first '=' */
} is_client_kv_t;

typedef struct is_client_opts_s {
    is_client_mode_t mode;
    const char *kubeconfig;      /* NULL: $KUBECONFIG, else in-cluster */
    const char *namespace;       /* NULL: the kubeconfig's or the pod's */
    /* create */
    const char *pipeline;
    const char *resolver;        /* NULL: git, from taskGitUrl/taskGitRevision */
    is_client_kv_t resolver_params[IS_CLIENT_MAX_ITEMS];
    int nresolver_params;
    is_client_kv_t params[IS_CLIENT_MAX_ITEMS];
    int nparams;
    const char *service_account;
    const char *pipeline_timeout, *task_timeout, *finally_timeout;
    int sync;
    /* both */
    is_client_kv_t labels[IS_CLIENT_MAX_ITEMS];
    int nlabels;
    long timeout_s;              /* -t */
    const char *name;            /* wait: -n */
    const char *results_file;
    const char *results_dir;     /* Tekton results: requestName, ... */
    int delete_on_timeout;
} is_client_opts_t;

/* The mode for argv[0]: WAIT when its base name is
 * "wait-for-internal-request", CREATE otherwise. */
is_client_mode_t is_client_mode_for(const char *argv0);

/* Parses argv for mode into o (which the caller frees with
 * is_client_opts_free in every case). Returns IS_OK, IS_EAGAIN when -h
 * asked for the usage text (written to out), or IS_EINVAL with one sentence
 * in err naming the flag and what is wrong with it. */
int is_client_parse(is_client_opts_t *o, is_client_mode_t mode, int argc, char **argv,
                    char *err, size_t errlen);
void is_client_opts_free(is_client_opts_t *o);
const char *is_client_usage(is_client_mode_t mode);

/* A Go duration ("1h0m0s", "90m", "1.5h", "0") in milliseconds. */
int is_client_duration_ms(const char *s, double *ms);
/* The three timeouts are durations and tasks + finally <= pipeline;
 * otherwise IS_EINVAL and the sentence that says which. */
int is_client_check_timeouts(const is_client_opts_t *o, char *err, size_t errlen);

/* The InternalRequest that o asks for, as JSON. */
int is_client_request_json(const is_client_opts_t *o, const char *namespace, is_buf_t *out);

/* Runs the command against the cluster; returns the process exit code.
 * Output goes to stdout, diagnostics to stderr. */
int is_client_run(const is_client_opts_t *o);

#endif
