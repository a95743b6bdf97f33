#pragma once
#include "redis/lua.hpp"

// The Lua scripts of redis::Queue and JoinableQueue (docs/design/redis.md, "Queue"). Each runs
// atomically in the server: a check and the change it guards are one step for every client.
// Keys: KEYS[1] the stream q, KEYS[2] the meta hash m, KEYS[3] the wake-up stream e, KEYS[4]
// the dead-letter stream.

namespace mproc::redis::detail {

// ARGV: how (create|open|open_or_create), kind, tag, type name, max.
inline constexpr const char* kCreateScript = R"lua(
local t = redis.call('TYPE', KEYS[2])['ok']
if t == 'hash' then
  if ARGV[1] == 'create' then return {'exists'} end
  local m = redis.call('HMGET', KEYS[2], 'kind', 'tag', 'type', 'max')
  return {'opened', m[1] or '', m[2] or '', m[3] or '', m[4] or '0'}
end
if t ~= 'none' then return {'wrongtype', KEYS[2], t} end
if ARGV[1] == 'open' then return {'missing'} end
local qt = redis.call('TYPE', KEYS[1])['ok']
if qt ~= 'none' and qt ~= 'stream' then return {'wrongtype', KEYS[1], qt} end
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'mproc', '0', 'MKSTREAM')
redis.call('HSET', KEYS[2], 'kind', ARGV[2], 'tag', ARGV[3], 'type', ARGV[4], 'max', ARGV[5],
           'unread', redis.call('XLEN', KEYS[1]), 'closed', '0')
return {'created'}
)lua";

// ARGV: tag, data... Adds as many as fit, in order; {'ok', n} | {'full', last id of e} |
// {'closed'} | {'gone'}.
inline constexpr const char* kPutScript = MPROC_REDIS_LUA_LAST_ID R"lua(
local meta = redis.call('HMGET', KEYS[2], 'max', 'unread', 'closed')
if not meta[1] then return {'gone'} end
if meta[3] == '1' then return {'closed'} end
local n = #ARGV - 1
local max = tonumber(meta[1])
if max > 0 then n = math.min(n, max - tonumber(meta[2])) end
if n <= 0 then return {'full', last_id(KEYS[3])} end
for i = 1, n do redis.call('XADD', KEYS[1], '*', 't', ARGV[1], 'd', ARGV[i + 1]) end
redis.call('HINCRBY', KEYS[2], 'unread', n)
return {'ok', n}
)lua";

// ARGV: consumer, count, joinable (0|1), visibility ms, max deliveries.
// {'ok', {{id, {field, value, ...}}, ...}} | {'empty', closed, last id of q, last id of e} | {'gone'}
inline constexpr const char* kGetScript = MPROC_REDIS_LUA_LAST_ID R"lua(
local meta = redis.call('HMGET', KEYS[2], 'max', 'unread', 'closed')
if not meta[1] then return {'gone'} end
local want = tonumber(ARGV[2])
local joinable = ARGV[3] == '1'
local out = {}
if joinable then
  local c = redis.call('XAUTOCLAIM', KEYS[1], 'mproc', ARGV[1], ARGV[4], '0-0', 'COUNT', want)
  for _, e in ipairs(c[2]) do
    if e and e[2] then
      local p = redis.call('XPENDING', KEYS[1], 'mproc', e[1], e[1], 1)
      local times = p[1] and p[1][4] or 0
      if times > tonumber(ARGV[5]) then
        local f = e[2]
        for _, x in ipairs({'id', e[1], 'why', 'deliveries', 'deliveries', tostring(times),
                            'consumer', ARGV[1]}) do table.insert(f, x) end
        redis.call('XADD', KEYS[4], '*', unpack(f))
        redis.call('XACK', KEYS[1], 'mproc', e[1])
        redis.call('XDEL', KEYS[1], e[1])
        if redis.call('XLEN', KEYS[1]) == 0 then redis.call('XADD', KEYS[3], 'MAXLEN', 1, '*', 'done', 1) end
      else
        table.insert(out, e)
      end
    end
  end
end
if #out < want then
  local r
  if joinable then
    r = redis.call('XREADGROUP', 'GROUP', 'mproc', ARGV[1], 'COUNT', want - #out, 'STREAMS', KEYS[1], '>')
  else
    r = redis.call('XREADGROUP', 'GROUP', 'mproc', ARGV[1], 'COUNT', want, 'NOACK', 'STREAMS', KEYS[1], '>')
  end
  if r and r[1] then
    local got = r[1][2]
    local ids = {}
    for _, e in ipairs(got) do
      table.insert(out, e)
      table.insert(ids, e[1])
    end
    if not joinable and #ids > 0 then redis.call('XDEL', KEYS[1], unpack(ids)) end
    if #got > 0 then
      local left = tonumber(redis.call('HINCRBY', KEYS[2], 'unread', -#got))
      -- Entries added by something other than mproc's put were never counted: stay at 0.
      if left < 0 then redis.call('HSET', KEYS[2], 'unread', 0) end
      local before = left + #got
      local max = tonumber(meta[1])
      if max > 0 and before >= max then redis.call('XADD', KEYS[3], 'MAXLEN', 1, '*', 'room', 1) end
    end
  end
end
if #out == 0 then return {'empty', meta[3] or '0', last_id(KEYS[1]), last_id(KEYS[3])} end
return {'ok', out}
)lua";

// task_done: ARGV id. Returns how many entries were acknowledged (0: someone else finished it).
inline constexpr const char* kDoneScript = R"lua(
local a = redis.call('XACK', KEYS[1], 'mproc', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('XADD', KEYS[3], 'MAXLEN', 1, '*', 'done', 1) end
return a
)lua";

// join's check: {XLEN q, last id of e}.
inline constexpr const char* kJoinScript = MPROC_REDIS_LUA_LAST_ID R"lua(
return {redis.call('XLEN', KEYS[1]), last_id(KEYS[3])}
)lua";

// close: marks the queue closed and wakes every waiter.
inline constexpr const char* kCloseScript = R"lua(
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'closed', '1')
redis.call('XADD', KEYS[3], 'MAXLEN', 1, '*', 'closed', 1)
return 1
)lua";

// Parks an entry the client could not take: ARGV joinable, id, why, consumer, field, value, ...
inline constexpr const char* kDeadScript = R"lua(
local f = {'id', ARGV[2], 'why', ARGV[3], 'consumer', ARGV[4]}
for i = 5, #ARGV do table.insert(f, ARGV[i]) end
redis.call('XADD', KEYS[4], '*', unpack(f))
if ARGV[1] == '1' then
  redis.call('XACK', KEYS[1], 'mproc', ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
  if redis.call('XLEN', KEYS[1]) == 0 then redis.call('XADD', KEYS[3], 'MAXLEN', 1, '*', 'done', 1) end
end
return 1
)lua";

}  // namespace mproc::redis::detail
