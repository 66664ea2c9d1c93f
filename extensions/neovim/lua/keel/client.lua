-- The Keel language client: finding the workspace root, starting `keel serve` once per
-- root, attaching buffers, and calling the server (`keel.server.*` commands, custom
-- notifications). Every version difference goes through keel.compat.

local compat = require('keel.compat')
local config = require('keel.config')
local log = require('keel.log')
local util = require('keel.util')

local M = {}

---The client name, as the server calls itself (docs/reference/lsp.md).
M.name = 'keel'

local state = {
  ---@type table<string, integer> root key -> client id
  by_root = {},
  ---@type table<integer, string> client id -> root
  roots = {},
  ---@type table<integer, boolean>
  ready = {},
  ---@type table<integer, fun(err: string?)[]>
  waiting = {},
  ---@type string?
  last_error = nil,
}

---The nearest folder at or above `start` holding one of `markers`.
---@param start string
---@param markers string[]
---@return string?
function M.find_root(start, markers)
  local dir = vim.fn.fnamemodify(start, ':p'):gsub('/$', '')
  if dir == '' then
    dir = '/'
  end
  while true do
    for _, marker in ipairs(markers) do
      if compat.uv.fs_stat(dir .. '/' .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ':h')
    if parent == dir then
      return nil
    end
    dir = parent
  end
end

---The workspace root for a buffer (or for the current directory when `bufnr` is nil
---or has no file): `root_dir` when set, else the nearest folder with a root marker.
---@param bufnr integer?
---@return string?
function M.root_for(bufnr)
  local cfg = config.get()
  if type(cfg.root_dir) == 'string' then
    return (vim.fn.fnamemodify(cfg.root_dir, ':p'):gsub('/$', ''))
  elseif type(cfg.root_dir) == 'function' then
    local ok, root = pcall(cfg.root_dir, bufnr or vim.api.nvim_get_current_buf())
    if not ok then
      log.notify(vim.log.levels.ERROR, 'root_dir function failed: ' .. tostring(root))
      return nil
    end
    return root and (vim.fn.fnamemodify(root, ':p'):gsub('/$', '')) or nil
  end
  local name = bufnr and vim.api.nvim_buf_is_valid(bufnr) and vim.api.nvim_buf_get_name(bufnr) or ''
  local start = name ~= '' and vim.fn.fnamemodify(name, ':p:h') or vim.fn.getcwd()
  return M.find_root(start, cfg.root_markers)
end

---True when Keel should attach to `bufnr` for `root`: a loaded normal file buffer
---inside the root, of a configured filetype when `filetypes` is set.
---@param bufnr integer
---@param root string
---@return boolean
function M.eligible(bufnr, root)
  if not vim.api.nvim_buf_is_valid(bufnr) or not vim.api.nvim_buf_is_loaded(bufnr) then
    return false
  end
  if vim.bo[bufnr].buftype ~= '' then
    return false
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == '' or vim.fn.isdirectory(name) == 1 or not util.is_inside(name, root) then
    return false
  end
  local filetypes = config.get().filetypes
  return filetypes == nil or vim.tbl_contains(filetypes, vim.bo[bufnr].filetype)
end

---Client capabilities: Neovim's own, less `changeAnnotationSupport`. Keel's approval is
---the explicit approve command; without this, 0.12 would ask again for each file the
---approved bundle writes. The value is JSON null rather than nil because 0.11+ merges
---the config's capabilities over its defaults, where nil would leave the default.
---@return table
function M.capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  local edit = caps.workspace and caps.workspace.workspaceEdit
  if edit and edit.changeAnnotationSupport ~= nil then
    edit.changeAnnotationSupport = vim.NIL
  end
  return caps
end

---Handlers for the server's notifications.
---@return table<string, function>
function M.handlers()
  return {
    ['keel/sessionChanged'] = function(_, result, ctx)
      require('keel.events').session_changed(result, ctx.client_id)
    end,
    ['keel/bundleProposed'] = function(_, result, ctx)
      require('keel.events').bundle_proposed(result, ctx.client_id)
    end,
    ['$/progress'] = function(err, result, ctx, cfg)
      -- Keep Neovim's own handling, so LspProgress / User LspProgressUpdate still fire
      -- for progress plugins and statuslines.
      local default = vim.lsp.handlers['$/progress']
      if default then
        pcall(default, err, result, ctx, cfg)
      end
      require('keel.progress').on_progress(result, ctx.client_id)
    end,
  }
end

---@param client table
local function mark_ready(client)
  state.ready[client.id] = true
  local waiting = state.waiting[client.id] or {}
  state.waiting[client.id] = nil
  for _, fn in ipairs(waiting) do
    fn(nil)
  end
end

