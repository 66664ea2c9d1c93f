-- Sign column marks on the lines a pending bundle would change, as extmarks in the
-- "keel" namespace (gitsigns-style: add / change / delete).

local compat = require('keel.compat')
local config = require('keel.config')
local session = require('keel.session')
local util = require('keel.util')

local M = {}

---The extmark namespace of the marks.
M.ns = vim.api.nvim_create_namespace('keel')

local state = {
  highlights_defined = false,
  ---@type table<integer, table<integer, string>> bufnr -> extmark id -> sign text
  texts = {},
}

---Link the sign highlights to the diff ones, unless the user defined them.
local function define_highlights()
  if state.highlights_defined then
    return
  end
  state.highlights_defined = true
  vim.cmd('highlight default link KeelSignAdd DiffAdd')
  vim.cmd('highlight default link KeelSignChange DiffChange')
  vim.cmd('highlight default link KeelSignDelete DiffDelete')
end

---@param bufnr integer
---@return integer
local function resolve(bufnr)
  if bufnr == 0 then
    return vim.api.nvim_get_current_buf()
  end
  return bufnr
end

---Remove the marks of a buffer.
---@param bufnr integer
function M.clear(bufnr)
  bufnr = resolve(bufnr)
  state.texts[bufnr] = nil
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

---Changed-line hunks between a buffer and a proposed text, in buffer lines (0-based).
---@param bufnr integer
---@param proposed string
---@return { kind: 'add'|'change'|'delete', first: integer, last: integer }[]
function M.hunks(bufnr, proposed)
  local current = util.buf_text(bufnr)
  local indices = compat.diff(current, proposed, { result_type = 'indices' }) or {}
  local count = vim.api.nvim_buf_line_count(bufnr)
  local out = {}
  for _, hunk in ipairs(indices) do
    local start_a, count_a, _, count_b = hunk[1], hunk[2], hunk[3], hunk[4]
    local kind, first, last
    if count_a == 0 then
      kind = 'add'
      first = math.max(start_a, 1) - 1
      last = first
    else
      kind = count_b == 0 and 'delete' or 'change'
      first = start_a - 1
      last = start_a + count_a - 2
    end
    first = math.min(first, count - 1)
    last = math.min(last, count - 1)
    out[#out + 1] = { kind = kind, first = first, last = last }
  end
  return out
end

---Mark the lines of `bufnr` that `proposed` changes.
---@param bufnr integer
---@param proposed string
---@return integer marks placed
function M.place(bufnr, proposed)
  bufnr = resolve(bufnr)
  M.clear(bufnr)
  local cfg = config.get().signs
  if not cfg.enabled then
    return 0
  end
  define_highlights()
  local placed = 0
  local texts = {}
  state.texts[bufnr] = texts
  for _, hunk in ipairs(M.hunks(bufnr, proposed)) do
    local text = cfg[hunk.kind]
    local group = ({ add = 'KeelSignAdd', change = 'KeelSignChange', delete = 'KeelSignDelete' })[hunk.kind]
    for line = hunk.first, hunk.last do
      local id = vim.api.nvim_buf_set_extmark(bufnr, M.ns, line, 0, {
        sign_text = text,
        sign_hl_group = group,
        priority = cfg.priority,
      })
      texts[id] = text
      placed = placed + 1
    end
  end
  return placed
end

---Re-mark one buffer from the pending bundles' proposed contents.
---@param bufnr integer
function M.refresh_buf(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) or not vim.api.nvim_buf_is_loaded(bufnr) then
    return
  end
  if vim.bo[bufnr].buftype ~= '' or vim.api.nvim_buf_get_name(bufnr) == '' then
    return
  end
  local uri = util.buf_uri(bufnr)
  local key = util.key(uri)
  for _, bundle in ipairs(session.bundles_for(uri)) do
    for _, file in ipairs(session.diff(bundle.bundleId) or {}) do
      if util.key(file.uri) == key then
        M.place(bufnr, compat.value(file.after) or '')
        return
      end
    end
  end
  M.clear(bufnr)
end

---Re-mark every loaded buffer.
function M.refresh()
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    M.refresh_buf(bufnr)
  end
end

---The marks of a buffer as `{line (0-based), text}` (for tests and statuslines).
---@param bufnr integer
---@return { line: integer, text: string }[]
function M.list(bufnr)
  bufnr = resolve(bufnr)
  local out = {}
  local texts = state.texts[bufnr] or {}
  -- 0.7 leaves sign_text out of the details: fall back to what was placed.
  local marks = vim.api.nvim_buf_get_extmarks(bufnr, M.ns, 0, -1, { details = true })
  for _, mark in ipairs(marks) do
    local details = mark[4] or {}
    out[#out + 1] = { line = mark[2], text = vim.trim(details.sign_text or texts[mark[1]] or '') }
  end
  return out
end

return M
