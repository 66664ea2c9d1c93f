-- The review view of `:Keel diff`: a tab with the current file on the left and a
-- scratch buffer with the proposed content on the right, both in diff mode, one file
-- of the bundle at a time. Buffer-local mappings and commands in the proposed buffer
-- approve or reject the file shown or the whole bundle.
--
-- Deciding on one file decides the bundle: `a` approves that file and `r` rejects it
-- (`keel.server.approve` / `keel.server.reject` with `files`); the server verifies the
-- other files again and proposes them as a new bundle, so the view of the old one closes
-- and the message names the files left pending. `r` on the only file left, and `R`,
-- reject the bundle; `A` approves every file of it.
--
-- Deciding on one hunk (`ga`, `gr`, the `<Plug>(keel-hunk-*)` mappings) is the same with
-- `hunks`: the rest comes back as a new bundle whose hunks keep their ids, and the view
-- follows it: it opens on the new bundle, at the hunk after the one decided.

local compat = require('keel.compat')
local config = require('keel.config')
local hunks = require('keel.hunks')
local log = require('keel.log')
local util = require('keel.util')

local M = {}

---@class keel.ReviewView
---@field bundle keel.Bundle
---@field files keel.DiffFile[]
---@field index integer
---@field tab integer
---@field left integer window of the current file
---@field right integer window of the proposed content
---@field client_id integer?
---@field root string?

---@class keel.ReviewFollow After a decision on some hunks: the bundle the rest comes in.
---@field from string the bundle decided on
---@field ids table<string, boolean> the hunks left pending
---@field uri string the file shown
---@field next_id string? the hunk to show first
---@field client_id integer?
---@field root string?

local state = {
  ---@type keel.ReviewView?
  view = nil,
  ---@type keel.ReviewFollow?
  follow = nil,
}

---@return keel.ReviewView?
function M.view()
  return state.view
end

---@param view keel.ReviewView
---@return keel.DiffFile
local function current_file(view)
  return view.files[view.index]
end

---The hunks of a file of `keel.server.diff` (events.fetch_diff refuses a file without them;
---a caller of M.open may pass none).
---@param file keel.DiffFile
---@return keel.proto.DiffHunk[]
local function hunks_of(file)
  local list = compat.value(file.hunks)
  return type(list) == 'table' and list or {}
end

---@param win integer
---@param cmd string
local function in_win(win, cmd)
  if vim.api.nvim_win_is_valid(win) then
    vim.api.nvim_win_call(win, function()
      vim.cmd(cmd)
    end)
  end
end

