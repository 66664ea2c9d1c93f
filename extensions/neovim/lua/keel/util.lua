-- Small helpers: URIs and paths, text and buffers.

local compat = require('keel.compat')

local M = {}

---A comparable key for a file URI or path: the real path when the file exists,
---the absolute path otherwise.
---@param uri_or_path string
---@return string
function M.key(uri_or_path)
  local path = uri_or_path
  if path:match('^%a[%w+.-]*:') then
    local ok, fname = pcall(vim.uri_to_fname, path)
    path = ok and fname or path
  end
  path = vim.fn.fnamemodify(path, ':p')
  local real = compat.uv.fs_realpath(path)
  if real then
    return real
  end
  -- A file that does not exist yet: resolve its folder.
  local dir, base = vim.fn.fnamemodify(path, ':h'), vim.fn.fnamemodify(path, ':t')
  local real_dir = compat.uv.fs_realpath(dir)
  if real_dir then
    return real_dir .. '/' .. base
  end
  return path
end

---True when two URIs or paths name the same file.
---@param a string
---@param b string
---@return boolean
function M.same_file(a, b)
  return M.key(a) == M.key(b)
end

---The file path of a URI (or the path itself).
---@param uri string
---@return string
function M.fname(uri)
  if uri:match('^%a[%w+.-]*:') then
    return vim.uri_to_fname(uri)
  end
  return uri
end

---The URI of a buffer's file.
---@param bufnr integer
---@return string
function M.buf_uri(bufnr)
  return vim.uri_from_bufnr(bufnr)
end

---The loaded buffer showing `uri`, if any.
---@param uri string
---@return integer?
function M.find_buf(uri)
  local key = M.key(uri)
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    local name = vim.api.nvim_buf_get_name(bufnr)
    if name ~= '' and vim.bo[bufnr].buftype == '' and M.key(name) == key then
      return bufnr
    end
  end
  return nil
end

---`path` relative to `root` when it is inside it.
---@param path string
---@param root string?
---@return string
function M.relative(path, root)
  if root and root ~= '' then
    local prefix = M.key(root) .. '/'
    local key = M.key(path)
    if key:sub(1, #prefix) == prefix then
      return key:sub(#prefix + 1)
    end
  end
  return vim.fn.fnamemodify(path, ':~:.')
end

---True when `path` is `root` or inside it.
---@param path string
---@param root string
---@return boolean
function M.is_inside(path, root)
  local key, base = M.key(path), M.key(root)
  return key == base or key:sub(1, #base + 1) == base .. '/'
end

---Lines of a text as a buffer holds them (a final newline ends the last line).
---@param text string?
---@return string[]
function M.lines(text)
  if text == nil or text == vim.NIL or text == '' then
    return {}
  end
  local lines = vim.split(text, '\n', { plain = true })
  if lines[#lines] == '' then
    lines[#lines] = nil
  end
  return lines
end

---A buffer's text with a final newline, as `vim.diff` wants it.
---@param bufnr integer
---@return string
function M.buf_text(bufnr)
  local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  if #lines == 0 or (#lines == 1 and lines[1] == '') then
    return ''
  end
  return table.concat(lines, '\n') .. '\n'
end

---Which of `uris` have buffers with unsaved edits of the user's (taken before the server
---changes files; a buffer showing a preview is not the user's edit).
---@param uris string[]
---@return table<string, boolean> file key -> modified
function M.modified_buffers(uris)
  local out = {}
  for _, uri in ipairs(uris) do
    local bufnr = M.find_buf(uri)
    if
      bufnr
      and vim.api.nvim_buf_is_loaded(bufnr)
      and vim.bo[bufnr].modified
      and not require('keel.preview').active(bufnr)
    then
      out[M.key(uri)] = true
    end
  end
  return out
end

---The loaded file buffers under `root`, as URIs.
---@param root string
---@return string[]
function M.buffers_under(root)
  local out = {}
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    local name = vim.api.nvim_buf_get_name(bufnr)
    if
      vim.api.nvim_buf_is_loaded(bufnr)
      and vim.bo[bufnr].buftype == ''
      and name ~= ''
      and M.is_inside(name, root)
    then
      out[#out + 1] = M.buf_uri(bufnr)
    end
  end
  return out
end

---After the server wrote files (approve, rollback), bring their buffers in line with the
---disk, which is authoritative: a buffer whose text is the file's, and every buffer that
---had no unsaved edits before, is marked unmodified and reloaded from its file (the
---server's workspace/applyEdit may have loaded it from the new file and then applied the
---edit again, or left it modified). A buffer with unsaved edits of its own that differ
---from the file is left alone and reported.
---@param uris string[]
---@param modified_before table<string, boolean> from modified_buffers()
---@param opts { changed_only: boolean? }? skip unmodified buffers that match their file
---@return string[] conflicts files whose buffers keep unsaved, different text
function M.sync_buffers(uris, modified_before, opts)
  opts = opts or {}
  local conflicts = {}
  for _, uri in ipairs(uris) do
    local bufnr = M.find_buf(uri)
    local path = M.fname(uri)
    if bufnr and vim.api.nvim_buf_is_loaded(bufnr) and vim.fn.filereadable(path) == 1 then
      local lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
      local same = vim.deep_equal(vim.fn.readfile(path), lines)
      local untouched = opts.changed_only and same and not vim.bo[bufnr].modified
      if not untouched and (same or not modified_before[M.key(uri)]) then
        vim.bo[bufnr].modified = false
        vim.api.nvim_buf_call(bufnr, function()
          vim.cmd('silent! edit!')
        end)
      elseif not untouched then
        conflicts[#conflicts + 1] = path
      end
    end
  end
  return conflicts
end

---A one-line energy summary: `V=0.123 (syn 0.1, log 0.02)`.
---@param energy keel.proto.Energy?
---@return string?
function M.energy_text(energy)
  if type(energy) ~= 'table' then
    return nil
  end
  local parts = {}
  for _, name in ipairs({ 'syn', 'str', 'log', 'boot', 'sheaf' }) do
    local value = energy['v_' .. name]
    if value ~= 0 then
      parts[#parts + 1] = string.format('%s %.3g', name, value)
    end
  end
  local text = string.format('V=%.3g', energy.v)
  if #parts > 0 then
    text = text .. ' (' .. table.concat(parts, ', ') .. ')'
  end
  return text
end

return M
