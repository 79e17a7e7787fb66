-- Compare-and-swap of one leader election record, run atomically by Redis (EVALSHA).
--
-- KEYS[1]  a hash: field "record" holds the record as client-go's JSON, field "version" the
--          version counter (canonical decimal digits)
-- KEYS[2]  a hash next to it (same hash tag): field "version" holds the highest version ever
--          written for this election; deleting the record leaves it in place
-- ARGV[1]  "get", "create" or "update"
-- ARGV[2]  create, update: the new record's JSON
-- ARGV[3]  update: the version the caller read
-- ARGV[4]  create, update: milliseconds after which the keys expire; "0" for never
-- ARGV[5]  update: the exact record bytes the caller read at that version
-- ARGV[6]  create, update: "1" to announce with SPUBLISH (sharded pub/sub, on a Redis
--          Cluster: the announcement stays on the nodes of the key's slot), else PUBLISH
--
-- Writes are announced on the channel KEYS[1] .. ":changes" (derived here rather than passed:
-- Redis refuses a command of more than 10 arguments from a client that has not
-- authenticated with a protocol error, and the client must see the server's NOAUTH instead).
--
-- Replies (arrays, so that the client tells them apart without parsing error text):
--   {"none"}                        get: there is no record
--   {"found", record, version}      get: the record and its version
--   {"ok", version}                 create, update: written at this new version
--   {"exists"}                      create: there is a record already
--   {"conflict", ""}                update: the record is gone
--   {"conflict", version, record}   update: the version moved on, or the record's bytes are
--                                   not the ones the caller read; this is what is there
--   {"corrupt", reason}             the keys hold something this script did not write, or
--                                   the counter is at its largest: nothing written
--
-- Every check runs before the first write.
--
-- Why updates compare bytes instead of parsing the record here: the client parses records
-- with client-go's rules (a JSON object, RFC 3339 times, integers within 32 bits), and Lua's
-- cjson cannot tell 15 from 15.0 or [] from {}, nor check a calendar date. A second,
-- weaker parser here let values through that the client rejects, and an update at the
-- stored version then overwrote them. Instead the client sends the bytes it read, and parsed,
-- at the version it names; the update writes only over exactly those bytes. So nothing is
-- ever overwritten that the client did not read as a valid record, and a record edited by
-- hand without a version bump is a conflict (the client reads it again) instead of being
-- lost.
--
-- Versions start above both the server clock in microseconds and the highest version this
-- election ever had (KEYS[2]), and grow by one per write, so a record deleted (or expired)
-- and created again never repeats a version an old reader may still hold, even after the
-- server clock stepped back. They are compared as text, and must be canonical (no sign, no
-- leading zero) and at most LARGEST_VERSION, the rule the client checks too.

local key = KEYS[1]
local highest_key = KEYS[2]
local operation = ARGV[1]

-- 2^53 - 1: every counter up to it, and its successor, is exact in Lua's numbers. The client
-- has the same limit (LARGEST_VERSION in counter.rs).
local LARGEST_VERSION = '9007199254740991'

-- True for canonical decimal digits within LARGEST_VERSION. Compared as text: equal lengths
-- of digits compare like the numbers.
local function is_version(text)
  if text ~= '0' and not string.match(text, '^[1-9][0-9]*$') then
    return false
  end
  return #text < #LARGEST_VERSION or (#text == #LARGEST_VERSION and text <= LARGEST_VERSION)
end

local function shown(text)
  return string.format('%q', string.sub(text, 1, 40))
end

-- {"none"}, {"found", record, version} or {"corrupt", reason}. Never writes.
local function read()
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' then
    return {'none'}
  end
  if kind ~= 'hash' then
    return {'corrupt', 'the key holds a ' .. kind .. ', not a hash with the fields record and version'}
  end
  local fields = redis.call('HMGET', key, 'record', 'version')
  local record, version = fields[1], fields[2]
  if not record then
    return {'corrupt', 'the hash has no field record'}
  end
  if not version then
    return {'corrupt', 'the hash has no field version'}
  end
  if not is_version(version) then
    return {'corrupt', 'the field version is not a canonical decimal counter up to ' .. LARGEST_VERSION .. ': ' .. shown(version)}
  end
  return {'found', record, version}
end

-- The highest version this election ever had (0 for none), or nil and a corrupt reply.
local function highest()
  local kind = redis.call('TYPE', highest_key)['ok']
  if kind == 'none' then
    return 0
  end
  local version = kind == 'hash' and redis.call('HMGET', highest_key, 'version')[1]
  if not version or not is_version(version) then
    return nil, {'corrupt', 'the key ' .. highest_key .. ' (the highest version written) does not hold a hash with a canonical counter in its field version; delete it'}
  end
  return tonumber(version)
end

-- The next version: above `floor` (the current version, or the clock for a new record) and
-- above every version written before; or nil and a corrupt reply.
local function next_version(floor)
  local high, problem = highest()
  if not high then
    return nil, problem
  end
  local base = math.max(floor, high)
  if base >= tonumber(LARGEST_VERSION) then
    return nil, {'corrupt', 'the version counter is at the largest version ' .. LARGEST_VERSION .. '; delete the key (and ' .. highest_key .. ') to start the election over'}
  end
  return string.format('%.0f', base + 1)
end

-- The record's lease in milliseconds (0 when it cannot be read: the client wrote it).
local function lease_millis(record)
  local ok, value = pcall(cjson.decode, record)
  if ok and type(value) == 'table' and type(value.leaseDurationSeconds) == 'number' then
    return math.max(value.leaseDurationSeconds, 0) * 1000
  end
  return 0
end

-- Sets the expiry the caller asks for, never shorter than twice the written record's lease
-- (an expired key is a vanished record), or removes one a former setting left: HSET keeps a
-- key's TTL, so without PERSIST a key would expire under a leader that renews normally.
local function expire(record)
  local ttl = tonumber(ARGV[4])
  if ttl and ttl > 0 then
    ttl = math.max(ttl, 2 * lease_millis(record))
    redis.call('PEXPIRE', key, ttl)
    redis.call('PEXPIRE', highest_key, ttl)
  else
    redis.call('PERSIST', key)
    redis.call('PERSIST', highest_key)
  end
end

-- Writes the record at the version, notes the version as the highest, sets the expiry and
-- announces the write.
local function write(record, version)
  redis.call('HSET', key, 'record', record, 'version', version)
  redis.call('HSET', highest_key, 'version', version)
  expire(record)
  local announce = 'PUBLISH'
  if ARGV[6] == '1' then
    announce = 'SPUBLISH'
  end
  redis.call(announce, key .. ':changes', '{"version":"' .. version .. '","record":' .. record .. '}')
  return {'ok', version}
end

if operation == 'get' then
  return read()
end

if operation == 'create' then
  local current = read()
  if current[1] == 'corrupt' then
    return current
  end
  if current[1] == 'found' then
    return {'exists'}
  end
  local now = redis.call('TIME')
  local version, problem = next_version(tonumber(now[1]) * 1000000 + tonumber(now[2]))
  if not version then
    return problem
  end
  return write(ARGV[2], version)
end

if operation == 'update' then
  local current = read()
  if current[1] == 'corrupt' then
    return current
  end
  if current[1] == 'none' then
    return {'conflict', ''}
  end
  if current[3] ~= ARGV[3] or current[2] ~= ARGV[5] then
    return {'conflict', current[3], current[2]}
  end
  local version, problem = next_version(tonumber(current[3]))
  if not version then
    return problem
  end
  return write(ARGV[2], version)
end

return redis.error_reply('ERR unknown leader election operation ' .. tostring(operation))
