-- The user's actions: each calls one `keel.server.*` command, reports the outcome
-- through vim.notify and calls `opts.callback(err, result)` when given.

local client = require('keel.client')
local compat = require('keel.compat')
local config = require('keel.config')
local events = require('keel.events')
local format = require('keel.format')
local log = require('keel.log')
local preview = require('keel.preview')
local protocol = require('keel.protocol')
local session = require('keel.session')
local signs = require('keel.signs')
local util = require('keel.util')

local M = {}

local state = {
  ---@type keel.LedgerEntry[]
  ledger = {},
  ---@type number hrtime (ms) of the last ledger fetch
  ledger_time = 0,
}

---@param err string?
---@param callback keel.Callback?
---@param result any?
local function finish(err, callback, result)
  if err then
    log.notify(vim.log.levels.ERROR, err)
  end
  if callback then
    callback(err, result)
  end
end

---Refresh the summary from the server in the background.
local function refresh_status()
  client.exec('status', {}, function(err, summary, c)
    if not err then
      events.apply_summary(summary, c and c.id)
    end
  end)
end

---The bundle a command acts on: `opts.bundle_id`; the bundle of the review view; the
---pending bundle whose files include the current buffer; the only pending bundle; else a
---`vim.ui.select` over the pending bundles of `keel.server.status`.
---@param opts keel.ActionOpts
---@param callback fun(bundle: keel.Bundle?, err: string?)
function M.pick_bundle(opts, callback)
  if opts.bundle_id then
    callback(session.bundle(opts.bundle_id) or { bundleId = opts.bundle_id, files = {} })
    return
  end
  local bufnr = vim.api.nvim_get_current_buf()
  local review = vim.b[bufnr].keel_review
  if type(review) == 'table' and review.bundleId then
    callback(
      session.bundle(review.bundleId) or { bundleId = review.bundleId, files = { review.uri } }
    )
    return
  end
  local uri = nil
  if vim.bo[bufnr].buftype == '' and vim.api.nvim_buf_get_name(bufnr) ~= '' then
    uri = util.buf_uri(bufnr)
  end
  client.exec('status', {}, function(err, summary, c)
    if err then
      log.warn('status failed, using the bundles already known: %s', err)
    else
      events.apply_summary(summary, c and c.id)
    end
    local candidates = uri and session.bundles_for(uri) or {}
    if #candidates == 1 then
      callback(candidates[1])
      return
    end
    if #candidates == 0 then
      candidates = session.pending()
    end
    if #candidates == 0 then
      callback(nil, 'no pending bundle')
      return
    end
    if #candidates == 1 then -- nothing to choose between
      callback(candidates[1])
      return
    end
    vim.ui.select(candidates, {
      prompt = 'Keel: which bundle?',
      format_item = format.bundle_label,
      kind = 'keel.bundle',
    }, function(choice)
      if choice then
        callback(choice)
      else
        callback(nil, 'no bundle chosen')
      end
    end)
  end)
end

