/* Fuzz target: the kubeconfig parser (YAML, contexts, base64 blobs). Any
 * input must give IS_OK or an error with a message, never a crash, and
 * is_kubeconfig_free must leave nothing behind. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_kubeconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t before = is_alloc_used();
    /* The first line, when short, names the context to pick: the rest is
     * the document, so both the current-context and the named path run. */
    const char *context = NULL;
    char name[64];
    const char *nl = memchr(data, '\n', size < sizeof name ? size : sizeof name);
    if (size > 1 && data[0] == '@' && nl) {
        size_t n = (size_t)(nl - (const char *)data) - 1;
        memcpy(name, data + 1, n);
        name[n] = 0;
        context = name;
        size -= n + 2;
        data += n + 2;
    }
    is_kubeconfig_t kc;
    char err[512];
    err[0] = 0;
    int rc = is_kubeconfig_parse(&kc, (const char *)data, size, "/nonexistent-fuzz-dir", context, err,
                                 sizeof err);
    if (rc != IS_OK && err[0] == 0) abort(); /* every failure says why */
    if (rc == IS_OK && !kc.server) abort();  /* a parsed kubeconfig has a server */
    is_kubeconfig_free(&kc);
    if (is_alloc_used() != before) abort();
    return 0;
}
