-- Version shims: one place for every API that differs between Neovim 0.7 and 0.12.
-- Nothing else in the plugin tests `has('nvim-0.x')`.

local M = {}

---True when running on Neovim `version` or later.
---@param version string like "0.10"
---@return boolean
function M.has(version)
  return vim.fn.has('nvim-' .. version) == 1
end

---The libuv binding (`vim.uv` since 0.10, `vim.loop` before).
M.uv = vim.uv or vim.loop

---True for JSON null as decoded by any version (`vim.NIL`), and for nil.
---@param value any
---@return boolean
function M.is_nil(value)
  return value == nil or value == vim.NIL
end

---`value` unless it is JSON null.
---@generic T
---@param value T
---@return T?
function M.value(value)
  if value == vim.NIL then
    return nil
  end
  return value
end

---True when `t` is a list (`vim.islist` since 0.10, `vim.tbl_islist` before).
---@param t any
---@return boolean
function M.islist(t)
  if type(t) ~= 'table' then
    return false
  end
  if vim.islist then
    return vim.islist(t)
  end
  return vim.tbl_islist(t)
end

---Running LSP clients matching `filter` (`vim.lsp.get_clients` since 0.10,
---`get_active_clients` before, which took no filter on 0.7).
---@param filter { name: string?, bufnr: integer?, id: integer? }?
---@return table[]
function M.get_clients(filter)
  filter = filter or {}
  local all = vim.lsp.get_clients and vim.lsp.get_clients() or vim.lsp.get_active_clients()
  local bufnr = filter.bufnr
  if bufnr == 0 then
    bufnr = vim.api.nvim_get_current_buf()
  end
  local out = {}
  for _, client in ipairs(all) do
    if
      (filter.name == nil or client.name == filter.name)
      and (filter.id == nil or client.id == filter.id)
      and (bufnr == nil or vim.lsp.buf_is_attached(bufnr, client.id))
    then
      out[#out + 1] = client
    end
  end
  return out
end

---True when the client has stopped or is stopping.
---@param client table
---@return boolean
function M.is_stopped(client)
  if M.has('0.11') then
    return client:is_stopped()
  end
  return client.is_stopped()
end

---Send a request (`client:request` since 0.11, `client.request` before).
---@param client table
---@param method string
---@param params any
---@param handler fun(err: table?, result: any, ctx: table)
---@param bufnr integer?
---@return boolean sent
---@return integer? request_id
function M.request(client, method, params, handler, bufnr)
  if M.has('0.11') then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

---Send a request and wait for its answer.
---@param client table
---@param method string
---@param params any
---@param timeout_ms integer
---@param bufnr integer?
---@return { err: table?, result: any }? response
---@return string? err
function M.request_sync(client, method, params, timeout_ms, bufnr)
  if M.has('0.11') then
    return client:request_sync(method, params, timeout_ms, bufnr)
  end
  return client.request_sync(method, params, timeout_ms, bufnr)
end

---Send a notification (`client:notify` since 0.11, `client.notify` before).
---@param client table
---@param method string
---@param params any
---@return boolean sent
function M.notify(client, method, params)
  if M.has('0.11') then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

---Run `workspace/executeCommand` with one argument. On 0.11+ this goes through
---`client:exec_cmd` when the server advertises the command (so client-side command
---overrides apply); otherwise, and before 0.11, it is a plain request.
---@param client table
---@param command string
---@param argument any
---@param handler fun(err: table?, result: any, ctx: table)
---@param bufnr integer?
function M.exec_cmd(client, command, argument, handler, bufnr)
  local params = { command = command, arguments = { argument } }
  if M.has('0.11') and client.exec_cmd then
    local provider = (client.server_capabilities or {}).executeCommandProvider
    local advertised = type(provider) == 'table' and provider.commands or {}
    if vim.tbl_contains(advertised, command) then
      client:exec_cmd({ title = command, command = command, arguments = params.arguments }, {
        bufnr = bufnr,
      }, handler)
      return
    end
  end
  M.request(client, 'workspace/executeCommand', params, handler, bufnr)
end

---Start a client without attaching a buffer; returns its id.
---`vim.lsp.start(config, {attach = false})` on 0.12+, `vim.lsp.start_client` before
---(deprecated with a warning on 0.12).
---@param config table
---@return integer? client_id
---@return string? err
function M.start_client(config)
  local ok, id = pcall(function()
    if M.has('0.12') then
      return vim.lsp.start(config, { attach = false, silent = true })
    end
    return vim.lsp.start_client(config)
  end)
  if not ok then
    return nil, tostring(id)
  end
  if not id then
    return nil, 'the client did not start'
  end
  return id
end

---Byte column `col` of `line` as a character offset in `encoding`
---(`vim.str_utfindex(s, encoding, index)` since 0.11, `(s, index) -> utf32, utf16` before).
---@param line string
---@param encoding keel.OffsetEncoding
---@param col integer byte column, 0-based
---@return integer
function M.utf_index(line, encoding, col)
  if col <= 0 then
    return 0
  end
  if col > #line then
    col = #line
  end
  if encoding == 'utf-8' then
    return col
  end
  if M.has('0.11') then
    local ok, idx = pcall(vim.str_utfindex, line, encoding, col, false)
    return ok and idx or col
  end
  local ok, utf32, utf16 = pcall(vim.str_utfindex, line, col)
  if not ok then
    return col
  end
  if encoding == 'utf-32' then
    return utf32
  end
  return utf16
end

---Line diff of two texts (`vim.text.diff` on 0.12, `vim.diff` before).
---@param a string
---@param b string
---@param opts table
---@return any
function M.diff(a, b, opts)
  local text = M.has('0.12') and vim.text or nil
  if text and text.diff then
    return text.diff(a, b, opts)
  end
  return vim.diff(a, b, opts)
end

---Namespaces of a client's LSP diagnostics (push, and pull on 0.10+).
---@param client_id integer
---@return integer[]
function M.lsp_namespaces(client_id)
  local out = { vim.lsp.diagnostic.get_namespace(client_id) }
  if M.has('0.10') then
    out[#out + 1] = vim.lsp.diagnostic.get_namespace(client_id, true)
  end
  return out
end

---The document version the client last sent for `bufnr`, or its `changedtick`.
---@param bufnr integer
---@param client_id integer?
---@return integer
function M.buf_version(bufnr, client_id)
  local versions = vim.lsp.util.buf_versions
  if client_id and versions and vim.lsp.buf_is_attached(bufnr, client_id) then
    local version = rawget(versions, bufnr)
    if type(version) == 'number' then
      return version
    end
  end
  return vim.api.nvim_buf_get_changedtick(bufnr)
end

---Fire `User {pattern}`; `data` is passed on 0.8+ (0.7 autocmds take no data).
---@param pattern string
---@param data table?
function M.fire_user(pattern, data)
  local opts = { pattern = pattern, modeline = false }
  if M.has('0.8') then
    opts.data = data
  end
  local ok, err = pcall(vim.api.nvim_exec_autocmds, 'User', opts)
  if not ok then
    require('keel.log').error('User %s autocmd failed: %s', pattern, err)
  end
end

---Listen to Neovim's own LSP progress event: `LspProgress` on 0.10+, `User
---LspProgressUpdate` before. Keel's `$/progress` handler keeps Neovim's, so both fire for
---Keel's progress too (progress plugins and statuslines keep working).
---@param callback fun(args: table)
---@param group integer? augroup
---@return integer autocmd id
function M.on_lsp_progress(callback, group)
  if M.has('0.10') then
    return vim.api.nvim_create_autocmd('LspProgress', { group = group, callback = callback })
  end
  return vim.api.nvim_create_autocmd('User', {
    group = group,
    pattern = 'LspProgressUpdate',
    callback = callback,
  })
end

---The health reporter: `vim.health` on 0.10+, `require('health').report_*` before.
---@return { start: fun(msg: string), ok: fun(msg: string), info: fun(msg: string), warn: fun(msg: string, advice: any?), error: fun(msg: string, advice: any?) }
function M.health()
  local h = vim.health
  if h and h.start then
    return { start = h.start, ok = h.ok, info = h.info, warn = h.warn, error = h.error }
  end
  h = h and h.report_start and h or require('health')
  return {
    start = h.report_start,
    ok = h.report_ok,
    info = h.report_info,
    warn = h.report_warn,
    error = h.report_error,
  }
end

---The LSP log file (`vim.lsp.log.get_filename`; `vim.lsp.get_log_path` is deprecated).
---@return string
function M.lsp_log_path()
  local ok, lsplog = pcall(require, 'vim.lsp.log')
  if ok and lsplog.get_filename then
    return lsplog.get_filename()
  end
  return vim.lsp.get_log_path()
end

---A standard path, or `fallback` where this version lacks it (`log` is 0.8+).
---@param what string
---@param fallback string
---@return string
function M.stdpath(what, fallback)
  local ok, path = pcall(vim.fn.stdpath, what)
  if ok and type(path) == 'string' then
    return path
  end
  return vim.fn.stdpath(fallback)
end

return M
