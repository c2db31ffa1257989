/* host.metric: the metrics registry as the Lua scripts see it.
 *
 * host.metric{type=, name=, help=, labels=, buckets=} registers (or finds)
 * a family and returns a handle whose add, inc, set and observe take a
 * table of label values. Failures a script cannot prevent (a full
 * registry, out of memory) return nil and a message instead of raising,
 * so that a metric never fails a reconcile; a malformed call raises. See
 * docs/lua-api.md. */
#ifndef IS_LUAMETRICS_H
#define IS_LUAMETRICS_H

#include "is_metrics.h"

/* Sets host.metric in the table at the top of L's stack (a lua_State*).
 * reg (not owned) must outlive the state; with NULL, host.metric raises. */
int is_luametrics_open(void *L, is_metrics_t *reg);

#endif
