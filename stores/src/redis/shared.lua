-- Shared by the scripts that write sessions: the layout's field names, the
-- liveness check, the index bookkeeping field, and the patch engine
-- (sets, removes, increments, pushes, remove-first) working on the stored
-- JSON text itself. Prepended to each script that needs it (Redis has no
-- `require`), so every script stays one self-contained EVALSHA.
--
-- No value is ever decoded and re-encoded through cjson: its numbers are
-- doubles, which would change integers past 2^53 and reformat floats.
-- Instead, integers are added as decimal strings, arrays are appended to by
-- text surgery, and `keep_last` / remove-first split the array's top-level
-- elements with a small scanner. Everything is computed into locals first;
-- a script writes only once nothing can fail any more.

local MARKER, SIZE, INDEX = '\255sessionkit', '\255size', '\255index'
local MOVED_TO, MOVED_USER = '\255to', '\255user'
-- The marker field's values: a session of this layout, a session moved
-- away by a rename (step 1), a rename target that must not be written.
local LAYOUT, MOVED, GONE = '2', 'moved', 'gone'
local BATCH = 200

-- Whether the string value of a Redis reply (false for nil) is `expected`.
local function is(value, expected)
  return type(value) == 'string' and value == expected
end

-- A hash's fields, or {} when the key is absent or not a hash.
local function fields_of(key, ...)
  local reply = redis.pcall('HMGET', key, ...)
  if type(reply) ~= 'table' or reply.err then
    return {}
  end
  return reply
end

-- The key's absolute expiry (-1: none), or nil if it is not a live session
-- of this layout by the caller's clock `now`. `marker` is its marker value.
local function live_expiry(expiry, marker, now)
  if expiry == -2 or not is(marker, LAYOUT) then
    return nil
  end
  if expiry >= 0 and expiry <= now then
    return nil
  end
  return expiry
end

