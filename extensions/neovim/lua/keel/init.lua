-- keel.nvim: the public API. `require('keel').setup(opts)` is the only entry point
-- that changes anything; the commands work without it, with the defaults.

local M = {}

local state = {
  setup_done = false,
  ---@type integer?
  augroup = nil,
}

---Configure Keel: validate `opts`, merge them over the defaults, and (with `autostart`)
---start the server for buffers under a workspace root. Invalid options are reported and
---fall back to their defaults. Calling it again replaces the configuration.
---@param opts keel.Options?
---@return keel.Config config the configuration in force
function M.setup(opts)
  local config = require('keel.config')
  local log = require('keel.log')
  local cfg, errors = config.set(opts)
  log.configure(cfg.log)
  if #errors > 0 then
    log.notify(vim.log.levels.ERROR, 'setup: ' .. table.concat(errors, '; '))
  end
  state.setup_done = true
  state.augroup = vim.api.nvim_create_augroup('keel', { clear = true })
  local diagnostics = require('keel.diagnostics')
  if cfg.diagnostics.forward then
    diagnostics.enable()
  else
    diagnostics.disable()
  end
  vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile', 'FileType' }, {
    group = state.augroup,
    desc = 'Keel: attach file buffers, mark pending changes',
    callback = function(args)
      vim.schedule(function()
        if cfg.autostart then
          require('keel.client').autostart(args.buf)
        end
        require('keel.signs').refresh_buf(args.buf)
      end)
    end,
  })
  if cfg.autostart then
    for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(bufnr) then
        require('keel.client').autostart(bufnr)
      end
    end
  end
  return cfg
end

---True once `setup()` ran.
---@return boolean
function M.is_setup()
  return state.setup_done
end

---Start a session with `task` (`keel.server.startSession`).
---@param task string
---@param opts { mode: keel.Mode?, callback: keel.Callback? }?
function M.start(task, opts)
  require('keel.actions').start(task, opts)
end

---Explore and plan `task` like a session (`keel.server.plan`) and show the plan in a
---scratch buffer; nothing is changed. `opts.quiet` skips the buffer; the callback gets
---`{task, plan, invalidAttempts, explore, markdown}`.
---@param task string
---@param opts { callback: keel.Callback?, quiet: boolean? }?
function M.plan(task, opts)
  require('keel.actions').plan(task, opts)
end

---A read-only answer to `question` citing path:line (`keel.server.explain`), in a scratch
---buffer. The callback gets `{question, answer, citations, dropped, explore, markdown}`.
---@param question string
---@param opts { callback: keel.Callback?, quiet: boolean? }?
function M.explain(question, opts)
  require('keel.actions').explain(question, opts)
end

---Approve a bundle: `opts.bundle_id`, or the one touching the current buffer, or one
---picked with `vim.ui.select`. `opts.files` approves only those file URIs, `opts.hunks`
---only those hunks (ids of `keel.server.diff`).
---@param opts keel.ActionOpts?
function M.approve(opts)
  require('keel.actions').approve(opts)
end

---Reject a bundle, with an optional reason.
---@param reason string?
---@param opts keel.ActionOpts?
function M.reject(reason, opts)
  opts = vim.tbl_extend('force', opts or {}, { reason = reason })
  require('keel.actions').reject(opts)
end

---Reject, asking for the reason with `vim.ui.input` (what `<Plug>(keel-reject)` does).
function M.reject_prompt()
  vim.ui.input({ prompt = 'Keel: reason for rejecting (optional): ' }, function(reason)
    if reason ~= nil then
      M.reject(reason ~= '' and reason or nil)
    end
  end)
end

---Send correction feedback for a bundle; its node regenerates with it.
---@param feedback string
---@param opts keel.ActionOpts?
function M.correct(feedback, opts)
  require('keel.actions').correct(feedback, opts)
end

---Open the review (diff) view of a bundle.
---@param opts keel.ActionOpts?
function M.diff(opts)
  require('keel.actions').diff(opts)
end

---Preview a bundle in place: its proposed content in the files' own buffers (unsaved),
---so your language servers check it and Keel gets their diagnostics. Approving keeps
---it; rejecting restores the original text.
---@param opts keel.ActionOpts?
function M.preview(opts)
  require('keel.actions').preview(opts)
end

---Show the session summary (`keel.server.status`).
---@param opts { callback: keel.Callback?, quiet: boolean? }?
function M.status(opts)
  require('keel.actions').status(opts)
end

---Show recent ledger entries.
---@param opts { limit: integer?, callback: keel.Callback?, quiet: boolean? }?
function M.ledger(opts)
  require('keel.actions').ledger(opts)
end

---Roll back a ledger entry with a revert commit.
---@param entry string
---@param opts { callback: keel.Callback? }?
function M.rollback(entry, opts)
  require('keel.actions').rollback(entry, opts)
end

---Abort the running session.
---@param opts { callback: keel.Callback? }?
function M.abort(opts)
  require('keel.actions').abort(opts)
end

---Resume a session (the last one when `session_id` is nil).
---@param session_id string?
---@param opts { callback: keel.Callback? }?
function M.resume(session_id, opts)
  require('keel.actions').resume(session_id, opts)
end

---Show Keel's hover (the energy report) at the cursor, from the Keel server alone.
---@param opts { callback: keel.Callback?, quiet: boolean? }?
function M.hover(opts)
  require('keel.actions').hover(opts)
end

---Pending bundles known to the plugin (from notifications and the last status).
---@return keel.Bundle[]
function M.pending()
  return require('keel.session').pending()
end

---A short text for statuslines: progress, else pending bundles, else ''.
---@return string
function M.statusline()
  local progress = require('keel.progress').current()
  if progress then
    return 'Keel: ' .. progress
  end
  local pending = #require('keel.session').pending()
  if pending > 0 then
    return pending == 1 and 'Keel: 1 pending' or ('Keel: ' .. pending .. ' pending')
  end
  return ''
end

---Stop the Keel servers.
function M.stop()
  require('keel.client').stop()
end

return M