---@param view keel.ReviewView
---@return string
local function hint(view)
  local km = config.get().review.keymaps
  local parts = {}
  for _, pair in ipairs({
    { 'next_hunk', 'next hunk' },
    { 'approve_hunk', 'approve hunk' },
    { 'reject_hunk', 'reject hunk' },
    { 'approve_file', 'approve file' },
    { 'approve', 'approve bundle' },
    { 'reject_file', 'reject file' },
    { 'reject', 'reject bundle' },
    { 'next_file', 'next file' },
    { 'close', 'close' },
  }) do
    if km[pair[1]] then
      parts[#parts + 1] = km[pair[1]] .. ' ' .. pair[2]
    end
  end
  local file = current_file(view)
  local rel = util.relative(util.fname(file.uri), view.root)
  local count = #hunks_of(file)
  return string.format(
    '%s: file %d/%d %s (%d hunk%s) | %s',
    view.bundle.title or view.bundle.bundleId,
    view.index,
    #view.files,
    rel,
    count,
    count == 1 and '' or 's',
    table.concat(parts, ', ')
  )
end

---@param buf integer
local function set_mappings(buf)
  local km = config.get().review.keymaps
  local actions = {
    approve_file = { M.approve_file, 'Keel: approve this file' },
    approve = { M.approve_bundle, 'Keel: approve the bundle' },
    reject_file = {
      function()
        M.reject_file(nil, true)
      end,
      'Keel: reject this file',
    },
    reject = {
      function()
        M.reject_bundle(nil, true)
      end,
      'Keel: reject the bundle',
    },
    next_file = {
      function()
        M.step(1)
      end,
      'Keel: next file',
    },
    prev_file = {
      function()
        M.step(-1)
      end,
      'Keel: previous file',
    },
    close = { M.quit, 'Keel: close the review' },
    next_hunk = {
      function()
        M.hunk_step(1)
      end,
      'Keel: next hunk',
    },
    prev_hunk = {
      function()
        M.hunk_step(-1)
      end,
      'Keel: previous hunk',
    },
    approve_hunk = { M.approve_hunk, 'Keel: approve the hunk at the cursor' },
    reject_hunk = {
      function()
        M.reject_hunk(nil, true)
      end,
      'Keel: reject the hunk at the cursor',
    },
    preview_hunk = { M.preview_hunk, 'Keel: show the hunk at the cursor' },
  }
  for name, action in pairs(actions) do
    local lhs = km[name]
    if lhs then
      vim.keymap.set('n', lhs, action[1], { buffer = buf, nowait = true, desc = action[2] })
    end
  end
  local commands = {
    KeelApproveFile = { M.approve_file, 'Approve the file shown' },
    KeelApproveBundle = { M.approve_bundle, 'Approve the bundle' },
    KeelReviewClose = { M.quit, 'Close the review' },
    KeelApproveHunk = { M.approve_hunk, 'Approve the hunk at the cursor' },
    KeelPreviewHunk = { M.preview_hunk, 'Show the hunk at the cursor' },
  }
  for name, command in pairs(commands) do
    vim.api.nvim_buf_create_user_command(buf, name, function()
      command[1]()
    end, { desc = 'Keel: ' .. command[2] })
  end
  vim.api.nvim_buf_create_user_command(buf, 'KeelRejectFile', function(o)
    M.reject_file(o.args ~= '' and o.args or nil, false)
  end, { nargs = '?', desc = 'Keel: reject the file shown [reason]' })
  vim.api.nvim_buf_create_user_command(buf, 'KeelRejectBundle', function(o)
    M.reject_bundle(o.args ~= '' and o.args or nil, false)
  end, { nargs = '?', desc = 'Keel: reject the bundle [reason]' })
  vim.api.nvim_buf_create_user_command(buf, 'KeelRejectHunk', function(o)
    M.reject_hunk(o.args ~= '' and o.args or nil, false)
  end, { nargs = '?', desc = 'Keel: reject the hunk at the cursor [reason]' })
end

---@param view keel.ReviewView
---@param file keel.DiffFile
---@param filetype string
---@return integer
local function proposed_buffer(view, file, filetype)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].swapfile = false
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, util.lines(file.after))
  vim.bo[buf].modifiable = false
  local rel = util.relative(util.fname(file.uri), view.root)
  local name = string.format('keel://%s/%s', view.bundle.bundleId, rel)
  if not pcall(vim.api.nvim_buf_set_name, buf, name) then
    pcall(vim.api.nvim_buf_set_name, buf, name .. '#' .. buf)
  end
  vim.b[buf].keel_review = {
    bundleId = view.bundle.bundleId,
    uri = file.uri,
    client_id = view.client_id,
  }
  if filetype ~= '' then
    vim.bo[buf].filetype = filetype
  end
  set_mappings(buf)
  hunks.place(buf, hunks_of(file), 'new')
  return buf
end

