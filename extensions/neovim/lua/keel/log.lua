-- Logging: a rotating file under stdpath('log') for the plugin's own trace, and
-- `vim.notify` (always prefixed "Keel: ") for what the user should see.

local compat = require('keel.compat')

local M = {}

---@type table<string, integer>
local LEVELS = { trace = 0, debug = 1, info = 2, warn = 3, error = 4, off = 5 }

local state = {
  ---@type string?
  file = nil,
  level = LEVELS.warn,
  max_size = 1024 * 1024,
}

---Apply the `log` options.
---@param opts keel.LogConfig
function M.configure(opts)
  state.level = LEVELS[opts.level] or LEVELS.warn
  state.file = opts.file
  state.max_size = opts.max_size or state.max_size
end

---The log file path.
---@return string
function M.path()
  if state.file then
    return state.file
  end
  return compat.stdpath('log', 'cache') .. '/keel.log'
end

---@param path string
local function rotate(path)
  local stat = compat.uv.fs_stat(path)
  if stat and stat.size > state.max_size then
    os.remove(path .. '.1')
    os.rename(path, path .. '.1')
  end
end

---@param line string
local function append(line)
  local path = M.path()
  vim.fn.mkdir(vim.fn.fnamemodify(path, ':h'), 'p')
  pcall(rotate, path)
  local fd = io.open(path, 'a')
  if fd then
    fd:write(line)
    fd:close()
  end
end

---@param name string
---@param fmt string
---@param ... any
local function write(name, fmt, ...)
  if LEVELS[name] < state.level then
    return
  end
  local ok, msg = pcall(string.format, fmt, ...)
  if not ok then
    msg = fmt
  end
  local line = string.format('%s [%s] %s\n', os.date('%Y-%m-%d %H:%M:%S'), name:upper(), msg)
  if vim.in_fast_event() then
    vim.schedule(function()
      append(line)
    end)
  else
    append(line)
  end
end

---@param fmt string
---@param ... any
function M.trace(fmt, ...)
  write('trace', fmt, ...)
end

---@param fmt string
---@param ... any
function M.debug(fmt, ...)
  write('debug', fmt, ...)
end

---@param fmt string
---@param ... any
function M.info(fmt, ...)
  write('info', fmt, ...)
end

---@param fmt string
---@param ... any
function M.warn(fmt, ...)
  write('warn', fmt, ...)
end

---@param fmt string
---@param ... any
function M.error(fmt, ...)
  write('error', fmt, ...)
end

---Tell the user, through `vim.notify` (scheduled when called from a fast event),
---and log it.
---@param level integer a `vim.log.levels` value
---@param msg string
function M.notify(level, msg)
  local name = ({ [0] = 'trace', 'debug', 'info', 'warn', 'error' })[level] or 'info'
  write(name, '%s', msg)
  local function show()
    vim.notify('Keel: ' .. msg, level, { title = 'Keel' })
  end
  if vim.in_fast_event() then
    vim.schedule(show)
  else
    show()
  end
end

return M