---@param client table
---@param _ table
local function on_init(client, _)
  log.info('client %d initialized, offset encoding %s', client.id, client.offset_encoding)
  mark_ready(client)
end

---@param client table
---@param bufnr integer
local function on_attach(client, bufnr)
  log.debug('attached buffer %d to client %d', bufnr, client.id)
  require('keel.events').buffer_attached(bufnr)
  local hook = config.get().on_attach
  if hook then
    local ok, err = pcall(hook, client, bufnr)
    if not ok then
      log.notify(vim.log.levels.ERROR, 'on_attach failed: ' .. tostring(err))
    end
  end
end

---@param code integer
---@param signal integer
---@param client_id integer
local function on_exit(code, signal, client_id)
  vim.schedule(function()
    local root = state.roots[client_id]
    if root then
      state.by_root[util.key(root)] = nil
    end
    state.roots[client_id] = nil
    state.ready[client_id] = nil
    local waiting = state.waiting[client_id] or {}
    state.waiting[client_id] = nil
    local reason = string.format('the server exited (code %d, signal %d)', code, signal)
    for _, fn in ipairs(waiting) do
      fn(reason)
    end
    if code ~= 0 then
      log.notify(
        vim.log.levels.ERROR,
        reason .. '; see :checkhealth keel and ' .. compat.lsp_log_path()
      )
    else
      log.info('client %d exited', client_id)
    end
    require('keel.events').client_exited(client_id)
  end)
end

---@param tbl table
---@return table
local function object(tbl)
  if type(tbl) == 'table' and next(tbl) == nil then
    return vim.empty_dict()
  end
  return tbl
end

---The client configuration for a root (also what lsp/keel.lua gives `vim.lsp.config`).
---@param root string?
---@return table
function M.client_config(root)
  local cfg = config.get()
  local client_config = {
    name = M.name,
    cmd = cfg.cmd,
    cmd_env = cfg.cmd_env,
    init_options = object(cfg.init_options),
    settings = { keel = object(cfg.settings) },
    capabilities = M.capabilities(),
    handlers = M.handlers(),
    on_init = on_init,
    on_attach = on_attach,
    on_exit = on_exit,
  }
  if root then
    client_config.root_dir = root
    client_config.workspace_folders = { { uri = vim.uri_from_fname(root), name = root } }
  else
    client_config.root_markers = cfg.root_markers
  end
  return client_config
end

---A running Keel client for `root` (ours, or one started through lsp/keel.lua).
---@param root string
---@return table?
function M.client_for_root(root)
  local key = util.key(root)
  local id = state.by_root[key]
  local client = id and vim.lsp.get_client_by_id(id)
  if client and not compat.is_stopped(client) then
    return client
  end
  state.by_root[key] = nil
  for _, other in ipairs(compat.get_clients({ name = M.name })) do
    local dir = other.config and other.config.root_dir
    if dir and util.key(dir) == key and not compat.is_stopped(other) then
      state.by_root[key] = other.id
      state.roots[other.id] = root
      return other
    end
  end
  return nil
end

---Start `keel serve` for `root`.
---@param root string
---@return table? client
---@return string? err
function M.start(root)
  local cmd = config.get().cmd
  if vim.fn.executable(cmd[1]) == 0 then
    return nil,
      string.format(
        'cannot start the server: `%s` is not an executable (set `cmd` in setup(); :checkhealth keel)',
        cmd[1]
      )
  end
  local id, err = compat.start_client(M.client_config(root))
  if not id then
    return nil, string.format('cannot start `%s`: %s', table.concat(cmd, ' '), err)
  end
  state.by_root[util.key(root)] = id
  state.roots[id] = root
  log.info('started client %d for %s', id, root)
  return vim.lsp.get_client_by_id(id)
end

---Attach `bufnr` to `client` unless it already is.
---@param bufnr integer
---@param client table
function M.attach(bufnr, client)
  if not vim.lsp.buf_is_attached(bufnr, client.id) then
    vim.lsp.buf_attach_client(bufnr, client.id)
  end
end

---The client for `bufnr` (or the current directory), started and attached as needed.
---@param bufnr integer?
---@param opts { fallback_cwd: boolean? }?
---@return table? client
---@return string? err
function M.ensure(bufnr, opts)
  opts = opts or {}
  local root = M.root_for(bufnr)
  if not root and opts.fallback_cwd then
    root = vim.fn.getcwd()
  end
  if not root then
    return nil, 'no workspace root (none of the root markers found; set `root_dir`)'
  end
  local client = M.client_for_root(root)
  if not client then
    local err
    client, err = M.start(root)
    if not client then
      return nil, err
    end
  end
  if bufnr and M.eligible(bufnr, root) then
    M.attach(bufnr, client)
  end
  return client
end