---An empty scratch buffer standing for a file the bundle creates. Opening the file itself
---would make a buffer the language server is told about (`didOpen` of an empty text),
---which it must take for the user's unsaved edit of a file that does not exist yet.
---@param view keel.ReviewView
---@param file keel.DiffFile
---@param path string
---@return integer
local function absent_buffer(view, file, path)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.bo[buf].bufhidden = 'wipe'
  vim.bo[buf].swapfile = false
  vim.bo[buf].modifiable = false
  local rel = util.relative(util.fname(file.uri), view.root)
  local name = string.format('keel://%s/%s (new file)', view.bundle.bundleId, rel)
  if not pcall(vim.api.nvim_buf_set_name, buf, name) then
    pcall(vim.api.nvim_buf_set_name, buf, name .. '#' .. buf)
  end
  if vim.fn.has('nvim-0.8') == 1 then -- 0.7's vim.filetype.match takes a buffer instead
    local ok, filetype = pcall(vim.filetype.match, { filename = path })
    if ok and type(filetype) == 'string' and filetype ~= '' then
      vim.bo[buf].filetype = filetype
    end
  end
  return buf
end

---Show file `index` of the open view.
---@param index integer
function M.show(index)
  local view = state.view
  if not view then
    return
  end
  if not vim.api.nvim_win_is_valid(view.left) or not vim.api.nvim_win_is_valid(view.right) then
    M.close()
    return
  end
  view.index = index
  local file = current_file(view)
  in_win(view.left, 'diffoff')
  in_win(view.right, 'diffoff')
  local path = util.fname(file.uri)
  local real
  if vim.fn.filereadable(path) == 1 or vim.fn.bufloaded(path) == 1 then
    real = vim.fn.bufadd(path)
    vim.fn.bufload(real)
    vim.bo[real].buflisted = true
  else
    real = absent_buffer(view, file, path)
  end
  vim.api.nvim_win_set_buf(view.left, real)
  local proposed = proposed_buffer(view, file, vim.bo[real].filetype)
  vim.api.nvim_win_set_buf(view.right, proposed)
  in_win(view.left, 'diffthis')
  in_win(view.right, 'diffthis')
  if vim.bo[real].buftype == '' then
    require('keel.signs').refresh_buf(real)
  end
  -- One line at most: a longer echo would stop at a hit-enter prompt.
  local text = 'Keel ' .. hint(view)
  local space = math.max(vim.v.echospace, 2)
  if vim.fn.strdisplaywidth(text) > space then
    text = vim.fn.strcharpart(text, 0, space - 1) .. '…'
  end
  vim.api.nvim_echo({ { text, 'None' } }, false, {})
end

---Open the review of `bundle` with its `keel.server.diff` files, at file `at.index`
---(default 1) with the cursor on line `at.line` of the proposed side.
---@param bundle keel.Bundle
---@param files keel.DiffFile[]
---@param client_id integer?
---@param root string?
---@param at { index: integer?, line: integer? }?
function M.open(bundle, files, client_id, root, at)
  if #files == 0 then
    log.notify(vim.log.levels.WARN, 'bundle ' .. bundle.bundleId .. ' changes no file')
    return
  end
  M.close()
  vim.cmd('tabnew')
  local tab = vim.api.nvim_get_current_tabpage()
  local left = vim.api.nvim_get_current_win()
  vim.bo[vim.api.nvim_get_current_buf()].bufhidden = 'wipe'
  vim.cmd(config.get().review.layout == 'vertical' and 'rightbelow vsplit' or 'rightbelow split')
  local right = vim.api.nvim_get_current_win()
  state.view = {
    bundle = bundle,
    files = files,
    index = 1,
    tab = tab,
    left = left,
    right = right,
    client_id = client_id,
    root = root,
  }
  local index = at and at.index or 1
  M.show(index)
  vim.api.nvim_set_current_win(right)
  if at and at.line and vim.api.nvim_win_is_valid(right) then
    local last = vim.api.nvim_buf_line_count(vim.api.nvim_win_get_buf(right))
    vim.api.nvim_win_set_cursor(right, { math.max(1, math.min(at.line, last)), 0 })
  end
end

