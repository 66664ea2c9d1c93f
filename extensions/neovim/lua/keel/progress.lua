-- The server's `$/progress` through vim.notify (throttled), plus `User KeelProgress`
-- for statuslines. Neovim's own progress handling still runs first (see client.handlers),
-- so `LspProgress` (0.10+) and `User LspProgressUpdate` (0.7-0.9) fire as usual.

local compat = require('keel.compat')
local config = require('keel.config')
local log = require('keel.log')

local M = {}

---@class keel.ProgressItem
---@field title string
---@field message string?
---@field percentage integer?
---@field last_notify number ms timestamp of the last report shown

local state = {
  ---@type table<string, keel.ProgressItem>
  tokens = {},
}

---@return number
local function now_ms()
  return compat.uv.hrtime() / 1e6
end

---@param item keel.ProgressItem
---@param message string?
---@param percentage integer?
---@return string
local function text(item, message, percentage)
  local out = item.title
  if percentage then
    out = string.format('%s [%d%%]', out, percentage)
  end
  if message and message ~= '' then
    out = out .. ': ' .. message
  end
  return out
end

---Handle one `$/progress` notification's params.
---@param params { token: string|integer, value: table }?
---@param client_id integer?
function M.on_progress(params, client_id)
  if type(params) ~= 'table' or type(params.value) ~= 'table' then
    return
  end
  local token = tostring(params.token)
  local value = params.value
  local cfg = config.get().notify
  local message = compat.value(value.message)
  local percentage = compat.value(value.percentage)
  local item = state.tokens[token]
  if value.kind == 'begin' then
    local title = compat.value(value.title) or 'working'
    item = {
      title = (title:gsub('^Keel:%s*', '')), -- messages are prefixed "Keel: " already
      message = message,
      percentage = percentage,
      last_notify = now_ms(),
    }
    state.tokens[token] = item
    if cfg.progress then
      log.notify(vim.log.levels.INFO, text(item, message, percentage))
    end
  elseif value.kind == 'report' and item then
    local changed = message ~= nil and message ~= item.message
    item.message = message or item.message
    item.percentage = percentage or item.percentage
    if cfg.progress and changed and now_ms() - item.last_notify >= cfg.progress_throttle_ms then
      item.last_notify = now_ms()
      log.notify(vim.log.levels.INFO, text(item, item.message, item.percentage))
    end
  elseif value.kind == 'end' then
    item = item or { title = 'working', last_notify = 0 }
    state.tokens[token] = nil
    if cfg.progress then
      log.notify(vim.log.levels.INFO, text(item, message or 'done', nil))
    end
  else
    return
  end
  compat.fire_user('KeelProgress', { client_id = client_id, token = params.token, value = value })
end

---Work in progress, for statuslines: `Planning [40%]: node-2` or nil.
---@return string?
function M.current()
  for _, item in pairs(state.tokens) do
    return text(item, item.message, item.percentage)
  end
  return nil
end

---Forget all progress (the server stopped).
function M.reset()
  state.tokens = {}
end

return M
