-- What happens when the server tells us something: keel/sessionChanged,
-- keel/bundleProposed, a buffer attaching, the client exiting.

local compat = require('keel.compat')
local config = require('keel.config')
local format = require('keel.format')
local log = require('keel.log')
local protocol = require('keel.protocol')
local session = require('keel.session')
local signs = require('keel.signs')

local M = {}

local state = {
  ---@type string? the last milestone shown (see format.milestone), to show only news
  last_milestone = nil,
}

---@param client_id integer?
---@return string?
local function root_of(client_id)
  local client = client_id and vim.lsp.get_client_by_id(client_id)
  return require('keel.client').root_of(client)
end

---Record a summary (from status or keel/sessionChanged) and update what depends on it.
---@param summary any
---@param client_id integer?
---@return string[] gone ids of bundles no longer pending
---@return string? err why the summary was refused (logged)
function M.apply_summary(summary, client_id)
  local gone, err = session.on_summary(summary, root_of(client_id))
  if not gone then
    log.warn('ignored a session summary that does not match the protocol: %s', err)
    return {}, err
  end
  if #gone > 0 then
    require('keel.review').bundles_gone(gone)
    for _, id in ipairs(gone) do
      require('keel.preview').restore(id)
    end
  end
  signs.refresh()
  return gone
end

---`keel/sessionChanged`: the summary, as status returns it.
---@param summary table?
---@param client_id integer?
function M.session_changed(summary, client_id)
  local _, err = M.apply_summary(summary, client_id)
  if err then
    return
  end
  local milestone, bad = format.milestone(summary)
  local line = format.summary_line(summary, #session.pending())
  log.debug('session changed: %s', line)
  if config.get().notify.session and milestone and milestone ~= state.last_milestone then
    state.last_milestone = milestone
    log.notify(bad and vim.log.levels.WARN or vim.log.levels.INFO, line)
  end
  compat.fire_user('KeelSessionChanged', { client_id = client_id, summary = summary })
end

---Fetch and cache a bundle's proposed contents, then refresh the marks.
---@param bundle keel.Bundle
---@param client_id integer?
---@param callback fun(err: string?, files: keel.DiffFile[]?)?
function M.fetch_diff(bundle, client_id, callback)
  local client = client_id and vim.lsp.get_client_by_id(client_id) or nil
  require('keel.client').exec('diff', { bundleId = bundle.bundleId }, function(err, result)
    local files = {}
    if not err then
      local diff
      diff, err = protocol.check('DiffResult', result)
      if diff then
        files, err = protocol.check_list('DiffFile', diff.files)
        for _, file in ipairs(files or {}) do
          local _, hunk_err = protocol.check_list('DiffHunk', file.hunks)
          if hunk_err then
            files, err = nil, hunk_err .. ' of ' .. tostring(file.path)
            break
          end
        end
        files = files or {}
      end
    end
    if not err then
      session.set_diff(bundle.bundleId, files)
      if #bundle.files == 0 then
        for _, file in ipairs(files) do
          bundle.files[#bundle.files + 1] = file.uri
        end
      end
      signs.refresh()
      require('keel.review').bundle_diffed(bundle, files, client_id)
    end
    if callback then
      callback(err, files)
    elseif err then
      log.warn('diff of %s: %s', bundle.bundleId, err)
    end
  end, { client = client })
end

---`keel/bundleProposed`: `{bundleId, nodeId, title, files, energy, sessionId}`.
---@param params any
---@param client_id integer?
function M.bundle_proposed(params, client_id)
  local bundle, err = session.on_bundle_proposed(params)
  if not bundle then
    log.warn('ignored a keel/bundleProposed that does not match the protocol: %s', err)
    return
  end
  if config.get().notify.bundles then
    log.notify(
      vim.log.levels.INFO,
      'bundle proposed: ' .. format.bundle_label(bundle) .. '; :Keel diff to review'
    )
  end
  M.fetch_diff(bundle, client_id)
  -- The server measures V_syn from what we forward: give it the current state now.
  require('keel.diagnostics').forward_files(bundle.files)
  compat.fire_user('KeelBundleProposed', { client_id = client_id, bundle = bundle })
end

---A buffer attached to a Keel client.
---@param bufnr integer
function M.buffer_attached(bufnr)
  signs.refresh_buf(bufnr)
end

---A Keel client exited.
---@param _ integer client id
function M.client_exited(_)
  if #require('keel.client').all() == 0 then
    session.reset()
    require('keel.progress').reset()
    signs.refresh()
    state.last_milestone = nil
  end
end

return M