---Close the review (diff mode off, its tab closed, scratch buffers wiped).
function M.close()
  local view = state.view
  state.view = nil
  if not view then
    return
  end
  in_win(view.left, 'diffoff')
  if vim.api.nvim_tabpage_is_valid(view.tab) then
    if #vim.api.nvim_list_tabpages() > 1 then
      local number = vim.api.nvim_tabpage_get_number(view.tab)
      vim.cmd('tabclose ' .. number)
    elseif vim.api.nvim_win_is_valid(view.right) then
      vim.api.nvim_win_close(view.right, true)
    end
  end
end

---Close the review at the user's word (`q`, :KeelReviewClose): it no longer follows the
---rest of a bundle decided hunk by hunk either.
function M.quit()
  state.follow = nil
  M.close()
end

---Show the next (`delta` 1) or previous (-1) file.
---@param delta integer
function M.step(delta)
  local view = state.view
  if not view then
    return
  end
  local count = #view.files
  M.show(((view.index - 1 + delta) % count) + 1)
end

---Approve the file shown (`keel.server.approve` with `files = {uri}`; the whole bundle
---when it is the only file). The view closes: the other files come back as a new bundle.
function M.approve_file()
  local view = state.view
  if not view then
    return
  end
  local file = current_file(view)
  require('keel.actions').approve({
    bundle_id = view.bundle.bundleId,
    files = #view.files > 1 and { file.uri } or nil,
    callback = function(err)
      if not err and state.view == view then
        M.close()
      end
    end,
  })
end

---Send `keel.server.reject` for the view's bundle (only `files`, when given) and close the
---view once the server took it. With `ask`, asks for the optional reason first (`prompt`);
---cancelling the prompt sends nothing.
---@param view keel.ReviewView
---@param files string[]?
---@param reason string?
---@param ask boolean?
---@param prompt string
local function send_reject(view, files, reason, ask, prompt)
  ---@param text string?
  local function send(text)
    require('keel.actions').reject({
      bundle_id = view.bundle.bundleId,
      files = files,
      reason = text,
      callback = function(err)
        if not err and state.view == view then
          M.close()
        end
      end,
    })
  end
  if not ask then
    send(reason)
    return
  end
  vim.ui.input({ prompt = prompt }, function(input)
    if input ~= nil then
      send(input ~= '' and input or nil)
    end
  end)
end

---Reject the bundle, asking for a reason when `ask`.
---@param reason string?
---@param ask boolean?
function M.reject_bundle(reason, ask)
  local view = state.view
  if view then
    send_reject(view, nil, reason, ask, 'Keel: reason for rejecting (optional): ')
  end
end

---Approve the bundle: every file of it.
function M.approve_bundle()
  local view = state.view
  if not view then
    return
  end
  require('keel.actions').approve({
    bundle_id = view.bundle.bundleId,
    callback = function(err)
      if not err and state.view == view then
        M.close()
      end
    end,
  })
end

---Reject the file shown (`keel.server.reject` with `files = {uri}`): its change is dropped
---and the server verifies the other files again and proposes them as a new bundle; the
---view of this one closes. On the only file of the bundle it rejects the bundle. With
---`ask`, asks for the (optional) reason first; cancelling the prompt does nothing.
---@param reason string?
---@param ask boolean?
function M.reject_file(reason, ask)
  local view = state.view
  if not view then
    return
  end
  if #view.files == 1 then
    M.reject_bundle(reason, ask)
    return
  end
  local file = current_file(view)
  local rel = util.relative(util.fname(file.uri), view.root)
  local prompt = 'Keel: reason for rejecting ' .. rel .. ' (optional): '
  send_reject(view, { file.uri }, reason, ask, prompt)
end

local function no_view()
  log.notify(vim.log.levels.WARN, 'not in a Keel review: open one with :Keel diff')
end

