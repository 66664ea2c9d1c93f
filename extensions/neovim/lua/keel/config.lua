-- The option schema (name, type, default, description) and its validation.
-- doc/keel.txt documents every entry; a test checks the two agree.

local M = {}

---@class keel.OptionSpec
---@field name string
---@field type string|string[] 'string'|'number'|'integer'|'boolean'|'table'|'function'|'list'|'nil'|'false'
---@field default any
---@field desc string
---@field enum any[]? Allowed values.
---@field items string? Element type of a 'list'.
---@field fields keel.OptionSpec[]? Sub-options of a 'table'.

---@type keel.OptionSpec[]
M.schema = {
  {
    name = 'cmd',
    type = 'list',
    items = 'string',
    default = { 'keel', 'serve', '--stdio' },
    desc = 'Command that starts the language server.',
  },
  {
    name = 'cmd_env',
    type = { 'table', 'nil' },
    default = nil,
    desc = 'Extra environment variables for the server (KEEL_MODEL, OPENAI_BASE_URL, ...).',
  },
  {
    name = 'root_dir',
    type = { 'string', 'function', 'nil' },
    default = nil,
    desc = 'Workspace root, or a function(bufnr) returning it; nil: search root_markers.',
  },
  {
    name = 'root_markers',
    type = 'list',
    items = 'string',
    default = { '.git', 'keel.toml', 'pyproject.toml', 'Cargo.toml' },
    desc = 'Names whose nearest enclosing folder is the workspace root.',
  },
  {
    name = 'filetypes',
    type = { 'list', 'nil' },
    items = 'string',
    default = nil,
    desc = 'Attach only to buffers of these filetypes; nil: every normal file buffer under the root.',
  },
  {
    name = 'autostart',
    type = 'boolean',
    default = true,
    desc = 'Start the server and attach when a file under a root is opened.',
  },
  {
    name = 'init_options',
    type = 'table',
    default = {},
    desc = 'LSP initializationOptions: the keel.toml keys (models, engine, budget, ...).',
  },
  {
    name = 'settings',
    type = 'table',
    default = {},
    desc = 'The "keel" section answered to workspace/configuration.',
  },
  {
    name = 'mode',
    type = { 'string', 'nil' },
    enum = { 'cautious', 'balanced', 'yolo' },
    default = nil,
    desc = 'Approval mode sent with :Keel start; nil: the server default.',
  },
  {
    name = 'on_attach',
    type = { 'function', 'nil' },
    default = nil,
    desc = 'function(client, bufnr) called when Keel attaches to a buffer.',
  },
  {
    name = 'ledger_limit',
    type = 'integer',
    default = 20,
    desc = 'How many entries :Keel ledger asks for.',
  },
  {
    name = 'diagnostics',
    type = 'table',
    desc = "Forwarding of other servers' diagnostics as keel/editorDiagnostics.",
    fields = {
      {
        name = 'forward',
        type = 'boolean',
        default = true,
        desc = 'Forward diagnostics at all.',
      },
      {
        name = 'debounce_ms',
        type = 'integer',
        default = 300,
        desc = 'Quiet time after the last DiagnosticChanged before sending.',
      },
      {
        name = 'scope',
        type = 'string',
        enum = { 'session', 'attached' },
        default = 'session',
        desc = '"session": files of pending bundles and session nodes; "attached": every attached buffer.',
      },
    },
  },
  {
    name = 'signs',
    type = 'table',
    desc = 'Sign column marks on lines a pending bundle changes (extmarks, namespace "keel").',
    fields = {
      { name = 'enabled', type = 'boolean', default = true, desc = 'Show the marks.' },
      { name = 'priority', type = 'integer', default = 6, desc = 'Sign priority.' },
      { name = 'add', type = 'string', default = '┃', desc = 'Text for added lines.' },
      { name = 'change', type = 'string', default = '┃', desc = 'Text for changed lines.' },
      { name = 'delete', type = 'string', default = '_', desc = 'Text where lines go away.' },
    },
  },
  {
    name = 'review',
    type = 'table',
    desc = 'The :Keel diff view.',
    fields = {
      {
        name = 'layout',
        type = 'string',
        enum = { 'vertical', 'horizontal' },
        default = 'vertical',
        desc = 'Split direction of the proposed side.',
      },
      {
        name = 'keymaps',
        type = 'table',
        desc = 'Buffer-local mappings in the proposed-content buffer; false disables one.',
        fields = {
          {
            name = 'approve_file',
            type = { 'string', 'false' },
            default = 'a',
            desc = 'Approve the file shown; the other files come back as a new bundle.',
          },
          {
            name = 'approve',
            type = { 'string', 'false' },
            default = 'A',
            desc = 'Approve the bundle: every file of it.',
          },
          {
            name = 'reject_file',
            type = { 'string', 'false' },
            default = 'r',
            desc = 'Reject the file shown (asks for a reason); the other files come back as a new bundle.',
          },
          {
            name = 'reject',
            type = { 'string', 'false' },
            default = 'R',
            desc = 'Reject the bundle (asks for a reason).',
          },
          {
            name = 'next_file',
            type = { 'string', 'false' },
            default = ']f',
            desc = 'Show the next file.',
          },
          {
            name = 'prev_file',
            type = { 'string', 'false' },
            default = '[f',
            desc = 'Show the previous file.',
          },
          {
            name = 'next_hunk',
            type = { 'string', 'false' },
            default = ']h',
            desc = 'Go to the next hunk of the file shown (as <Plug>(keel-hunk-next)).',
          },
          {
            name = 'prev_hunk',
            type = { 'string', 'false' },
            default = '[h',
            desc = 'Go to the previous hunk of the file shown (as <Plug>(keel-hunk-prev)).',
          },
          {
            name = 'approve_hunk',
            type = { 'string', 'false' },
            default = 'ga',
            desc = 'Approve the hunk at the cursor; the other hunks come back as a new bundle.',
          },
          {
            name = 'reject_hunk',
            type = { 'string', 'false' },
            default = 'gr',
            desc = 'Reject the hunk at the cursor (asks for a reason); the other hunks come back as a new bundle.',
          },
          {
            name = 'preview_hunk',
            type = { 'string', 'false' },
            default = 'gp',
            desc = 'Show the hunk at the cursor (its removed and added lines) in a float.',
          },
          { name = 'close', type = { 'string', 'false' }, default = 'q', desc = 'Close the view.' },
        },
      },
    },
  },
  {
    name = 'notify',
    type = 'table',
    desc = 'What is shown through vim.notify.',
    fields = {
      { name = 'progress', type = 'boolean', default = true, desc = 'Server $/progress.' },
      {
        name = 'progress_throttle_ms',
        type = 'integer',
        default = 1000,
        desc = 'Minimum time between two progress reports.',
      },
      {
        name = 'session',
        type = 'boolean',
        default = true,
        desc = 'keel/sessionChanged: the session outcome, and nodes that failed or escalated.',
      },
      { name = 'bundles', type = 'boolean', default = true, desc = 'keel/bundleProposed.' },
    },
  },
  {
    name = 'log',
    type = 'table',
    desc = 'The plugin log file.',
    fields = {
      {
        name = 'level',
        type = 'string',
        enum = { 'trace', 'debug', 'info', 'warn', 'error', 'off' },
        default = 'warn',
        desc = 'Lowest level written.',
      },
      {
        name = 'file',
        type = { 'string', 'nil' },
        default = nil,
        desc = "Log file; nil: stdpath('log')/keel.log.",
      },
      {
        name = 'max_size',
        type = 'integer',
        default = 1048576,
        desc = 'Bytes before the file is rotated to keel.log.1.',
      },
    },
  },
}