---Files a bundle touches: what the notification said, else what the diff said.
---@param bundle keel.Bundle
---@return string[]
local function bundle_files(bundle)
  if #bundle.files > 0 then
    return bundle.files
  end
  local out = {}
  for _, file in ipairs(session.diff(bundle.bundleId) or {}) do
    out[#out + 1] = file.uri
  end
  return out
end

---The files of `all` that `chosen` leaves out, as paths relative to `root`.
---@param all string[] file URIs
---@param chosen string[] file URIs
---@param root string?
---@return string[]
local function left_out(all, chosen, root)
  local picked = {}
  for _, uri in ipairs(chosen) do
    picked[util.key(uri)] = true
  end
  local out = {}
  for _, uri in ipairs(all) do
    if not picked[util.key(uri)] then
      out[#out + 1] = util.relative(util.fname(uri), root)
    end
  end
  return out
end

---`uris` as paths relative to `root`, joined for a message.
---@param uris string[]
---@param root string?
---@return string
local function names(uris, root)
  local out = {}
  for _, uri in ipairs(uris) do
    out[#out + 1] = util.relative(util.fname(uri), root)
  end
  return table.concat(out, ', ')
end

---What a partial decision leaves: the other files, named, and what becomes of them.
---@param rest string[] relative paths
---@return string
local function pending_note(rest)
  if #rest == 0 then
    return ''
  end
  return '; left pending: '
    .. table.concat(rest, ', ')
    .. ' (verified again and proposed as a new bundle)'
end

---An older server's answer to `hunks` (pydantic refuses the key it does not know), said
---plainly; other errors as they are.
---@param err string
---@param verb 'approve'|'reject'
---@return string
local function hunks_refused(err, verb)
  if err:find('hunks', 1, true) and err:lower():find('extra inputs', 1, true) then
    return 'this Keel server cannot '
      .. verb
      .. ' single hunks (its keel.server.'
      .. verb
      .. ' takes no `hunks`; update Keel): nothing was '
      .. (verb == 'approve' and 'approved' or 'rejected')
      .. '. Decide on the file or the whole bundle'
  end
  return err
end

---How a message names the hunks of `opts`: `opts.what`, else their ids.
---@param opts { hunks: string[]?, what: string? }
---@return string
local function hunks_named(opts)
  if opts.what then
    return opts.what
  end
  local hunks = opts.hunks or {}
  return (#hunks == 1 and 'hunk ' or 'hunks ') .. table.concat(hunks, ', ')
end

---Start a session with `task`.
---@param task string
---@param opts { mode: keel.Mode?, callback: keel.Callback? }?
function M.start(task, opts)
  opts = opts or {}
  if type(task) ~= 'string' or vim.trim(task) == '' then
    finish('start needs a task, e.g. :Keel start Add a --verbose flag', opts.callback)
    return
  end
  local argument = { task = vim.trim(task) }
  local mode = opts.mode or config.get().mode
  if mode then
    argument.mode = mode
  end
  client.exec('startSession', argument, function(err, result)
    if err then
      return finish(err, opts.callback)
    end
    local started, problem = protocol.check('SessionIdResult', result)
    if not started then
      return finish(problem, opts.callback)
    end
    session.set_session_id(started.sessionId)
    log.notify(
      vim.log.levels.INFO,
      'session ' .. started.sessionId .. ' started: ' .. argument.task
    )
    finish(nil, opts.callback, result)
  end)
end

---Approve a bundle (or some of its files). Approving some files decides the bundle: the
---server verifies the rest again and proposes it as a new bundle, so the message names the
---files left pending and the review view of the old bundle closes.
---@param opts keel.ActionOpts?
function M.approve(opts)
  opts = opts or {}
  M.pick_bundle(opts, function(bundle, pick_err)
    if not bundle then
      return finish(pick_err, opts.callback)
    end
    local argument = { bundleId = bundle.bundleId }
    if opts.hunks then
      argument.hunks = opts.hunks
    elseif opts.files then
      argument.files = opts.files
    end
    local all = bundle_files(bundle)
    local files = opts.files or all
    if opts.hunks then
      -- A preview shows the whole proposal; the approved hunks are only part of it. Their
      -- buffers get the user's text back first, then what the server writes.
      preview.restore(bundle.bundleId)
    else
      preview.set_approving(bundle.bundleId, true)
    end
    local modified = util.modified_buffers(files)
    client.exec('approve', argument, function(err, result, c)
      if err then
        preview.set_approving(bundle.bundleId, false)
        return finish(opts.hunks and hunks_refused(err, 'approve') or err, opts.callback)
      end
      -- The approved files keep the previewed text (the server wrote it); the files left
      -- pending get theirs back: their change comes again in a new bundle.
      if not opts.hunks then
        preview.forget(bundle.bundleId, files)
      end
      preview.restore(bundle.bundleId)
      local conflicts = util.sync_buffers(files, modified)
      session.forget(bundle.bundleId)
      signs.refresh()
      require('keel.review').bundles_gone({ bundle.bundleId })
      local root = client.root_of(c)
      local approved, problem = protocol.check('LedgerEntryResult', result)
      if problem then
        log.warn('keel.server.approve: %s', problem)
      end
      local entry = approved and approved.ledgerEntry
      local rest = opts.files and left_out(all, opts.files, root) or {}
      log.notify(
        vim.log.levels.INFO,
        string.format(
          'approved %s%s%s%s',
          opts.hunks and (hunks_named(opts) .. ' of ')
            or opts.files and (names(opts.files, root) .. ' of ')
            or '',
          format.bundle_label(bundle),
          entry and ('; ledger entry ' .. tostring(entry):sub(1, 12)) or '',
          opts.hunks and pending_note(opts.rest or {}) or pending_note(rest)
        )
      )
      for _, path in ipairs(conflicts) do
        log.notify(
          vim.log.levels.WARN,
          path .. ' has unsaved edits that differ from the approved file'
        )
      end
      refresh_status()
      finish(nil, opts.callback, result)
    end)
  end)
end

---Reject a bundle, or only some of its files (`opts.files`): the server drops those files'
---changes and verifies the rest again, proposing it as a new bundle. `files` naming every
---file of the bundle is the whole reject (sent without `files`).
---@param opts { bundle_id: string?, reason: string?, files: string[]?, hunks: string[]?, what: string?, rest: string[]?, callback: keel.Callback? }?
function M.reject(opts)
  opts = opts or {}
  M.pick_bundle(opts, function(bundle, pick_err)
    if not bundle then
      return finish(pick_err, opts.callback)
    end
    local argument = { bundleId = bundle.bundleId }
    if opts.reason and opts.reason ~= '' then
      argument.reason = opts.reason
    end
    local all = bundle_files(bundle)
    local files = opts.files
    if opts.hunks then
      argument.hunks = opts.hunks
      files = nil
    elseif files and #files > 0 and (#all == 0 or #left_out(all, files, nil) > 0) then
      argument.files = files
    else
      files = nil
    end
    client.exec('reject', argument, function(err, result, c)
      if err then
        if files and err:find('files', 1, true) and err:lower():find('extra inputs', 1, true) then
          err = 'this Keel server cannot reject single files (its keel.server.reject takes no'
            .. ' `files`; update Keel): nothing was rejected. Approve the other files, or'
            .. ' reject the whole bundle'
        end
        return finish(opts.hunks and hunks_refused(err, 'reject') or err, opts.callback)
      end
      session.forget(bundle.bundleId)
      preview.restore(bundle.bundleId)
      signs.refresh()
      require('keel.review').bundles_gone({ bundle.bundleId })
      local root = client.root_of(c)
      log.notify(
        vim.log.levels.INFO,
        string.format(
          'rejected %s%s%s',
          opts.hunks and (hunks_named(opts) .. ' of ')
            or files and (names(files, root) .. ' of ')
            or '',
          format.bundle_label(bundle),
          pending_note(opts.hunks and opts.rest or files and left_out(all, files, root) or {})
        )
      )
      refresh_status()
      finish(nil, opts.callback, result)
    end)
  end)
end

---Send correction feedback for a bundle; the node regenerates with it.
---@param feedback string
---@param opts keel.ActionOpts?
function M.correct(feedback, opts)
  opts = opts or {}
  if type(feedback) ~= 'string' or vim.trim(feedback) == '' then
    return finish('correct needs feedback, e.g. :Keel correct Use pathlib', opts.callback)
  end
  M.pick_bundle(opts, function(bundle, pick_err)
    if not bundle then
      return finish(pick_err, opts.callback)
    end
    local argument = { bundleId = bundle.bundleId, feedback = vim.trim(feedback) }
    client.exec('correct', argument, function(err, result)
      if err then
        return finish(err, opts.callback)
      end
      session.forget(bundle.bundleId)
      preview.restore(bundle.bundleId)
      signs.refresh()
      require('keel.review').bundles_gone({ bundle.bundleId })
      log.notify(vim.log.levels.INFO, 'sent the correction for ' .. format.bundle_label(bundle))
      finish(nil, opts.callback, result)
    end)
  end)
end

---Open the review view of a bundle.
---@param opts keel.ActionOpts?
function M.diff(opts)
  opts = opts or {}
  M.pick_bundle(opts, function(bundle, pick_err)
    if not bundle then
      return finish(pick_err, opts.callback)
    end
    local c = client.current()
    events.fetch_diff(bundle, c and c.id, function(err, files)
      if err then
        return finish(err, opts.callback)
      end
      require('keel.review').open(bundle, files or {}, c and c.id, client.root_of(c))
      finish(nil, opts.callback, files)
    end)
  end)
end

---Preview a bundle in place: its proposed content in the files' own buffers, unsaved,
---so other language servers check it and Keel gets their diagnostics as V_syn.
---@param opts keel.ActionOpts?
function M.preview(opts)
  opts = opts or {}
  M.pick_bundle(opts, function(bundle, pick_err)
    if not bundle then
      return finish(pick_err, opts.callback)
    end
    local c = client.current()
    events.fetch_diff(bundle, c and c.id, function(err, files)
      if err then
        return finish(err, opts.callback)
      end
      local shown = preview.apply(bundle, files or {}, c)
      signs.refresh()
      log.notify(
        vim.log.levels.INFO,
        string.format(
          'previewing %s in %d buffer(s); :Keel approve keeps it, :Keel reject restores',
          format.bundle_label(bundle),
          shown
        )
      )
      finish(nil, opts.callback, shown)
    end)
  end)
end

---Show the session summary.
---@param opts { callback: keel.Callback?, quiet: boolean? }?
function M.status(opts)
  opts = opts or {}
  client.exec('status', {}, function(err, summary, c)
    if err then
      return finish(err, opts.callback)
    end
    events.apply_summary(summary, c and c.id)
    if not opts.quiet then
      local lines = format.summary_lines(summary, session.pending())
      log.notify(vim.log.levels.INFO, table.concat(lines, '\n'))
    end
    finish(nil, opts.callback, summary)
  end)
end

---Show recent ledger entries.
---@param opts { limit: integer?, callback: keel.Callback?, quiet: boolean? }?
function M.ledger(opts)
  opts = opts or {}
  local limit = opts.limit or config.get().ledger_limit
  client.exec('ledger', { limit = limit }, function(err, result)
    if err then
      return finish(err, opts.callback)
    end
    local entries, problem = format.ledger_entries(result)
    if not entries then
      return finish(problem, opts.callback)
    end
    state.ledger = entries
    state.ledger_time = compat.uv.hrtime() / 1e6
    if not opts.quiet then
      local lines = { #entries == 0 and 'the ledger is empty' or 'ledger:' }
      for _, entry in ipairs(entries) do
        lines[#lines + 1] = '  ' .. format.ledger_line(entry)
      end
      log.notify(vim.log.levels.INFO, table.concat(lines, '\n'))
    end
    finish(nil, opts.callback, entries)
  end)
end

---Ledger entries for completion: the cached list, refreshed synchronously (500 ms at
---most) when older than 10 s and a client is running.
---@return keel.LedgerEntry[]
function M.ledger_cache()
  local age = compat.uv.hrtime() / 1e6 - state.ledger_time
  if age > 10000 then
    local c = client.for_buf(vim.api.nvim_get_current_buf()) or client.all()[1]
    if c then
      local response = compat.request_sync(c, 'workspace/executeCommand', {
        command = 'keel.server.ledger',
        arguments = { { limit = config.get().ledger_limit } },
      }, 500)
      if response and not response.err then
        state.ledger = format.ledger_entries(compat.value(response.result)) or state.ledger
        state.ledger_time = compat.uv.hrtime() / 1e6
      end
    end
  end
  return state.ledger
end

---Roll back a ledger entry (a revert commit, itself a ledger entry).
---@param entry string
---@param opts { callback: keel.Callback? }?
function M.rollback(entry, opts)
  opts = opts or {}
  if type(entry) ~= 'string' or vim.trim(entry) == '' then
    return finish('rollback needs a ledger entry (see :Keel ledger)', opts.callback)
  end
  local c = client.current()
  local root = client.root_of(c)
  local uris = root and util.buffers_under(root) or {}
  local modified = util.modified_buffers(uris)
  client.exec('rollback', { entry = vim.trim(entry) }, function(err, result)
    if err then
      return finish(err, opts.callback)
    end
    state.ledger_time = 0
    util.sync_buffers(uris, modified, { changed_only = true })
    local reverted, problem = protocol.check('LedgerEntryResult', result)
    if problem then
      log.warn('keel.server.rollback: %s', problem)
    end
    local sha = reverted and reverted.ledgerEntry
    log.notify(
      vim.log.levels.INFO,
      'rolled back ' .. vim.trim(entry) .. (sha and ('; revert ' .. tostring(sha):sub(1, 12)) or '')
    )
    finish(nil, opts.callback, result)
  end)
end

---Abort the running session.
---@param opts { callback: keel.Callback? }?
function M.abort(opts)
  opts = opts or {}
  client.exec('abort', {}, function(err, result)
    if err then
      return finish(err, opts.callback)
    end
    log.notify(vim.log.levels.INFO, 'session aborted')
    finish(nil, opts.callback, result)
  end)
end

---Resume a session (the last one when `session_id` is nil).
---@param session_id string?
---@param opts { callback: keel.Callback? }?
function M.resume(session_id, opts)
  opts = opts or {}
  local argument = {}
  if session_id and session_id ~= '' then
    argument.sessionId = session_id
  end
  client.exec('resume', argument, function(err, result)
    if err then
      return finish(err, opts.callback)
    end
    log.notify(
      vim.log.levels.INFO,
      'session ' .. (session_id or 'resumed') .. (session_id and ' resumed' or '')
    )
    finish(nil, opts.callback, result)
  end)
end

---The Keel hover (energy report) at the cursor, in a float.
---@param opts { callback: keel.Callback?, quiet: boolean? }?
function M.hover(opts)
  opts = opts or {}
  local bufnr = vim.api.nvim_get_current_buf()
  local c, err = client.current()
  if not c then
    return finish(err, opts.callback)
  end
  client.attach(bufnr, c)
  local cursor = vim.api.nvim_win_get_cursor(0)
  local line = vim.api.nvim_buf_get_lines(bufnr, cursor[1] - 1, cursor[1], false)[1] or ''
  local params = {
    textDocument = { uri = util.buf_uri(bufnr) },
    position = {
      line = cursor[1] - 1,
      character = compat.utf_index(line, c.offset_encoding or 'utf-16', cursor[2]),
    },
  }
  client.request('textDocument/hover', params, function(req_err, result)
    if req_err then
      return finish(req_err, opts.callback)
    end
    local contents = type(result) == 'table' and result.contents or nil
    local lines = contents and vim.lsp.util.convert_input_to_markdown_lines(contents) or {}
    if not opts.quiet then
      if #lines == 0 then
        log.notify(vim.log.levels.INFO, 'no energy report here')
      else
        vim.lsp.util.open_floating_preview(lines, 'markdown', { focus_id = 'keel_hover' })
      end
    end
    finish(nil, opts.callback, table.concat(lines, '\n'))
  end, { client = c, bufnr = bufnr })
end

---The current buffer's file URI when it is a normal file buffer (the server shows the model
---that file first), else nil.
---@return string?
local function current_file()
  local bufnr = vim.api.nvim_get_current_buf()
  if vim.bo[bufnr].buftype == '' and vim.api.nvim_buf_get_name(bufnr) ~= '' then
    return util.buf_uri(bufnr)
  end
  return nil
end

---Show `text` (Markdown) in a scratch buffer named `name` in a new split: not a file, not
---listed, wiped when hidden. A previous buffer of that name is replaced.
---@param name string e.g. `keel://plan`
---@param text string
---@return integer bufnr
function M.show_markdown(name, text)
  local old = vim.fn.bufnr('^' .. name .. '$')
  if old ~= -1 then
    vim.api.nvim_buf_delete(old, { force = true })
  end
  vim.cmd('new')
  local bufnr = vim.api.nvim_get_current_buf()
  vim.bo[bufnr].buftype = 'nofile'
  vim.bo[bufnr].bufhidden = 'wipe'
  vim.bo[bufnr].swapfile = false
  vim.bo[bufnr].buflisted = false
  vim.api.nvim_buf_set_name(bufnr, name)
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, util.lines(text))
  vim.bo[bufnr].modifiable = false
  vim.bo[bufnr].filetype = 'markdown'
  return bufnr
end

---Run a read-only mode (`plan` or `explain`) and show its Markdown in a scratch buffer.
---@param name 'plan'|'explain'
---@param key 'task'|'question'
---@param text string
---@param opts { callback: keel.Callback?, quiet: boolean? }
local function read_only(name, key, text, opts)
  if type(text) ~= 'string' or vim.trim(text) == '' then
    return finish(
      string.format(
        '%s needs a %s, e.g. :Keel %s %s',
        name,
        key,
        name,
        name == 'plan' and 'Add a --verbose flag' or 'How is a bundle approved?'
      ),
      opts.callback
    )
  end
  local argument = { [key] = vim.trim(text), file = current_file() }
  log.notify(vim.log.levels.INFO, name == 'plan' and 'planning...' or 'explaining...')
  client.exec(name, argument, function(err, result)
    if err then
      return finish(err, opts.callback)
    end
    local answer, problem =
      protocol.check(name == 'plan' and 'PlanResult' or 'ExplainResult', result)
    if not answer then
      return finish('keel.server.' .. name .. ': ' .. problem, opts.callback)
    end
    local markdown = answer.markdown
    if not opts.quiet then
      M.show_markdown('keel://' .. name, markdown)
    end
    finish(nil, opts.callback, result)
  end)
end

---Explore and plan `task` like a session, change nothing; the plan opens in a scratch buffer.
---@param task string
---@param opts { callback: keel.Callback?, quiet: boolean? }?
function M.plan(task, opts)
  read_only('plan', 'task', task, opts or {})
end

---A read-only answer to `question` (or about a symbol), citing path:line, in a scratch
---buffer.
---@param question string
---@param opts { callback: keel.Callback?, quiet: boolean? }?
function M.explain(question, opts)
  read_only('explain', 'question', question, opts or {})
end

return M
