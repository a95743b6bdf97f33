#pragma once
#include "redis/lua.hpp"

// The Lua scripts of redis::Queue and JoinableQueue (docs/design/redis.md, "Queue"). Each runs
// atomically in the server: a check and the change it guards are one step for every client.
// Keys: KEYS[1] the stream q, KEYS[2] the meta hash m, KEYS[3] the wake-up stream e, KEYS[4]
// the dead-letter stream, KEYS[5] the "a putter waits for room" flag pw (Queue only).
//
// A Queue (not joinable) counts its unread messages with the consumer group's own counters
// (Redis 7: entries-added minus entries-read, XINFO GROUPS' `lag`), so that its get is a bare
// XREADGROUP NOACK and runs no script; a JoinableQueue keeps the count `unread` in m, kept by
// its get script. docs/design/redis.md, "Queue".

namespace mproc::redis::detail {

// ARGV: how (create|open|open_or_create), kind, tag, type name, max.
inline constexpr const char* kCreateScript = R"lua(
local t = redis.call('TYPE', KEYS[2])['ok']
if t == 'hash' then
  if ARGV[1] == 'create' then return {'exists'} end
  local m = redis.call('HMGET', KEYS[2], 'kind', 'tag', 'type', 'max', 'layout')
  return {'opened', m[1] or '', m[2] or '', m[3] or '', m[4] or '0', m[5] or '1'}
end
if t ~= 'none' then return {'wrongtype', KEYS[2], t} end
if ARGV[1] == 'open' then return {'missing'} end
local qt = redis.call('TYPE', KEYS[1])['ok']
if qt ~= 'none' and qt ~= 'stream' then return {'wrongtype', KEYS[1], qt} end
redis.pcall('XGROUP', 'CREATE', KEYS[1], 'mproc', '0', 'MKSTREAM')
redis.call('HSET', KEYS[2], 'kind', ARGV[2], 'tag', ARGV[3], 'type', ARGV[4], 'max', ARGV[5],
           'closed', '0', 'layout', '2')
if ARGV[2] == 'joinable' then redis.call('HSET', KEYS[2], 'unread', redis.call('XLEN', KEYS[1])) end
return {'created'}
)lua";

// group_state(q, cap): the group's count of entries not yet delivered and its last-delivered
// id; nil when the group is gone. `lag` is exact while the stream has no deletion after the
// group's position (a Queue only trims entries before it); when a foreign XDEL made Redis give
// up on it (nil), the entries after the last-delivered id are counted instead, at most `cap` of
// them when `cap` is given (a put needs to know only whether `max` are unread: an uncapped count
// would read the whole backlog inside the script, blocking the server, on every put).
#define MPROC_REDIS_LUA_GROUP_STATE                                     \
  "local function group_state(q, cap)\n"                                \
  "  for _, g in ipairs(redis.call('XINFO', 'GROUPS', q)) do\n"         \
  "    local f = {}\n"                                                  \
  "    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"                    \
  "    if f['name'] == 'mproc' then\n"                                  \
  "      local lag = f['lag']\n"                                        \
  "      if not lag then\n"                                             \
  "        local from = '(' .. f['last-delivered-id']\n"                \
  "        if cap then\n"                                               \
  "          lag = #redis.call('XRANGE', q, from, '+', 'COUNT', cap)\n" \
  "        else\n"                                                      \
  "          lag = #redis.call('XRANGE', q, from, '+')\n"               \
  "        end\n"                                                       \
  "      end\n"                                                         \
  "      return lag, f['last-delivered-id']\n"                          \
  "    end\n"                                                           \
  "  end\n"                                                             \
  "  return nil\n"                                                      \
  "end\n"

