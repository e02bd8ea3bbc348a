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

------------------------------------------------------------------------
-- JSON text.

local function is_space(b)
  return b == 32 or b == 9 or b == 10 or b == 13
end

local function trim(text)
  local first, last = 1, #text
  while first <= last and is_space(string.byte(text, first)) do
    first = first + 1
  end
  while last >= first and is_space(string.byte(text, last)) do
    last = last - 1
  end
  if first == 1 and last == #text then
    return text
  end
  return string.sub(text, first, last)
end

-- The index just past the string literal that opens at `at`.
local function string_end(text, at)
  local j = at + 1
  while true do
    local q = string.find(text, '["\\]', j)
    if not q then
      error('sessionkit: a stored JSON string is not terminated')
    end
    if string.byte(text, q) == 92 then
      j = q + 2
    else
      return q + 1
    end
  end
end

-- The top-level elements of a (trimmed) JSON array, each trimmed.
local function elements(text)
  local items, depth, start, i = {}, 0, 2, 2
  while true do
    local at = string.find(text, '[%[%]{}",]', i)
    if not at then
      error('sessionkit: a stored JSON array is not terminated')
    end
    local c = string.byte(text, at)
    if c == 34 then
      i = string_end(text, at)
    elseif c == 91 or c == 123 then
      depth = depth + 1
      i = at + 1
    elseif c == 93 or c == 125 then
      if depth == 0 then
        local last = trim(string.sub(text, start, at - 1))
        if last ~= '' then
          items[#items + 1] = last
        end
        return items
      end
      depth = depth - 1
      i = at + 1
    else
      if depth == 0 then
        items[#items + 1] = trim(string.sub(text, start, at - 1))
        start = at + 1
      end
      i = at + 1
    end
  end
end

-- `text` without the whitespace between tokens (strings kept verbatim).
local function compact(text)
  if not string.find(text, '[ \t\n\r]') then
    return text
  end
  local out, i, n = {}, 1, #text
  while i <= n do
    local q = string.find(text, '"', i, true)
    local stop = q and q - 1 or n
    out[#out + 1] = (string.gsub(string.sub(text, i, stop), '[ \t\n\r]+', ''))
    if not q then
      break
    end
    local after = string_end(text, q)
    out[#out + 1] = string.sub(text, q, after - 1)
    i = after
  end
  return table.concat(out)
end

------------------------------------------------------------------------
-- Exact integers: sign and decimal digits, never a Lua number.

local U64_MAX, I64_MIN_ABS = '18446744073709551615', '9223372036854775808'

-- a <= b, for digit strings without leading zeros.
local function digits_le(a, b)
  if #a ~= #b then
    return #a < #b
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return true
end

-- negative?, digits of a JSON integer text, or nil if it is not one.
local function parse_integer(text)
  local sign, digits = string.match(text, '^(%-?)(%d+)$')
  if not digits then
    return nil
  end
  digits = string.match(digits, '^0*(%d+)$')
  return sign == '-' and digits ~= '0', digits
end

-- Whether the integer fits serde_json's integers (i64 or u64).
local function in_range(negative, digits)
  if negative then
    return digits_le(digits, I64_MIN_ABS)
  end
  return digits_le(digits, U64_MAX)
end

-- What a (trimmed) JSON text is, in the words of PatchError (serde_json
-- reads integers outside i64/u64 as floats).
local function kind_of(text)
  local c = string.sub(text, 1, 1)
  if c == '[' then
    return 'an array'
  elseif c == '{' then
    return 'an object'
  elseif c == '"' then
    return 'a string'
  elseif c == 't' or c == 'f' then
    return 'a boolean'
  elseif c == 'n' then
    return 'null'
  end
  local negative, digits = parse_integer(text)
  if digits ~= nil and in_range(negative, digits) then
    return 'an integer'
  end
  return 'a float'
end

local function reversed_digits(list)
  local n = #list
  while n > 1 and list[n] == 0 do
    n = n - 1
  end
  local chars = {}
  for k = n, 1, -1 do
    chars[#chars + 1] = string.char(48 + list[k])
  end
  return table.concat(chars)
end

local function add_digits(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then
      d = d + string.byte(a, i) - 48
      i = i - 1
    end
    if j > 0 then
      d = d + string.byte(b, j) - 48
      j = j - 1
    end
    if d >= 10 then
      out[#out + 1], carry = d - 10, 1
    else
      out[#out + 1], carry = d, 0
    end
  end
  return reversed_digits(out)
end

-- a - b, for a >= b.
local function sub_digits(a, b)
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = string.byte(a, i) - 48 - borrow
    if j > 0 then
      d = d - (string.byte(b, j) - 48)
      j = j - 1
    end
    if d < 0 then
      out[#out + 1], borrow = d + 10, 1
    else
      out[#out + 1], borrow = d, 0
    end
    i = i - 1
  end
  return reversed_digits(out)
end

local function add_signed(a_neg, a, b_neg, b)
  if a_neg == b_neg then
    return a_neg, add_digits(a, b)
  end
  if digits_le(b, a) then
    local d = sub_digits(a, b)
    return a_neg and d ~= '0', d
  end
  local d = sub_digits(b, a)
  return b_neg and d ~= '0', d
end

------------------------------------------------------------------------
-- Operations. Each takes the key, its current text (nil: absent) and the
-- operation's arguments, and returns the new text (nil: absent) or nil and
-- a refusal.

local function refused(kind, key, a, b)
  return { 'refused', kind, key or '', a or '', b or '' }
end

local function increment(key, current, by)
  local by_neg, by_digits = parse_integer(by)
  if current == nil then
    return by
  end
  local text = trim(current)
  local negative, digits = parse_integer(text)
  if digits == nil or not in_range(negative, digits) then
    return nil, refused('not_an_integer', key, kind_of(text))
  end
  local sum_neg, sum = add_signed(negative, digits, by_neg, by_digits)
  if not in_range(sum_neg, sum) then
    return nil, refused('overflow', key)
  end
  if sum_neg then
    return '-' .. sum
  end
  return sum
end

local function push(key, current, value, keep)
  if current == nil then
    if keep == 0 then
      return '[]'
    end
    return '[' .. value .. ']'
  end
  local text = trim(current)
  if string.sub(text, 1, 1) ~= '[' then
    return nil, refused('not_an_array', key, kind_of(text))
  end
  if keep == nil then
    if string.find(text, '^%[[ \t\n\r]*%]$') then
      return '[' .. value .. ']'
    end
    return string.sub(text, 1, #text - 1) .. ',' .. value .. ']'
  end
  local items = elements(text)
  items[#items + 1] = value
  local from = math.max(#items - keep + 1, 1)
  return '[' .. table.concat(items, ',', from, #items) .. ']'
end

local function remove_first(key, current, value)
  if current == nil then
    return nil
  end
  local text = trim(current)
  if string.sub(text, 1, 1) ~= '[' then
    return nil, refused('not_an_array', key, kind_of(text))
  end
  local items = elements(text)
  for i = 1, #items do
    if compact(items[i]) == value then
      table.remove(items, i)
      return '[' .. table.concat(items, ',') .. ']'
    end
  end
  return current
end

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