---The window whose cursor picks the hunk, and its side: the current file's window (base
---lines), else the proposed side.
---@param view keel.ReviewView
---@return integer win
---@return keel.HunkSide side
local function cursor_side(view)
  if vim.api.nvim_get_current_win() == view.left then
    return view.left, 'old'
  end
  return view.right, 'new'
end

---The hunk at the cursor of the view's file.
---@param view keel.ReviewView
---@return keel.proto.DiffHunk? hunk
---@return integer|string index, or why there is none
local function cursor_hunk(view)
  local file = current_file(view)
  local list = hunks_of(file)
  local rel = util.relative(util.fname(file.uri), view.root)
  if #list == 0 then
    return nil,
      rel .. ' has no hunks from this server (it predates per-hunk review): decide on the file'
  end
  local win, side = cursor_side(view)
  local line = vim.api.nvim_win_get_cursor(win)[1]
  local index = hunks.at(list, side, line)
  if not index then
    local key = config.get().review.keymaps.next_hunk or '<Plug>(keel-hunk-next)'
    return nil, string.format('no hunk at line %d of %s; %s goes to the next', line, rel, key)
  end
  return list[index], index
end

---Move the cursor to the next (`delta` 1) or previous (-1) hunk of the file shown,
---wrapping around; the message names it, e.g. "hunk 2/3 @@ -4,2 +4,3 @@".
---@param delta 1|-1
function M.hunk_step(delta)
  local view = state.view
  if not view then
    return no_view()
  end
  local list = hunks_of(current_file(view))
  local win, side = cursor_side(view)
  local line = vim.api.nvim_win_get_cursor(win)[1]
  local index, wrapped = hunks.step(list, side, line, delta)
  if not index then
    local _, why = cursor_hunk(view)
    log.notify(vim.log.levels.WARN, tostring(why))
    return
  end
  local first = hunks.range(list[index], side)
  local last = vim.api.nvim_buf_line_count(vim.api.nvim_win_get_buf(win))
  vim.api.nvim_win_set_cursor(win, { math.min(first, last), 0 })
  vim.api.nvim_echo({
    {
      string.format(
        'Keel: hunk %d/%d %s%s',
        index,
        #list,
        list[index].header,
        wrapped and ' (wrapped around)' or ''
      ),
      'None',
    },
  }, false, {})
end

---Show the hunk at the cursor in a float: its header, removed (`-`) and added (`+`) lines.
---@return integer? bufnr of the float
---@return integer? winid
function M.preview_hunk()
  local view = state.view
  if not view then
    return no_view()
  end
  local hunk, why = cursor_hunk(view)
  if not hunk then
    log.notify(vim.log.levels.WARN, tostring(why))
    return
  end
  local buf, win = vim.lsp.util.open_floating_preview(
    hunks.preview_lines(hunk),
    'diff',
    { focus_id = 'keel_hunk_preview', border = 'single' }
  )
  vim.bo[buf].filetype = 'diff' -- 0.7 sets only 'syntax'
  return buf, win
end

---The hunks of the view's bundle other than `chosen`, named per file for the message
---("greet.py (1 hunk)"), and the one to show next: the one after `chosen` in its file,
---else the one before it, else the first one left.
---@param view keel.ReviewView
---@param chosen keel.proto.DiffHunk
---@return string[] named
---@return table<string, boolean> ids
---@return string? next_id
local function rest_after(view, chosen)
  local named, ids, next_id, first = {}, {}, nil, nil
  for i, file in ipairs(view.files) do
    local count = 0
    local list = hunks_of(file)
    for j, hunk in ipairs(list) do
      if hunk.id ~= chosen.id then
        ids[hunk.id] = true
        count = count + 1
        first = first or hunk.id
      elseif i == view.index then
        local after, before = list[j + 1], list[j - 1]
        next_id = (after and after.id) or (before and before.id) or nil
      end
    end
    if count > 0 then
      named[#named + 1] = string.format(
        '%s (%d hunk%s)',
        util.relative(util.fname(file.uri), view.root),
        count,
        count == 1 and '' or 's'
      )
    end
  end
  return named, ids, next_id or first