// Queue's put. ARGV: wait (ms a full queue's putter will wait before it runs this again; 0: it
// will not wait), tag, data... Adds as many as fit, in order; {'ok', n} | {'full', last id of
// e} | {'closed'} | {'gone'}. A putter that will wait raises the flag pw (expiring after its
// wait) so that the next get that takes a message posts "room" on e.
inline constexpr const char* kQueuePutScript = MPROC_REDIS_LUA_LAST_ID MPROC_REDIS_LUA_GROUP_STATE R"lua(
local meta = redis.call('HMGET', KEYS[2], 'max', 'closed')
if not meta[1] then return {'gone'} end
if meta[2] == '1' then return {'closed'} end
local n = #ARGV - 2
local max = tonumber(meta[1])
if max > 0 then
  local unread = group_state(KEYS[1], max)
  if not unread then return {'gone'} end
  n = math.min(n, max - unread)
  if n <= 0 then
    local wait = tonumber(ARGV[1])
    if wait > 0 and redis.call('PTTL', KEYS[5]) < wait then redis.call('SET', KEYS[5], '1', 'PX', wait) end
    return {'full', last_id(KEYS[3])}
  end
end
for i = 1, n do redis.call('XADD', KEYS[1], '*', 't', ARGV[2], 'd', ARGV[i + 2]) end
return {'ok', n}
)lua";

// Queue's get found nothing (its XREADGROUP returned no entry): may it wait, and from where?
// {'again'} (an entry came in between: read again) | {'empty', closed, id after which q's new
// entries count, last id of e} | {'gone'}. Taken in one step, so a put or close after it wakes
// the wait. Whether anything is undelivered is read from the stream itself, never from `lag`
// alone: Redis 7.0 miscounts the group's entries-read after an XDEL of an undelivered entry
// (someone else's: a Queue never XDELs), and such a count is repaired here, where the queue is
// known to hold nothing unread (XGROUP SETID … ENTRIESREAD), with a "room" post for a putter
// the wrong count held back.
inline constexpr const char* kQueueEmptyScript = MPROC_REDIS_LUA_LAST_ID MPROC_REDIS_LUA_GROUP_STATE R"lua(
local closed = redis.call('HGET', KEYS[2], 'closed')
if not closed then return {'gone'} end
local unread, last = group_state(KEYS[1], 1)
if not unread then return {'gone'} end
if redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)[1] then return {'again'} end
if unread ~= 0 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local f = {}
  for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
  last = f['last-generated-id']
  redis.call('XGROUP', 'SETID', KEYS[1], 'mproc', last, 'ENTRIESREAD', f['entries-added'])
  redis.call('XADD', KEYS[3], 'MAXLEN', 1, '*', 'room', 1)
end
return {'empty', closed, last, last_id(KEYS[3])}
)lua";

// Queue's qsize and full: {'ok', unread, max} | {'gone'}.
inline constexpr const char* kQueueSizeScript = MPROC_REDIS_LUA_GROUP_STATE R"lua(
local max = redis.call('HGET', KEYS[2], 'max')
if not max then return {'gone'} end
local unread = group_state(KEYS[1])
if not unread then return {'gone'} end
return {'ok', unread, tonumber(max)}
)lua";

// JoinableQueue's put. ARGV: wait (unused: its get script posts "room" itself), tag, data...
// Adds as many as fit, in order; {'ok', n} | {'full', last id of e} | {'closed'} | {'gone'}.
inline constexpr const char* kPutScript = MPROC_REDIS_LUA_LAST_ID R"lua(
local meta = redis.call('HMGET', KEYS[2], 'max', 'unread', 'closed')
if not meta[1] then return {'gone'} end
if meta[3] == '1' then return {'closed'} end
local n = #ARGV - 2
local max = tonumber(meta[1])
if max > 0 then n = math.min(n, max - tonumber(meta[2])) end
if n <= 0 then return {'full', last_id(KEYS[3])} end
for i = 1, n do redis.call('XADD', KEYS[1], '*', 't', ARGV[2], 'd', ARGV[i + 2]) end
redis.call('HINCRBY', KEYS[2], 'unread', n)
return {'ok', n}
)lua";

// JoinableQueue's get. ARGV: consumer, count, joinable (0|1), visibility ms, max deliveries.
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
