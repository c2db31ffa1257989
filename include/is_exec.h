/* Kubeconfig exec credential plugins (client.authentication.k8s.io/v1 and
 * v1beta1 ExecCredential), as client-go runs them: the command with its
 * args, our environment plus the kubeconfig's env and KUBERNETES_EXEC_INFO,
 * stdin closed (a controller has no terminal, so it is never interactive),
 * and a token or a client certificate and key read from stdout.
 *
 * The plugin runs beside the loop, never blocking it: its output is read
 * without waiting, and a plugin that outlives the timeout is killed. The
 * caller owns the is_exec_t and the credential the callback hands over. */
#ifndef IS_EXEC_H
#define IS_EXEC_H

#include <stddef.h>
#include <sys/types.h>

#include "is_buf.h"
#include "is_kubeconfig.h"
#include "is_loop.h"

typedef struct is_exec_cred_s {
    char *token;          /* NULL when the plugin gave a certificate */
    is_blob_t cert, key;  /* PEM */
    long long expires_ms; /* wall clock, ms since the epoch; 0 = never */
} is_exec_cred_t;

typedef struct is_exec_s is_exec_t;

/* status is IS_OK with *cred filled (move what you keep out of it and zero
 * it; the rest is freed after the call), or an error with err one line. */
typedef void (*is_exec_done_cb)(is_exec_t *x, int status, is_exec_cred_t *cred, const char *err,
                                void *ud);

struct is_exec_s {
    is_loop_t *loop__;
    is_timer_t timer__;
    pid_t pid__;
    int out__, err__;        /* pipe read ends; -1 once at EOF */
    is_buf_t stdout__, stderr__;
    uint64_t deadline__;     /* loop time */
    long timeout_ms__;
    char *api_version__;
    char *command__;
    int running__;
    is_exec_done_cb cb;
    void *ud;
};

/* Starts kc->exec's plugin. IS_OK: cb runs later, once, unless cancelled.
 * Otherwise (the command cannot start, interactiveMode Always, out of
 * memory) nothing runs and err says why. */
int is_exec_start(is_exec_t *x, is_loop_t *loop, const is_kubeconfig_t *kc, long timeout_ms,
                  is_exec_done_cb cb, void *ud, char *err, size_t errlen);
/* Kills a running plugin; its callback does not run. */
void is_exec_cancel(is_exec_t *x);
int is_exec_running(const is_exec_t *x);

/* Parses a plugin's stdout, checked as client-go checks it. */
int is_exec_parse_credential(const char *json, size_t len, const char *api_version,
                             is_exec_cred_t *cred, char *err, size_t errlen);
/* The KUBERNETES_EXEC_INFO value for kc: an ExecCredential whose spec says
 * interactive false and, with provideClusterInfo, describes the cluster. */
int is_exec_info(const is_kubeconfig_t *kc, is_buf_t *out);
void is_exec_cred_free(is_exec_cred_t *cred);

#endif