-- Runs HSET/HDEL with `args` in slices, to stay within Lua's stack.
local function batched(command, key, args, step)
  local i = 1
  while i <= #args do
    local last = math.min(i + step - 1, #args)
    redis.call(command, key, unpack(args, i, last))
    i = last + 1
  end
end

-- Appends `a`, `b` to `list`.
local function pair(list, a, b)
  list[#list + 1] = a
  list[#list + 1] = b
end

-- Moves the key's expiry to `expires_at` ('' for none) unless it is there.
local function expire_at(key, expires_at, current)
  if expires_at == '' then
    if current ~= -1 then
      redis.call('PERSIST', key)
    end
  elseif tonumber(expires_at) ~= current then
    redis.call('PEXPIREAT', key, expires_at)
  end
end

------------------------------------------------------------------------
-- Sizes. A session's size is its serialized JSON, `{"name":value,...}`:
-- 2 for `{}`, plus per field its quoted, escaped name, a colon, the
-- value's text and a comma, minus the last comma. The SIZE field keeps
-- "<sum of the per-field parts> <field count>", updated by every write.

-- The length of `name` as a JSON string, quotes included, escaped the way
-- serde_json escapes (", \, \b \f \n \r \t as two bytes, other control
-- bytes as \u00XX, everything else as is).
local function name_len(name)
  local n = #name + 2
  if string.find(name, '[%c"\\]') then
    for i = 1, #name do
      local b = string.byte(name, i)
      if b == 34 or b == 92 or b == 8 or b == 9 or b == 10 or b == 12 or b == 13 then
        n = n + 1
      elseif b < 32 then
        n = n + 5
      end
    end
  end
  return n
end

local function part(name, value_len)
  return name_len(name) + value_len + 2
end

local function serialized(sum, count)
  if count == 0 then
    return 2
  end
  return sum + 1
end

local function size_text(sum, count)
  return string.format('%d %d', sum, count)
end

-- The sum and count of a hash's data fields, counted from scratch (for a
-- hash whose SIZE field is missing, which only a hand edit can cause).
local function recount(key)
  local all = redis.call('HGETALL', key)
  local sum, count = 0, 0
  for i = 1, #all, 2 do
    if string.byte(all[i], 1) ~= 255 then
      sum, count = sum + part(all[i], #all[i + 1]), count + 1
    end
  end
  return sum, count
end

------------------------------------------------------------------------
-- The index bookkeeping field: "<bound> <user JSON>", meaning the user's
-- index holds this session with a score of at least <bound> (Unix ms, or
-- 'inf'). A write that leaves the session with a user and an expiry the
-- field does not cover needs the caller to raise the index first.

local function parse_index(value)
  if type(value) ~= 'string' then
    return nil, nil
  end
  local bound, user = string.match(value, '^(%S+) (.*)$')
  return bound, user
end

local function covers(bound, indexed_user, user, expiry)
  if bound == nil or indexed_user ~= user then
    return false
  end
  if bound == 'inf' then
    return true
  end
  return expiry ~= nil and expiry <= tonumber(bound)
end

-- What the INDEX field becomes for a session that will belong to `user`
-- (JSON text, or nil) until `expiry` (ms, or nil for none), given the
-- current field and the caller's `offered` one ('' if none).
-- Returns ok, new field value (false: remove it), user to unindex ('').
-- ok is false when the index must be raised first.
local function index_plan(current, user, expiry, offered)
  local bound, indexed_user = parse_index(current)
  if user == nil then
    return true, false, indexed_user or ''
  end
  if covers(bound, indexed_user, user, expiry) then
    return true, current, ''
  end
  local offered_bound, offered_user = parse_index(offered)
  if covers(offered_bound, offered_user, user, expiry) then
    local stale = ''
    if indexed_user ~= nil and indexed_user ~= user then
      stale = indexed_user
    end
    return true, offered, stale
  end
  return false
end

-- The JSON text of a user field, if it names a user (a JSON string).
local function user_text(value)
  if type(value) == 'string' and string.sub(value, 1, 1) == '"' then
    return value
  end
  return nil
end

-- A refusal, as the patching scripts return it (see patch.rs).
local function refused(kind, key, a, b)
  return { 'refused', kind, key or '', a or '', b or '' }
end

-- The operations, defined by ops.lua when a script is built with it: a
-- script built without it is only ever sent patches of sets and removes.
local increment, push, remove_first

------------------------------------------------------------------------
-- Patches, as the caller encodes them from ARGV[first] on:
--   'S' name value            set (value: JSON text)
--   'R' name                  remove
--   'M' name n op...          n operations, each one of
--       'I' by                increment by a decimal i64
--       'P' value keep        push JSON text, keep '' (all) or a count
--       'F' value             remove the first element equal to this
--                             canonical JSON text

local function read_changes(argv, first)
  local changes, i = {}, first
  while i <= #argv do
    local kind, name = argv[i], argv[i + 1]
    if kind == 'S' then
      changes[#changes + 1] = { name = name, set = argv[i + 2] }
      i = i + 3
    elseif kind == 'R' then
      changes[#changes + 1] = { name = name, remove = true }
      i = i + 2
    elseif kind == 'M' then
      local ops, count = {}, tonumber(argv[i + 2])
      i = i + 3
      for _ = 1, count do
        local op = argv[i]
        if op == 'I' or op == 'F' then
          ops[#ops + 1] = { op, argv[i + 1] }
          i = i + 2
        elseif op == 'P' then
          local keep = nil
          if argv[i + 2] ~= '' then
            keep = tonumber(argv[i + 2])
          end
          ops[#ops + 1] = { op, argv[i + 1], keep }
          i = i + 3
        else
          error('sessionkit: unknown operation in a patch')
        end
      end
      changes[#changes + 1] = { name = name, ops = ops }
    else
      error('sessionkit: unknown change in a patch')
    end
  end
  return changes
end

-- Applies `changes` to what `read(name)` gives (text or nil), into a list
-- of { name, new text or false (removed) }, or nil and a refusal.
local function apply(changes, read)
  local writes = {}
  for _, change in ipairs(changes) do
    local name = change.name
    if change.set then
      writes[#writes + 1] = { name, change.set }
    elseif change.remove then
      writes[#writes + 1] = { name, false }
    else
      local value = read(name)
      for _, op in ipairs(change.ops) do
        local err
        if op[1] == 'I' then
          value, err = increment(name, value, op[2])
        elseif op[1] == 'P' then
          value, err = push(name, value, op[2], op[3])
        else
          value, err = remove_first(name, value, op[2])
        end
        if err then
          return nil, err
        end
      end
      writes[#writes + 1] = { name, value or false }
    end
  end
  return writes
end
