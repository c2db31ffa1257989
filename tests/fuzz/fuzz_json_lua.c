/* Fuzz target: JSON to Lua and back, as the controller's modules convert
 * API objects (lua-cjson in the host's own Lua state, under its memory
 * cap). Whatever decodes must encode, and decode again to an equal value;
 * a failed check aborts, which libFuzzer reports as a crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "is_err.h"
#include "is_loop.h"
#include "is_luahost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const roundtrip =
    "local cjson = require 'cjson.safe'\n"
    "local function close(a, b)\n"
    "  if a == b or (a ~= a and b ~= b) then return true end\n"
    "  return math.abs(a - b) <= 1e-12 * math.max(math.abs(a), math.abs(b))\n"
    "end\n"
    "local function same(a, b, depth)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return close(a, b) end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "return function(text)\n"
    "  local v = cjson.decode(text)\n"
    "  if v == nil then return true end\n"
    "  local e1 = cjson.encode(v)\n"
    "  if e1 == nil then return true end\n" /* inf, nan, sparse arrays, depth */
    "  local v2, err = cjson.decode(e1)\n"
    "  if v2 == nil then return false, 'encoded text does not decode: ' .. err end\n"
    "  if not same(v, v2) then return false, 'round trip changed the value: ' .. e1 end\n"
    "  return true\n"
    "end\n";

static is_loop_t loop;
static is_lua_t host;
static int fn_ref;

static void setup(void) {
    static int done;
    if (done) return;
    done = 1;
    is_lua_opts_t o = { .lua_dir = "/nonexistent", .policy_dir = "/nonexistent",
                        .memory_limit = (size_t)64 << 20 };
    char err[256];
    if (is_loop_init(&loop) != IS_OK || is_lua_init(&host, &loop, &o, err, sizeof err) != IS_OK) abort();
    lua_State *L = host.L;
    if (luaL_loadstring(L, roundtrip) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) abort();
    fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    lua_State *L = host.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, (const char *)data, size);
    int st = lua_pcall(L, 1, 2, 0);
    /* Running out of the state's memory is an error, not a finding. */
    if (st == LUA_OK && !lua_toboolean(L, -2)) {
        fprintf(stderr, "fuzz_json_lua: %s\n", lua_tostring(L, -1));
        abort();
    }
    if (st != LUA_OK && st != LUA_ERRMEM) {
        fprintf(stderr, "fuzz_json_lua: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    /* What the input built is freed now: libFuzzer runs its leak check
     * after any input whose mallocs outnumber its frees, which is slow. */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
