-- Compare-and-swap of one leader election record, run atomically by Redis (EVALSHA).
--
-- KEYS[1]  a hash: field "record" holds the record as client-go's JSON, field "version" the
--          version counter (decimal digits)
-- ARGV[1]  "get", "create" or "update"
-- ARGV[2]  create, update: the new record's JSON
-- ARGV[3]  update: the version the caller read
-- ARGV[4]  create, update: the channel on which the write is announced
-- ARGV[5]  create, update: milliseconds after which the key expires; "0" for never
--
-- Replies (arrays, so that the client tells them apart without parsing error text):
--   {"none"}                     get: there is no record
--   {"found", record, version}   get: the record and its version
--   {"ok", version}              create, update: written at this new version
--   {"exists"}                   create: there is a record already
--   {"conflict", version or ""}  update: the version moved on (or the record is gone)
--   {"corrupt", reason}          the key holds something that is not a record: nothing written
--
-- Every check runs before the first write. Versions start at the server clock in microseconds
-- when the record is created and grow by one per update, so a record deleted (or expired) and
-- created again never repeats a version that an old reader may still hold.

local key = KEYS[1]
local operation = ARGV[1]

-- Below 2^53, so that a version survives the trip through Lua's numbers exactly.
local LARGEST_VERSION = 9007199254740000

local function is_null(value)
  return value == nil or value == cjson.null
end

-- Why the JSON text is not a record, or nil when it is one (as far as field types go; the
-- client parses it fully).
local function record_problem(json)
  local ok, value = pcall(cjson.decode, json)
  if not ok or type(value) ~= 'table' or value[1] ~= nil then
    return 'the field record is not a JSON object'
  end
  for _, field in ipairs({'holderIdentity', 'acquireTime', 'renewTime', 'strategy', 'preferredHolder'}) do
    local v = value[field]
    if not is_null(v) and type(v) ~= 'string' then
      return 'the record\'s ' .. field .. ' is not a string'
    end
  end
  for _, field in ipairs({'leaseDurationSeconds', 'leaderTransitions'}) do
    local v = value[field]
    if not is_null(v) and (type(v) ~= 'number' or v ~= math.floor(v) or v < -2147483648 or v > 2147483647) then
      return 'the record\'s ' .. field .. ' is not a 32-bit integer'
    end
  end
  return nil
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
  if not string.match(version, '^%d+$') or #version > 16 or tonumber(version) > LARGEST_VERSION then
    return {'corrupt', 'the field version is not a counter: ' .. string.sub(version, 1, 40)}
  end
  local problem = record_problem(record)
  if problem then
    return {'corrupt', problem}
  end
  return {'found', record, version}
end

-- Writes the record at the version, sets the expiry and announces the write.
local function write(record, version)
  redis.call('HSET', key, 'record', record, 'version', version)
  local ttl = tonumber(ARGV[5])
  if ttl and ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  end
  redis.call('PUBLISH', ARGV[4], '{"version":"' .. version .. '","record":' .. record .. '}')
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
  return write(ARGV[2], now[1] .. string.format('%06d', tonumber(now[2])))
end

if operation == 'update' then
  local current = read()
  if current[1] == 'corrupt' then
    return current
  end
  if current[1] == 'none' then
    return {'conflict', ''}
  end
  if current[3] ~= ARGV[3] then
    return {'conflict', current[3]}
  end
  return write(ARGV[2], string.format('%.0f', tonumber(current[3]) + 1))
end

return redis.error_reply('ERR unknown leader election operation ' .. tostring(operation))
