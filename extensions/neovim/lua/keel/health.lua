-- `:checkhealth keel`: the server, Python, the checker and test runner, the model.

local compat = require('keel.compat')
local config = require('keel.config')

local M = {}

---Run a command; its first output line and whether it exited 0.
---@param cmd string[]
---@return boolean ok
---@return string output
local function run(cmd)
  local ok, out = pcall(vim.fn.system, cmd)
  if not ok then
    return false, tostring(out)
  end
  local first = vim.split(vim.trim(out or ''), '\n', { plain = true })[1] or ''
  return vim.v.shell_error == 0, first
end

---The server command before its `serve` argument (`{'keel'}` for `keel serve --stdio`).
---@param cmd string[]
---@return string[]
function M.base_cmd(cmd)
  local out = {}
  for _, part in ipairs(cmd) do
    if part == 'serve' then
      return out
    end
    out[#out + 1] = part
  end
  return { cmd[1] }
end

---Where to look for tools: the server executable's folder (a virtualenv's bin), then PATH.
---@param exe_path string?
---@param names string[]
---@return string? found
function M.find_tool(exe_path, names)
  local dir = exe_path and exe_path ~= '' and vim.fn.fnamemodify(exe_path, ':h') or nil
  for _, name in ipairs(names) do
    if dir and vim.fn.executable(dir .. '/' .. name) == 1 then
      return dir .. '/' .. name
    end
    local found = vim.fn.exepath(name)
    if found ~= '' then
      return found
    end
  end
  return nil
end

---The Python running the server: the script's shebang interpreter, else python3.
---@param exe_path string?
---@return string?
function M.python_for(exe_path)
  if exe_path and exe_path ~= '' and vim.fn.filereadable(exe_path) == 1 then
    local fd = io.open(exe_path, 'rb')
    local first = fd and fd:read('*l') or ''
    if fd then
      fd:close()
    end
    local interp = first:match('^#!%s*(%S*python[%d.]*)%s*$')
    if interp and vim.fn.executable(interp) == 1 then
      return interp
    end
  end
  local found = vim.fn.exepath('python3')
  return found ~= '' and found or nil
end

---`[models] default` from a TOML file (a line-oriented read, enough for this key).
---@param path string
---@return string?
function M.toml_model(path)
  if vim.fn.filereadable(path) == 0 then
    return nil
  end
  local section = nil
  for _, line in ipairs(vim.fn.readfile(path)) do
    local header = line:match('^%s*%[([^%]]+)%]')
    if header then
      section = vim.trim(header)
    elseif section == 'models' then
      local value = line:match('^%s*default%s*=%s*"([^"]*)"')
        or line:match("^%s*default%s*=%s*'([^']*)'")
      if value then
        return value
      end
    end
  end
  return nil
end

---The configured default model and where it comes from (highest precedence first).
---@param root string?
---@return string? model
---@return string? source
function M.model(root)
  local cfg = config.get()
  local env = cfg.cmd_env or {}
  if env.KEEL_MODEL and env.KEEL_MODEL ~= '' then
    return env.KEEL_MODEL, 'cmd_env.KEEL_MODEL'
  end
  for _, key in ipairs({ 'init_options', 'settings' }) do
    local models = type(cfg[key]) == 'table' and cfg[key].models
    if type(models) == 'table' and type(models.default) == 'string' then
      return models.default, key .. '.models.default'
    end
  end
  if vim.env.KEEL_MODEL and vim.env.KEEL_MODEL ~= '' then
    return vim.env.KEEL_MODEL, '$KEEL_MODEL'
  end
  if root then
    local model = M.toml_model(root .. '/keel.toml')
    if model then
      return model, root .. '/keel.toml'
    end
  end
  local xdg = vim.env.XDG_CONFIG_HOME
  if not xdg or xdg == '' then
    xdg = (vim.env.HOME or '') .. '/.config'
  end
  local user = xdg .. '/keel/config.toml'
  local model = M.toml_model(user)
  if model then
    return model, user
  end
  return nil, nil
end

---@param h table reporter from compat.health()
---@param model string
local function check_model_access(h, model)
  local env = config.get().cmd_env or {}
  ---@param name string
  ---@return boolean
  local function has_env(name)
    return (env[name] and env[name] ~= '') or (vim.env[name] ~= nil and vim.env[name] ~= '')
  end
  local provider, rest = model:match('^([%w-]+):(.*)$')
  if provider == 'replay' then
    if vim.fn.filereadable(rest) == 1 then
      h.ok('recorded transcript found: ' .. rest)
    else
      h.error('recorded transcript not found: ' .. rest)
    end
  elseif provider == 'openai' or provider == 'openai-compatible' then
    if has_env('OPENAI_API_KEY') or provider == 'openai-compatible' then
      h.ok('credentials: OPENAI_API_KEY or a compatible endpoint')
    else
      h.warn('OPENAI_API_KEY is not set', { 'export OPENAI_API_KEY=... before starting Neovim' })
    end
  elseif provider == 'anthropic' then
    if has_env('ANTHROPIC_API_KEY') then
      h.ok('credentials: ANTHROPIC_API_KEY is set')
    else
      h.warn(
        'ANTHROPIC_API_KEY is not set',
        { 'export ANTHROPIC_API_KEY=... before starting Neovim' }
      )
    end
  else
    h.warn(
      'model `' .. model .. '` is not PROVIDER:MODEL (openai, anthropic, openai-compatible, replay)'
    )
  end
