-- Reading the server's payloads strictly: each has exactly the keys of its class in
-- keel.payloads (generated from docs/reference/lsp.schema.json). A payload without them is
-- refused with a message naming what is missing; no other spelling of a key is tried.

local payloads = require('keel.payloads')

local M = {}

---`value` when it is a JSON object with every key the schema requires of `name`.
---@param name string a class of keel.payloads, e.g. 'BundleProposed'
---@param value any
---@return table? value
---@return string? err e.g. `BundleProposed: missing bundleId`
function M.check(name, value)
  local required = payloads.required[name]
  assert(required, 'no payload named ' .. name)
  if type(value) ~= 'table' then
    return nil,
      name .. ': expected a JSON object, got ' .. (value == vim.NIL and 'null' or type(value))
  end
  local missing = {}
  for _, key in ipairs(required) do
    if value[key] == nil then
      missing[#missing + 1] = key
    end
  end
  if #missing > 0 then
    return nil, name .. ': missing ' .. table.concat(missing, ', ')
  end
  return value, nil
end

---Like check, for a list of payloads: all of them, or the first problem.
---@param name string
---@param list any
---@return table[]? values
---@return string? err
function M.check_list(name, list)
  if type(list) ~= 'table' then
    return nil, name .. ': expected a list, got ' .. (list == vim.NIL and 'null' or type(list))
  end
  for i, value in ipairs(list) do
    local _, err = M.check(name, value)
    if err then
      return nil, err .. ' (item ' .. i .. ')'
    end
  end
  return list, nil
end

return M
