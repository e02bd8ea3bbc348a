-- The patch operations (increment, push, remove-first) and the JSON text
-- scanning they need, appended after shared.lua to the scripts that may be
-- sent operations (update, rename). They assign the operation locals
-- shared.lua declares; the scripts built without this file skip defining
-- all of it on every call, which costs Redis more than the rest of such a
-- script does.

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


increment = function(key, current, by)
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

push = function(key, current, value, keep)
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

remove_first = function(key, current, value)
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

