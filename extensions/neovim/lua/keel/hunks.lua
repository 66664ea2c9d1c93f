-- The hunks of one file of a bundle (`keel.server.diff` gives them, with stable ids):
-- where each sits in the base (`old*`) and in the proposal (`new*`), which one is under
-- the cursor, the next and previous one, their signs (`sign_define`, group "keel_hunks")
-- and their preview lines. Line numbers are 1-based as in a unified diff; a hunk with no
-- lines on a side sits after its `start` line there (0: before the first line).

local M = {}

---The sign group of the hunk signs.
M.group = 'keel_hunks'

---@alias keel.HunkSide 'old'|'new'
---@alias keel.HunkKind 'add'|'change'|'delete'

local SIGNS = { add = 'KeelHunkAdd', change = 'KeelHunkChange', delete = 'KeelHunkDelete' }

---Added, changed or deleted (gitsigns' names): no base lines, no proposed lines, or both.
---@param hunk keel.proto.DiffHunk
---@return keel.HunkKind
function M.kind(hunk)
  if hunk.oldLines == 0 then
    return 'add'
  elseif hunk.newLines == 0 then
    return 'delete'
  end
  return 'change'
end

---The lines a hunk covers on one side, `first..last` (1-based, inclusive). A hunk with no
---lines on that side covers the line it follows (the first line when it comes first), so
---the cursor can rest on it; in an empty buffer that is line 1 as well.
---@param hunk keel.proto.DiffHunk
---@param side keel.HunkSide
---@return integer first
---@return integer last
function M.range(hunk, side)
  local start = side == 'old' and hunk.oldStart or hunk.newStart
  local count = side == 'old' and hunk.oldLines or hunk.newLines
  if count == 0 then
    local line = math.max(start, 1)
    return line, line
  end
  return start, start + count - 1
end

---The index of the hunk at `line` on `side`, or nil.
---@param hunks keel.proto.DiffHunk[]
---@param side keel.HunkSide
---@param line integer 1-based
---@return integer?
function M.at(hunks, side, line)
  for i, hunk in ipairs(hunks) do
    local first, last = M.range(hunk, side)
    if line >= first and line <= last then
      return i
    end
  end
  return nil
end

---The index of the next (`delta` 1) or previous (-1) hunk from `line`, wrapping around
---the file as `]c` does with 'wrapscan'; nil when the file has no hunk.
---@param hunks keel.proto.DiffHunk[]
---@param side keel.HunkSide
---@param line integer 1-based
---@param delta 1|-1
---@return integer?
---@return boolean wrapped
function M.step(hunks, side, line, delta)
  if #hunks == 0 then
    return nil, false
  end
  if delta > 0 then
    for i, hunk in ipairs(hunks) do
      if (M.range(hunk, side)) > line then
        return i, false
      end
    end
    return 1, true
  end
  for i = #hunks, 1, -1 do
    if (M.range(hunks[i], side)) < line then
      return i, false
    end
  end
  return #hunks, true
end

---Define the hunk signs (again, so a change of `signs.*` texts takes effect). Their
---highlights are the sign column marks' (KeelSignAdd, KeelSignChange, KeelSignDelete).
function M.define_signs()
  local cfg = require('keel.config').get().signs
  vim.cmd('highlight default link KeelSignAdd DiffAdd')
  vim.cmd('highlight default link KeelSignChange DiffChange')
  vim.cmd('highlight default link KeelSignDelete DiffDelete')
  for kind, name in pairs(SIGNS) do
    local hl = ({ add = 'KeelSignAdd', change = 'KeelSignChange', delete = 'KeelSignDelete' })[kind]
    vim.fn.sign_define(name, { text = cfg[kind], texthl = hl })
  end
end

---Put one sign per line of each hunk on `side` in `bufnr` (a deletion: one sign on the
---line it follows). Replaces the buffer's earlier hunk signs.
---@param bufnr integer
---@param hunks keel.proto.DiffHunk[]
---@param side keel.HunkSide
---@return integer placed
function M.place(bufnr, hunks, side)
  M.clear(bufnr)
  local cfg = require('keel.config').get().signs
  if not cfg.enabled then
    return 0
  end
  M.define_signs()
  local count = vim.api.nvim_buf_line_count(bufnr)
  local list = {}
  for _, hunk in ipairs(hunks) do
    local first, last = M.range(hunk, side)
    local kind = M.kind(hunk)
    for line = first, math.min(last, count) do
      list[#list + 1] = {
        buffer = bufnr,
        group = M.group,
        name = SIGNS[kind],
        lnum = line,
        priority = cfg.priority,
      }
    end
  end
  vim.fn.sign_placelist(list)
  return #list
end

---Remove the hunk signs of `bufnr`.
---@param bufnr integer
function M.clear(bufnr)
  if vim.api.nvim_buf_is_valid(bufnr) then
    vim.fn.sign_unplace(M.group, { buffer = bufnr })
  end
end

---The hunk signs of `bufnr` as `{lnum, name}`, by line (for tests and statuslines).
---@param bufnr integer
---@return { lnum: integer, name: string }[]
function M.placed(bufnr)
  local out = {}
  local placed = vim.fn.sign_getplaced(bufnr, { group = M.group })[1]
  for _, sign in ipairs(placed and placed.signs or {}) do
    out[#out + 1] = { lnum = sign.lnum, name = sign.name }
  end
  table.sort(out, function(a, b)
    return a.lnum < b.lnum
  end)
  return out
end

---The preview of a hunk: its header, then the removed lines (`-`) and the added ones (`+`).
---@param hunk keel.proto.DiffHunk
---@return string[]
function M.preview_lines(hunk)
  local lines = { hunk.header }
  for _, line in ipairs(hunk.removed) do
    lines[#lines + 1] = '-' .. line
  end
  for _, line in ipairs(hunk.added) do
    lines[#lines + 1] = '+' .. line
  end
  return lines
end

---A short name of a hunk for messages: "greet.py @@ -4,2 +4,3 @@".
---@param hunk keel.proto.DiffHunk
---@param rel string
---@return string
function M.label(hunk, rel)
  return rel .. ' ' .. hunk.header
end

return M
