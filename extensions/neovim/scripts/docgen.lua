-- Generates the option reference of doc/keel.txt from lua/keel/config.lua's schema.
--   nvim --headless -u NONE -i NONE -c "lua dofile('scripts/docgen.lua').write()" -c 'qa!'
-- rewrites the block in place; tests/test_plugin.py checks the two agree (a drift check).

local M = {}

---@param text string
---@param width integer
---@return string[]
local function wrap(text, width)
  local lines, line = {}, ''
  for word in text:gmatch('%S+') do
    if line == '' then
      line = word
    elseif #line + 1 + #word > width then
      lines[#lines + 1] = line
      line = word
    else
      line = line .. ' ' .. word
    end
  end
  if line ~= '' then
    lines[#lines + 1] = line
  end
  return lines
end

---The generated option reference, one entry per option.
---@return string[]
function M.options_block()
  local config = require('keel.config')
  local out = {}
  for _, item in ipairs(config.flatten()) do
    local spec = item.spec
    local tag = '*keel-opt-' .. item.path .. '*'
    out[#out + 1] = item.path .. string.rep(' ', math.max(1, 78 - #item.path - #tag)) .. tag
    out[#out + 1] = '    Type: `' .. config.describe(spec) .. '`'
    out[#out + 1] = '    Default: `'
      .. vim.inspect(spec.default, { newline = ' ', indent = '' })
      .. '`'
    for _, line in ipairs(wrap(spec.desc, 74)) do
      out[#out + 1] = '    ' .. line
    end
    out[#out + 1] = ''
  end
  return out
end

---Where the block sits in `lines`: from the `cmd` entry to the line before the next
---section rule.
---@param lines string[]
---@return integer first
---@return integer last
function M.find(lines)
  local first, last
  for i, line in ipairs(lines) do
    if not first and line:match('^cmd%s+%*keel%-opt%-cmd%*$') then
      first = i
    elseif first and line:match('^====') then
      last = i - 1
      break
    end
  end
  assert(first and last, 'option block not found in doc/keel.txt')
  return first, last
end

---Lines of `path` with the block regenerated.
---@param path string
---@return string[] new
---@return string[] old
function M.render(path)
  local lines = vim.fn.readfile(path)
  local first, last = M.find(lines)
  local out = vim.list_slice(lines, 1, first - 1)
  vim.list_extend(out, M.options_block())
  vim.list_extend(out, vim.list_slice(lines, last + 1, #lines))
  return out, lines
end

---True when the doc's block is what the schema generates.
---@param path string
---@return boolean
function M.check(path)
  local new, old = M.render(path)
  return vim.deep_equal(new, old)
end

---Rewrite doc/keel.txt of the plugin this script belongs to.
function M.write()
  local root = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h')
  vim.opt.runtimepath:prepend(root)
  local path = root .. '/doc/keel.txt'
  vim.fn.writefile((M.render(path)), path)
end

return M
