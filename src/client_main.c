/* internal-request and wait-for-internal-request: one executable, the
 * command chosen by the name it is called by (see is_client.h). */
#include <stdio.h>

#include "is_client.h"
#include "is_err.h"

int main(int argc, char **argv) {
    is_client_mode_t mode = is_client_mode_for(argc > 0 ? argv[0] : NULL);
    const char *prog = mode == IS_CLIENT_WAIT ? "wait-for-internal-request" : "internal-request";
    is_client_opts_t o;
    char err[512];
    int rc = is_client_parse(&o, mode, argc, argv, err, sizeof err);
    int code;
    if (rc == IS_EAGAIN) {
        fputs(is_client_usage(mode), stdout);
        code = IS_CLIENT_EXIT_OK;
    } else if (rc != IS_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        code = IS_CLIENT_EXIT_USAGE;
    } else {
        code = is_client_run(&o);
    }
    is_client_opts_free(&o);
    return code;
}
