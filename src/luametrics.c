/* host.metric and its handles. See is_luametrics.h. */
#include "is_luametrics.h"

#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "is_err.h"

#define HANDLE "internal_services.metric"

typedef struct handle_s {
    is_metric_t *m;
} handle_t;

static const char *const type_names[] = { "counter", "gauge", "histogram", NULL };

/* Reads spec.labels (an array of names) into names[], NULL-terminated. The
 * strings stay reachable from the spec table during the call. */
static void read_labels(lua_State *L, int spec, const char **names) {
    size_t n = 0;
    lua_getfield(L, spec, "labels");
    if (!lua_isnil(L, -1)) {
        luaL_argcheck(L, lua_istable(L, -1), 1, "labels must be an array of names");
        n = (size_t)lua_rawlen(L, -1);
        if (n > IS_METRICS_MAX_LABELS) luaL_error(L, "host.metric: at most %d labels", IS_METRICS_MAX_LABELS);
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "host.metric: label %d is not a string", (int)i + 1);
            names[i] = lua_tostring(L, -1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    names[n] = NULL;
}

static size_t read_buckets(lua_State *L, int spec, double *bounds) {
    lua_getfield(L, spec, "buckets");
    luaL_argcheck(L, lua_istable(L, -1), 1, "a histogram needs buckets");
    size_t n = (size_t)lua_rawlen(L, -1);
    if (n > IS_METRICS_MAX_BUCKETS) luaL_error(L, "host.metric: at most %d buckets", IS_METRICS_MAX_BUCKETS);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (!lua_isnumber(L, -1)) luaL_error(L, "host.metric: bucket %d is not a number", (int)i + 1);
        bounds[i] = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return n;
}

static int l_metric(lua_State *L) {
    is_metrics_t *reg = lua_touserdata(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!reg) return luaL_error(L, "host.metric: this host has no metrics registry");
    lua_getfield(L, 1, "type");
    int type = luaL_checkoption(L, -1, NULL, type_names);
    lua_getfield(L, 1, "name");
    const char *name = luaL_checkstring(L, -1);
    lua_getfield(L, 1, "help");
    const char *help = luaL_checkstring(L, -1);
    const char *labels[IS_METRICS_MAX_LABELS + 1];
    double bounds[IS_METRICS_MAX_BUCKETS];
    read_labels(L, 1, labels);
    size_t nbounds = type == IS_METRIC_HISTOGRAM ? read_buckets(L, 1, bounds) : 0;
    /* The handle first: once the family exists nothing below may fail. */
    handle_t *hd = lua_newuserdatauv(L, sizeof *hd, 0);
    hd->m = NULL;
    luaL_setmetatable(L, HANDLE);
    int rc;
    if (type == IS_METRIC_COUNTER) rc = is_metrics_counter(reg, name, help, labels, &hd->m);
    else if (type == IS_METRIC_GAUGE) rc = is_metrics_gauge(reg, name, help, labels, &hd->m);
    else rc = is_metrics_histogram(reg, name, help, labels, bounds, nbounds, &hd->m);
    if (rc == IS_EINVAL)
        return luaL_error(L, "host.metric: %s: bad name, labels or buckets, or registered before with others", name);
    if (rc != IS_OK) return luaL_error(L, "host.metric: %s: %s", name, is_strerror(rc));
    return 1;
}

/* The label values of the table at idx, in the family's order, pushed on
 * the stack (so they stay alive) and pointed to by values[]. */
static void push_values(lua_State *L, const is_metric_t *m, int idx, const char **values) {
    size_t n = is_metric_label_count(m);
    luaL_checkstack(L, (int)n + 2, "host.metric");
    int has = lua_istable(L, idx);
    if (!has && !lua_isnoneornil(L, idx)) luaL_argerror(L, idx, "labels must be a table");
    for (size_t i = 0; i < n; i++) {
        if (has) lua_getfield(L, idx, is_metric_label(m, i));
        else lua_pushnil(L);
        int t = lua_type(L, -1);
        if (t == LUA_TBOOLEAN) {
            int b = lua_toboolean(L, -1);
            lua_pop(L, 1);
            lua_pushstring(L, b ? "true" : "false");
        } else if (t == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushliteral(L, "");
        } else if (t != LUA_TSTRING && t != LUA_TNUMBER) {
            luaL_error(L, "%s: label %s must be a string, number or boolean", is_metric_name(m),
                       is_metric_label(m, i));
        }
        values[i] = lua_tostring(L, -1);
    }
}

static int result(lua_State *L, const is_metric_t *m, int rc) {
    if (rc == IS_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == IS_EINVAL) return luaL_error(L, "%s: operation not valid for this metric or value", is_metric_name(m));
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", is_metric_name(m), is_strerror(rc));
    return 2;
}

typedef enum { OP_ADD, OP_SET, OP_OBSERVE } op_t;

static int apply(lua_State *L, op_t op, double def) {
    handle_t *hd = luaL_checkudata(L, 1, HANDLE);
    double v = def < 0 ? luaL_checknumber(L, 3) : luaL_optnumber(L, 3, def);
    const char *values[IS_METRICS_MAX_LABELS];
    push_values(L, hd->m, 2, values);
    is_series_t *s;
    int rc = is_metric_with(hd->m, values, &s);
    if (rc == IS_OK) {
        if (op == OP_ADD) rc = is_series_add(s, v);
        else if (op == OP_SET) rc = is_series_set(s, v);
        else rc = is_series_observe(s, v);
    }
    return result(L, hd->m, rc);
}

static int l_add(lua_State *L) { return apply(L, OP_ADD, 1); }
static int l_inc(lua_State *L) {
    lua_settop(L, 2);
    return apply(L, OP_ADD, 1);
}
static int l_set(lua_State *L) { return apply(L, OP_SET, -1); }
static int l_observe(lua_State *L) { return apply(L, OP_OBSERVE, -1); }

/* The current value (a histogram's count and sum), for tests and checks. */
static int l_value(lua_State *L) {
    handle_t *hd = luaL_checkudata(L, 1, HANDLE);
    const char *values[IS_METRICS_MAX_LABELS];
    push_values(L, hd->m, 2, values);
    is_series_t *s;
    int rc = is_metric_with(hd->m, values, &s);
    if (rc != IS_OK) return result(L, hd->m, rc);
    if (is_metric_type(hd->m) == IS_METRIC_HISTOGRAM) {
        lua_pushinteger(L, (lua_Integer)is_series_count(s));
        lua_pushnumber(L, is_series_value(s));
        return 2;
    }
    lua_pushnumber(L, is_series_value(s));
    return 1;
}

int is_luametrics_open(void *vL, is_metrics_t *reg) {
    lua_State *L = vL;
    static const luaL_Reg methods[] = { { "add", l_add }, { "inc", l_inc }, { "set", l_set },
                                        { "observe", l_observe }, { "value", l_value }, { NULL, NULL } };
    if (luaL_newmetatable(L, HANDLE)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "metric");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_pushlightuserdata(L, reg);
    lua_pushcclosure(L, l_metric, 1);
    lua_setfield(L, -2, "metric");
    return IS_OK;
}
