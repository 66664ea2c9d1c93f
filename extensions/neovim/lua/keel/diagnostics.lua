-- Forwarding the editor's diagnostics to Keel (V_syn): a debounced `DiagnosticChanged`
-- autocmd sends `keel/editorDiagnostics` for the session's files, with the diagnostics of
-- every namespace except Keel's own, converted to LSP positions in the client's offset
-- encoding.

local compat = require('keel.compat')
local config = require('keel.config')
local log = require('keel.log')
local session = require('keel.session')
local util = require('keel.util')

local M = {}

---The notification method (docs/reference/lsp.md).
M.method = 'keel/editorDiagnostics'

local state = {
  ---@type table<integer, boolean> buffers waiting for the debounce timer
  pending = {},
  ---@type userdata?
  timer = nil,
  ---@type integer?
  augroup = nil,
  ---@type table<string, string> uri -> last diagnostics sent (encoded), to skip repeats
  last = {},
}

---An LSP position for byte column `col` of line `lnum` in `bufnr`.
---@param bufnr integer
---@param lnum integer 0-based
---@param col integer byte column, 0-based
---@param encoding keel.OffsetEncoding
---@return { line: integer, character: integer }
function M.position(bufnr, lnum, col, encoding)
  col = col or 0
  local line = vim.api.nvim_buf_get_lines(bufnr, lnum, lnum + 1, false)[1]
  if line == nil then
    return { line = lnum, character = col }
  end
  return { line = lnum, character = compat.utf_index(line, encoding, col) }
end

---A `vim.diagnostic` entry (0-based lnum, byte col) as an LSP Diagnostic.
---@param bufnr integer
---@param d table vim.Diagnostic
---@param encoding keel.OffsetEncoding
---@return keel.LspDiagnostic
function M.to_lsp(bufnr, d, encoding)
  local end_lnum = d.end_lnum or d.lnum
  local end_col = d.end_col or d.col
  local lsp = type(d.user_data) == 'table' and d.user_data.lsp or {}
  local out = {
    range = {
      start = M.position(bufnr, d.lnum, d.col, encoding),
      ['end'] = M.position(bufnr, end_lnum, end_col, encoding),
    },
    severity = d.severity,
    message = d.message,
    source = d.source,
    code = compat.value(d.code) or compat.value(lsp.code),
  }
  if type(lsp.tags) == 'table' and #lsp.tags > 0 then
    out.tags = lsp.tags
  end
  if type(lsp.codeDescription) == 'table' then
    out.codeDescription = lsp.codeDescription
  end
  return out
end

---Namespaces whose diagnostics are never forwarded: every Keel client's LSP namespaces.
---@return table<integer, boolean>
function M.own_namespaces()
  local out = {}
  for _, client in ipairs(require('keel.client').all()) do
    for _, ns in ipairs(compat.lsp_namespaces(client.id)) do
      out[ns] = true
    end
  end
  return out
end

---The diagnostics to forward for `bufnr`, as LSP Diagnostics.
---@param bufnr integer
---@param client { id: integer, offset_encoding: string? }
---@return keel.LspDiagnostic[]
function M.collect(bufnr, client)
  local own = M.own_namespaces()
  for _, ns in ipairs(compat.lsp_namespaces(client.id)) do
    own[ns] = true
  end
  local encoding = client.offset_encoding or 'utf-16'
  local out = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    if not own[d.namespace] and d.source ~= 'keel' then
      out[#out + 1] = M.to_lsp(bufnr, d, encoding)
    end
  end
  table.sort(out, function(a, b)
    if a.range.start.line ~= b.range.start.line then
      return a.range.start.line < b.range.start.line
    end
    return a.range.start.character < b.range.start.character
  end)
  return out
end

---True when Keel wants `uri`'s diagnostics under the `scope` option.
---@param uri string
---@param bufnr integer
---@param client table
---@return boolean
local function in_scope(uri, bufnr, client)
  if config.get().diagnostics.scope == 'attached' then
    return vim.lsp.buf_is_attached(bufnr, client.id)
  end
  return session.is_session_file(uri)
end

---Send `bufnr`'s diagnostics now. Unless `force`, nothing is sent when the buffer is
---out of scope or its diagnostics are what was sent last.
---@param bufnr integer
---@param force boolean?
---@return keel.proto.EditorDiagnosticsParams? params what was sent
function M.forward(bufnr, force)
  if not vim.api.nvim_buf_is_valid(bufnr) or not vim.api.nvim_buf_is_loaded(bufnr) then
    return nil
  end
  if vim.bo[bufnr].buftype ~= '' or vim.api.nvim_buf_get_name(bufnr) == '' then
    return nil
  end
  local client_mod = require('keel.client')
  local client = client_mod.for_buf(bufnr)
  if not client then
    return nil
  end
  local uri = util.buf_uri(bufnr)
  if not in_scope(uri, bufnr, client) then
    return nil
  end
  local diagnostics = M.collect(bufnr, client)
  local encoded = vim.fn.json_encode(diagnostics)
  if not force and state.last[uri] == encoded then
    return nil
  end
  state.last[uri] = encoded
  ---@type keel.proto.EditorDiagnosticsParams
  local params = {
    uri = uri,
    version = compat.buf_version(bufnr, client.id),
    diagnostics = diagnostics,
  }
  log.debug('forward %d diagnostics for %s', #diagnostics, uri)
  client_mod.notify(M.method, params, client)
  return params
end

---Forward the pending buffers (the debounce timer's callback).
function M.flush()
  local buffers = state.pending
  state.pending = {}
  for bufnr in pairs(buffers) do
    local ok, err = pcall(M.forward, bufnr)
    if not ok then
      log.error('forwarding diagnostics of buffer %d failed: %s', bufnr, err)
    end
  end
end

---Queue `bufnr` and (re)start the debounce timer.
---@param bufnr integer
function M.schedule(bufnr)
  state.pending[bufnr] = true
  if not state.timer then
    state.timer = compat.uv.new_timer()
  end
  state.timer:stop()
  state.timer:start(config.get().diagnostics.debounce_ms, 0, vim.schedule_wrap(M.flush))
end

---Forward the loaded buffers of `uris` at once (a new bundle's baseline).
---@param uris string[]
function M.forward_files(uris)
  if not config.get().diagnostics.forward then
    return
  end
  for _, uri in ipairs(uris) do
    local bufnr = util.find_buf(uri)
    if bufnr then
      M.forward(bufnr, true)
    end
  end
end

---Start listening to `DiagnosticChanged` (idempotent).
function M.enable()
  if state.augroup then
    return
  end
  state.augroup = vim.api.nvim_create_augroup('keel.diagnostics', { clear = true })
  vim.api.nvim_create_autocmd('DiagnosticChanged', {
    group = state.augroup,
    desc = 'Keel: forward diagnostics as keel/editorDiagnostics',
    callback = function(args)
      if config.get().diagnostics.forward then
        M.schedule(args.buf)
      end
    end,
  })
end

---Stop listening and drop anything queued.
function M.disable()
  if state.augroup then
    vim.api.nvim_del_augroup_by_id(state.augroup)
    state.augroup = nil
  end
  if state.timer then
    state.timer:stop()
  end
  state.pending = {}
  state.last = {}
end

return M