end

---Decide on the hunk at the cursor: `keel.server.approve` / `keel.server.reject` with
---`hunks = {id}`. The view closes once the server took it, and follows the rest (see
---M.bundle_diffed).
---@param decision 'approve'|'reject'
---@param reason string?
---@param ask boolean?
local function decide_hunk(decision, reason, ask)
  local view = state.view
  if not view then
    return no_view()
  end
  local hunk, why = cursor_hunk(view)
  if not hunk then
    log.notify(vim.log.levels.WARN, tostring(why))
    return
  end
  local file = current_file(view)
  local rel = util.relative(util.fname(file.uri), view.root)
  local what = 'hunk ' .. hunks.label(hunk, rel)
  local named, ids, next_id = rest_after(view, hunk)
  local bundle_id = view.bundle.bundleId
  ---@param text string?
  local function send(text)
    state.follow = next(ids)
        and {
          from = bundle_id,
          ids = ids,
          uri = file.uri,
          next_id = next_id,
          client_id = view.client_id,
          root = view.root,
        }
      or nil
    local opts = {
      bundle_id = bundle_id,
      hunks = { hunk.id },
      what = what,
      rest = named,
      reason = text,
      callback = function(err)
        if err then
          if state.follow and state.follow.from == bundle_id then
            state.follow = nil
          end
        elseif state.view == view then
          M.close()
        end
      end,
    }
    if decision == 'approve' then
      require('keel.actions').approve(opts)
    else
      require('keel.actions').reject(opts)
    end
  end
  if decision == 'approve' or not ask then
    send(reason)
    return
  end
  vim.ui.input(
    { prompt = 'Keel: reason for rejecting ' .. what .. ' (optional): ' },
    function(input)
      if input ~= nil then
        send(input ~= '' and input or nil)
      end
    end
  )
end

---Approve the hunk at the cursor: the server applies it alone to the base, verifies it
---as a bundle of its own and commits it; the other hunks come back as a new bundle.
function M.approve_hunk()
  decide_hunk('approve')
end

---Reject the hunk at the cursor (with `ask`, asking for the optional reason first; Esc
---sends nothing). The other hunks come back as a new bundle; the rejected lines and the
---reason reach the model the next time it works on the node.
---@param reason string?
---@param ask boolean?
function M.reject_hunk(reason, ask)
  decide_hunk('reject', reason, ask)
end

---After a decision on some hunks, what the view waits for (the bundle decided on and the
---hunk ids left), else nil.
---@return keel.ReviewFollow?
function M.following()
  return state.follow
end

---A bundle's `keel.server.diff` arrived. After a decision on some hunks, the bundle that
---carries the rest (one of the hunk ids left) is the one the review follows: it opens on
---it, at the hunk after the one decided.
---@param bundle keel.Bundle
---@param files keel.DiffFile[]
---@param client_id integer?
function M.bundle_diffed(bundle, files, client_id)
  local follow = state.follow
  if not follow or bundle.bundleId == follow.from then
    return
  end
  local matched, index, line = false, nil, nil
  for i, file in ipairs(files) do
    for _, hunk in ipairs(hunks_of(file)) do
      if follow.ids[hunk.id] then
        matched = true
      end
      if hunk.id == follow.next_id then
        index, line = i, (hunks.range(hunk, 'new'))
      end
    end
    if not index and util.key(file.uri) == util.key(follow.uri) then
      index = i
    end
  end
  if not matched then
    return
  end
  state.follow = nil
  M.open(bundle, files, client_id or follow.client_id, follow.root, { index = index, line = line })
end

---Close the view when its bundle is no longer pending.
---@param ids string[]
function M.bundles_gone(ids)
  local view = state.view
  if view and vim.tbl_contains(ids, view.bundle.bundleId) then
    M.close()
  end
end

return M
