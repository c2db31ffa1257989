/* Fuzz target: the Kubernetes Status decoder, for any body and HTTP code.
 * reason and message are never NULL, and nothing leaks. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "is_alloc.h"
#include "is_err.h"
#include "is_kstatus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t before = is_alloc_used();
    /* Two bytes of HTTP code (0..999), the rest is the body. */
    long code = (long)((data[0] << 8 | data[1]) % 1000);
    is_kstatus_t st;
    int rc = is_kstatus_decode(&st, code, (const char *)data + 2, size - 2);
    if (rc == IS_OK) {
        if (!st.reason || !st.message) abort();
        is_kstatus_free(&st);
    } else if (rc != IS_ENOMEM) {
        abort(); /* only out of memory may fail a decode */
    }
    if (is_alloc_used() != before) abort();
    return 0;
}