end

---The health check (`:checkhealth keel`).
function M.check()
  local h = compat.health()
  local cfg = config.get()
  local client = require('keel.client')

  h.start('keel: Neovim')
  local v = vim.version()
  local version = string.format('%d.%d.%d', v.major, v.minor, v.patch)
  if compat.has('0.7') then
    h.ok('Neovim ' .. version)
  else
    h.error('Neovim ' .. version .. ' is too old; keel.nvim needs 0.7 or later')
  end
  if require('keel').is_setup() then
    h.ok("require('keel').setup() was called")
  else
    h.info(
      "require('keel').setup() was not called: no autostart, no forwarding; commands use the defaults"
    )
  end

  h.start('keel: server')
  local base = M.base_cmd(cfg.cmd)
  local exe = vim.fn.exepath(cfg.cmd[1])
  if exe == '' then
    h.error(string.format('`%s` not found (cmd = %s)', cfg.cmd[1], vim.inspect(cfg.cmd)), {
      'Install Keel: python3 -m venv .venv && .venv/bin/pip install keel',
      "Or point setup({ cmd = { '/path/to/keel', 'serve', '--stdio' } }) at it",
    })
  else
    h.ok(string.format('`%s` found: %s', cfg.cmd[1], exe))
    local version_cmd = vim.deepcopy(base)
    version_cmd[#version_cmd + 1] = '--version'
    local ok, out = run(version_cmd)
    if ok then
      h.ok('version: ' .. out)
    else
      h.error(table.concat(version_cmd, ' ') .. ' failed: ' .. out)
    end
    local serve_cmd = vim.deepcopy(base)
    vim.list_extend(serve_cmd, { 'serve', '--help' })
    local serve_ok, serve_out = run(serve_cmd)
    if serve_ok then
      h.ok('`' .. table.concat(base, ' ') .. ' serve` is available')
    else
      h.error('`' .. table.concat(base, ' ') .. ' serve` is not available: ' .. serve_out, {
        'This Keel has no language server yet; install a version with `keel serve`',
      })
    end
  end

  h.start('keel: Python, checker, test runner')
  local python = M.python_for(exe)
  if not python then
    h.error('no Python found (python3 on PATH)')
  else
    local ok, out = run({ python, '-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])' })
    local major, minor = out:match('^(%d+)%.(%d+)')
    if
      ok
      and major
      and (tonumber(major) > 3 or (tonumber(major) == 3 and tonumber(minor) >= 11))
    then
      h.ok(string.format('Python %s (%s)', out, python))
    elseif ok then
      h.error(string.format('Python %s (%s) is too old; Keel needs 3.11 or later', out, python))
    else
      h.error(python .. ' does not run: ' .. out)
    end
  end
  local checker = M.find_tool(
    exe,
    { 'ty', 'basedpyright-langserver', 'pyright-langserver', 'basedpyright', 'pyright' }
  )
  if checker then
    h.ok('checker: ' .. checker)
  else
    h.warn(
      'no type checker found (ty, pyright or basedpyright): V_syn falls back to forwarded diagnostics',
      {
        'pip install ty   (in the environment that runs keel)',
      }
    )
  end
  local pytest = M.find_tool(exe, { 'pytest' })
  if pytest then
    h.ok('test runner: ' .. pytest)
  else
    h.warn('pytest not found: V_log cannot be measured', { 'pip install pytest' })
  end

  h.start('keel: model')
  local root = client.root_for(vim.api.nvim_get_current_buf()) or vim.fn.getcwd()
  local model, source = M.model(root)
  if model then
    h.ok(string.format('model %s (from %s)', model, source))
    check_model_access(h, model)
  else
    h.warn('no model configured', {
      'export KEEL_MODEL=openai:gpt-4.1 (or anthropic:..., openai-compatible:..., replay:PATH)',
      'or [models] default = "..." in keel.toml, or setup({ init_options = { models = { default = ... } } })',
    })
  end

  h.start('keel: clients')
  local clients = client.all()
  if #clients == 0 then
    h.info('no Keel server running')
  end
  for _, c in ipairs(clients) do
    h.info(
      string.format(
        'client %d: root %s, offset encoding %s',
        c.id,
        tostring(client.root_of(c)),
        tostring(c.offset_encoding)
      )
    )
  end
  h.info('log file: ' .. require('keel.log').path())
end

return M
