#pragma once
// What the Lua scripts of every Redis object share.

// last_id(k): the id after which a waiter's XREAD on stream k sees only what is added from now
// on ('0-0' for an empty or missing stream). docs/design/redis.md, "Waiting without polling".
#define MPROC_REDIS_LUA_LAST_ID                                    \
  "local function last_id(k)\n"                                    \
  "  local r = redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1)\n" \
  "  if r[1] then return r[1][1] end\n"                            \
  "  return '0-0'\n"                                               \
  "end\n"