---@type keel.Config?
local current = nil

---@param value any
---@param kind string
---@param spec keel.OptionSpec
---@return boolean
local function is_kind(value, kind, spec)
  if kind == 'nil' then
    return value == nil
  elseif kind == 'false' then
    return value == false
  elseif kind == 'integer' then
    return type(value) == 'number' and value == math.floor(value)
  elseif kind == 'list' then
    if type(value) ~= 'table' or not require('keel.compat').islist(value) then
      return false
    end
    for _, item in ipairs(value) do
      if spec.items and type(item) ~= spec.items then
        return false
      end
    end
    return true
  end
  return type(value) == kind
end

---@param spec keel.OptionSpec
---@return string
local function describe(spec)
  local kinds = type(spec.type) == 'table' and spec.type or { spec.type }
  local names = {}
  for _, kind in ipairs(kinds) do
    names[#names + 1] = (kind == 'list' and spec.items) and (spec.items .. '[]') or kind
  end
  local text = table.concat(names, '|')
  if spec.enum then
    local quoted = {}
    for _, v in ipairs(spec.enum) do
      quoted[#quoted + 1] = string.format('%q', v)
    end
    text = text .. ' (one of ' .. table.concat(quoted, ', ') .. ')'
  end
  return text
end

---@param spec keel.OptionSpec
---@param value any
---@return boolean
local function matches(spec, value)
  local kinds = type(spec.type) == 'table' and spec.type or { spec.type }
  local ok = false
  for _, kind in ipairs(kinds) do
    if is_kind(value, kind, spec) then
      ok = true
      break
    end
  end
  if ok and spec.enum and value ~= nil then
    ok = vim.tbl_contains(spec.enum, value)
  end
  return ok
end

---@param specs keel.OptionSpec[]
---@param opts table
---@param prefix string
---@param errors string[]
---@return table
local function merge(specs, opts, prefix, errors)
  local out = {}
  local known = {}
  for _, spec in ipairs(specs) do
    local path = prefix .. spec.name
    known[spec.name] = true
    local value = opts[spec.name]
    if spec.fields then
      if value ~= nil and type(value) ~= 'table' then
        errors[#errors + 1] =
          string.format('option `%s` must be a table, got %s; using defaults', path, type(value))
        value = nil
      end
      out[spec.name] = merge(spec.fields, value or {}, path .. '.', errors)
    elseif value == nil then
      out[spec.name] = vim.deepcopy(spec.default)
    elseif matches(spec, value) then
      out[spec.name] = type(value) == 'table' and vim.deepcopy(value) or value
    else
      errors[#errors + 1] = string.format(
        'option `%s` must be %s, got %s; using the default %s',
        path,
        describe(spec),
        vim.inspect(value),
        vim.inspect(spec.default)
      )
      out[spec.name] = vim.deepcopy(spec.default)
    end
  end
  for key in pairs(opts) do
    if not known[key] then
      errors[#errors + 1] = string.format('unknown option `%s%s` ignored', prefix, tostring(key))
    end
  end
  return out
end

---Validate `opts` against the schema and merge them over the defaults. Invalid or
---unknown options are reported in `errors` and fall back to their defaults.
---@param opts keel.Options?
---@return keel.Config config
---@return string[] errors
function M.resolve(opts)
  local errors = {}
  if opts ~= nil and type(opts) ~= 'table' then
    errors[#errors + 1] = 'setup() takes a table of options, got ' .. type(opts)
    opts = nil
  end
  local config = merge(M.schema, opts or {}, '', errors)
  return config, errors
end

---The defaults, as `setup({})` would give them.
---@return keel.Config
function M.defaults()
  return (M.resolve({}))
end

---Store the configuration built from `opts`.
---@param opts keel.Options?
---@return keel.Config config
---@return string[] errors
function M.set(opts)
  local config, errors = M.resolve(opts)
  current = config
  return config, errors
end

---The configuration in force (the defaults until `setup()` is called).
---@return keel.Config
function M.get()
  if not current then
    current = M.defaults()
  end
  return current
end

---Every option as `{path, spec}` in schema order (nested ones as `a.b`).
---@return { path: string, spec: keel.OptionSpec }[]
function M.flatten()
  local out = {}
  ---@param specs keel.OptionSpec[]
  ---@param prefix string
  local function walk(specs, prefix)
    for _, spec in ipairs(specs) do
      if spec.fields then
        walk(spec.fields, prefix .. spec.name .. '.')
      else
        out[#out + 1] = { path = prefix .. spec.name, spec = spec }
      end
    end
  end
  walk(M.schema, '')
  return out
end

---A type description for docs and errors.
---@param spec keel.OptionSpec
---@return string
function M.describe(spec)
  return describe(spec)
end

return M