---The running Keel client whose root holds `bufnr`'s file; never starts one.
---@param bufnr integer
---@return table?
function M.for_buf(bufnr)
  for _, client in ipairs(compat.get_clients({ name = M.name, bufnr = bufnr })) do
    return client
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == '' then
    return nil
  end
  for id, root in pairs(state.roots) do
    local client = vim.lsp.get_client_by_id(id)
    if client and util.is_inside(name, root) then
      return client
    end
  end
  return nil
end

---The client commands talk to: the one attached to the current buffer, the one the
---review view belongs to, or the one for the current file's root or directory,
---started if needed.
---@return table? client
---@return string? err
function M.current()
  local bufnr = vim.api.nvim_get_current_buf()
  local review = vim.b[bufnr].keel_review
  if type(review) == 'table' and review.client_id then
    local client = vim.lsp.get_client_by_id(review.client_id)
    if client then
      return client
    end
  end
  local attached = M.for_buf(bufnr)
  if attached then
    return attached
  end
  local eligible = vim.bo[bufnr].buftype == '' and vim.api.nvim_buf_get_name(bufnr) ~= ''
  return M.ensure(eligible and bufnr or nil, { fallback_cwd = true })
end

---The workspace root of a client.
---@param client table?
---@return string?
function M.root_of(client)
  if not client then
    return nil
  end
  return state.roots[client.id] or (client.config and client.config.root_dir)
end

---Run `fn` once the client has initialized (at once if it has).
---@param client table
---@param fn fun(err: string?)
function M.when_ready(client, fn)
  if state.ready[client.id] or client.initialized then
    fn(nil)
    return
  end
  state.waiting[client.id] = state.waiting[client.id] or {}
  table.insert(state.waiting[client.id], fn)
end

---Run `keel.server.{name}` with its one JSON object argument.
---@param name string command name without the `keel.server.` prefix
---@param argument table
---@param callback fun(err: string?, result: any?, client: table?)
---@param opts { client: table?, bufnr: integer? }?
function M.exec(name, argument, callback, opts)
  opts = opts or {}
  local client, err = opts.client, nil
  if not client then
    client, err = M.current()
  end
  if not client then
    callback(err or 'no Keel client')
    return
  end
  local command = 'keel.server.' .. name
  log.debug('exec %s %s', command, vim.inspect(argument))
  M.when_ready(client, function(ready_err)
    if ready_err then
      callback(string.format('%s: %s', command, ready_err))
      return
    end
    compat.exec_cmd(client, command, object(argument), function(rpc_err, result)
      if rpc_err then
        local message = type(rpc_err) == 'table' and rpc_err.message or tostring(rpc_err)
        callback(string.format('%s failed: %s', command, message))
        return
      end
      callback(nil, compat.value(result), client)
    end, opts.bufnr)
  end)
end

---Send an LSP request to the Keel client (for hover and the like).
---@param method string
---@param params table
---@param callback keel.Callback
---@param opts { client: table?, bufnr: integer? }?
function M.request(method, params, callback, opts)
  opts = opts or {}
  local client, err = opts.client, nil
  if not client then
    client, err = M.current()
  end
  if not client then
    callback(err or 'no Keel client')
    return
  end
  M.when_ready(client, function(ready_err)
    if ready_err then
      callback(ready_err)
      return
    end
    compat.request(client, method, params, function(rpc_err, result)
      if rpc_err then
        callback(string.format('%s failed: %s', method, rpc_err.message or vim.inspect(rpc_err)))
        return
      end
      callback(nil, compat.value(result))
    end, opts.bufnr)
  end)
end

---Send a notification to a Keel client.
---@param method string
---@param params table
---@param client table
---@return boolean sent
function M.notify(method, params, client)
  return compat.notify(client, method, params)
end

---Every running Keel client.
---@return table[]
function M.all()
  local out = {}
  local seen = {}
  for id in pairs(state.roots) do
    local client = vim.lsp.get_client_by_id(id)
    if client then
      out[#out + 1] = client
      seen[id] = true
    end
  end
  for _, client in ipairs(compat.get_clients({ name = M.name })) do
    if not seen[client.id] then
      out[#out + 1] = client
    end
  end
  return out
end

---Stop every Keel client.
function M.stop()
  for _, client in ipairs(M.all()) do
    if compat.has('0.11') then
      client:stop()
    else
      client.stop()
    end
  end
end

---Attach the current eligible buffer (autostart).
---@param bufnr integer
function M.autostart(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) then
    return
  end
  local root = M.root_for(bufnr)
  if not root or not M.eligible(bufnr, root) then
    return
  end
  local _, err = M.ensure(bufnr)
  if err and err ~= state.last_error then
    state.last_error = err -- once, not for every buffer opened
    log.notify(vim.log.levels.ERROR, err)
  end
end

return M
