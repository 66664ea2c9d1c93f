-- Preview in place: put a pending bundle's proposed content into the files' own buffers
-- (unsaved), so your other language servers check it and their diagnostics reach Keel as
-- V_syn of the proposal (the server pins forwarded diagnostics to the exact text they
-- describe). Approving keeps the content (the server writes the files); rejecting, or the
-- bundle going away, puts the original text back.

local log = require('keel.log')
local util = require('keel.util')

local M = {}

---@class keel.PreviewEntry
---@field bundle_id string
---@field uri string
---@field original string[] lines before the preview
---@field original_eol boolean
---@field was_modified boolean
---@field previewed string[] lines the preview put in

local state = {
  ---@type table<integer, keel.PreviewEntry> bufnr -> entry
  by_buf = {},
  ---@type table<string, boolean> bundles being approved: their previews are kept
  approving = {},
}

---Mark a bundle as being approved (its previews survive it leaving the pending list).
---@param bundle_id string
---@param on boolean
function M.set_approving(bundle_id, on)
  state.approving[bundle_id] = on or nil
end

---@param bufnr integer
---@param lines string[]
---@param eol boolean
local function set_text(bufnr, lines, eol)
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, lines)
  vim.bo[bufnr].eol = eol
  vim.bo[bufnr].fixeol = eol
end

---The preview entry of a buffer, if its bundle's content is still what it shows.
---@param bufnr integer
---@return keel.PreviewEntry?
function M.active(bufnr)
  local entry = state.by_buf[bufnr]
  if not entry or not vim.api.nvim_buf_is_loaded(bufnr) then
    return nil
  end
  local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  if not vim.deep_equal(lines, entry.previewed) then
    return nil
  end
  return entry
end

---Show `files` (from keel.server.diff) of `bundle` in their buffers.
---@param bundle keel.Bundle
---@param files keel.DiffFile[]
---@param client table? the Keel client, attached to each buffer
---@return integer shown buffers now showing the proposal
function M.apply(bundle, files, client)
  local shown = 0
  for _, file in ipairs(files) do
    local path = util.fname(file.uri)
    local after = file.after or ''
    local deleted = file.change == 'delete'
    local bufnr = vim.fn.bufadd(path)
    vim.fn.bufload(bufnr)
    vim.bo[bufnr].buflisted = true
    local current = state.by_buf[bufnr]
    if deleted then
      log.notify(vim.log.levels.INFO, 'the bundle deletes ' .. path .. '; not previewed')
    elseif vim.bo[bufnr].modified and not (current and M.active(bufnr)) then
      log.notify(
        vim.log.levels.WARN,
        path .. ' has unsaved edits; save or undo them to preview the bundle there'
      )
    else
      if not current or current.bundle_id ~= bundle.bundleId then
        state.by_buf[bufnr] = {
          bundle_id = bundle.bundleId,
          uri = file.uri,
          original = current and current.original
            or vim.api.nvim_buf_get_lines(bufnr, 0, -1, false),
          original_eol = current and current.original_eol or vim.bo[bufnr].eol,
          was_modified = current and current.was_modified or vim.bo[bufnr].modified,
          previewed = {},
        }
      end
      local lines = util.lines(after)
      set_text(bufnr, lines, after == '' or after:sub(-1) == '\n')
      state.by_buf[bufnr].previewed = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
      if client then
        require('keel.client').attach(bufnr, client)
      end
      shown = shown + 1
    end
  end
  return shown
end

---Put the original text back in the buffers previewing `bundle_id`.
---@param bundle_id string
function M.restore(bundle_id)
  if state.approving[bundle_id] then
    return
  end
  for bufnr, entry in pairs(state.by_buf) do
    if entry.bundle_id == bundle_id then
      state.by_buf[bufnr] = nil
      if vim.api.nvim_buf_is_loaded(bufnr) then
        local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
        if vim.deep_equal(lines, entry.previewed) then
          set_text(bufnr, entry.original, entry.original_eol)
          if not entry.was_modified then
            vim.bo[bufnr].modified = false
          end
        else
          log.notify(
            vim.log.levels.WARN,
            util.fname(entry.uri) .. ' changed since the preview; left as it is'
          )
        end
      end
    end
  end
end

---Drop the previews of `bundle_id` without touching the buffers (it was approved): all of
---them, or those of the file URIs `uris` (the files approved).
---@param bundle_id string
---@param uris string[]?
function M.forget(bundle_id, uris)
  state.approving[bundle_id] = nil
  local only = nil
  if uris then
    only = {}
    for _, uri in ipairs(uris) do
      only[util.key(uri)] = true
    end
  end
  for bufnr, entry in pairs(state.by_buf) do
    if entry.bundle_id == bundle_id and (not only or only[util.key(entry.uri)]) then
      state.by_buf[bufnr] = nil
    end
  end
end

---Buffers previewing a bundle, as `{bufnr = bundle_id}`.
---@return table<integer, string>
function M.list()
  local out = {}
  for bufnr, entry in pairs(state.by_buf) do
    out[bufnr] = entry.bundle_id
  end
  return out
end

return M
