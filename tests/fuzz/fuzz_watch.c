/* Fuzz target: the watch stream as the informer reads it: the newline
 * framer (with the input fed in pieces whose sizes come from the input),
 * the event decoder, the Status of ERROR events, and the cache the events
 * update. The stream may be torn down; nothing may crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_http.h"
#include "is_informer.h"
#include "is_kubeconfig.h"
#include "is_loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static is_loop_t loop;
static is_cluster_t cluster;

static void setup(void) {
    static int done;
    if (done) return;
    done = 1;
    is_kubeconfig_t kc = { 0 };
    kc.server = is_strdup("http://127.0.0.1:1");
    if (is_loop_init(&loop) != IS_OK || !kc.server || is_cluster_init(&cluster, &loop, "fuzz", &kc) != IS_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size < 1) return 0;
    size_t before = is_alloc_used();
    /* The first byte sets the piece size (1..64), the framer's cap is kept
     * small so that over-long events are reached too. */
    size_t piece = (size_t)(data[0] % 64) + 1;
    data++;
    size--;
    is_informer_opts_t o = { .name = "fuzz", .cluster = &cluster,
                             .resource = { "", "v1", "configmaps", 1 }, .max_event = 4096 };
    is_informer_t inf;
    if (is_informer_init(&inf, &o, NULL, NULL) != IS_OK) abort();
    for (size_t off = 0; off < size; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        if (is_informer_feed__(&inf, (const char *)data + off, n) != 0) break;
    }
    is_informer_close(&inf);
    if (is_alloc_used() != before) abort();
    return 0;
}
