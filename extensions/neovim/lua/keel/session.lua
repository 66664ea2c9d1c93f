-- What the plugin knows about the session: the latest summary (keel.server.status,
-- keel/sessionChanged), the pending bundles (keel/bundleProposed, status) and the
-- proposed contents fetched with keel.server.diff.
--
-- Every payload is read as the server sends it (keel.payloads, docs/reference/lsp.md),
-- checked with keel.protocol; one without its keys is refused with the reason.

local compat = require('keel.compat')
local protocol = require('keel.protocol')
local util = require('keel.util')

local M = {}

local state = {
  ---@type keel.proto.SessionSummary?
  summary = nil,
  ---@type string?
  session_id = nil,
  ---@type table<string, keel.Bundle>
  bundles = {},
  ---@type string[] bundle ids, oldest first
  order = {},
  ---@type table<string, keel.DiffFile[]>
  diffs = {},
  ---@type string[] file URIs named by the summary's nodes
  node_files = {},
}

---A bundle as `keel/bundleProposed` (or the summary's `pendingBundles`) sends it.
---@param raw any
---@return keel.Bundle?
---@return string? err why it is not one
function M.read_bundle(raw)
  local bundle, err = protocol.check('BundleProposed', raw)
  if not bundle then
    return nil, err
  end
  local _, energy_err = protocol.check('Energy', bundle.energy)
  if energy_err then
    return nil, energy_err
  end
  return {
    bundleId = bundle.bundleId,
    nodeId = bundle.nodeId,
    title = bundle.title,
    files = vim.deepcopy(bundle.files),
    energy = bundle.energy,
    sessionId = bundle.sessionId,
  }
end

---The summary's nodes' owned files (workspace-relative paths) as URIs.
---@param summary keel.proto.SessionSummary
---@param root string?
---@return string[]
local function files_of_nodes(summary, root)
  local out = {}
  for _, node in ipairs(summary.nodes) do
    for _, path in ipairs(node.owns) do
      out[#out + 1] = vim.uri_from_fname(root and (root .. '/' .. path) or path)
    end
  end
  return out
end

---@param bundle keel.Bundle
local function put(bundle)
  if not state.bundles[bundle.bundleId] then
    state.order[#state.order + 1] = bundle.bundleId
  end
  state.bundles[bundle.bundleId] = bundle
end

---Forget a bundle (approved, rejected, superseded).
---@param bundle_id string
function M.forget(bundle_id)
  state.bundles[bundle_id] = nil
  state.diffs[bundle_id] = nil
  for i, id in ipairs(state.order) do
    if id == bundle_id then
      table.remove(state.order, i)
      break
    end
  end
end

---Record a `keel/bundleProposed` notification.
---@param params any
---@return keel.Bundle?
---@return string? err why it is not a bundle
function M.on_bundle_proposed(params)
  local bundle, err = M.read_bundle(params)
  if bundle then
    put(bundle)
  end
  return bundle, err
end

---Record a session summary (from status or `keel/sessionChanged`): its pending bundles
---replace the known ones.
---@param summary any
---@param root string?
---@return string[]? gone ids of bundles no longer pending
---@return string? err why it is not a summary (nothing is recorded then)
function M.on_summary(summary, root)
  local checked, err = protocol.check('SessionSummary', summary)
  if not checked then
    return nil, err
  end
  local nodes, nodes_err = protocol.check_list('SummaryNode', checked.nodes)
  if not nodes then
    return nil, nodes_err
  end
  local pending = {}
  for _, raw in ipairs(checked.pendingBundles) do
    local bundle, bundle_err = M.read_bundle(raw)
    if not bundle then
      return nil, bundle_err
    end
    pending[#pending + 1] = bundle
  end
  state.summary = checked
  local sid = compat.value(checked.sessionId)
  if sid then
    state.session_id = sid
  end
  state.node_files = files_of_nodes(checked, root)
  local keep, gone = {}, {}
  for _, bundle in ipairs(pending) do
    keep[bundle.bundleId] = true
  end
  for _, id in ipairs(vim.deepcopy(state.order)) do
    if not keep[id] then
      gone[#gone + 1] = id
      M.forget(id)
    end
  end
  for _, bundle in ipairs(pending) do
    put(bundle)
  end
  return gone, nil
end

---Remember the session started from this editor.
---@param session_id string
function M.set_session_id(session_id)
  state.session_id = session_id
end

---@return string?
function M.session_id()
  return state.session_id
end

---The latest summary.
---@return keel.proto.SessionSummary?
function M.summary()
  return state.summary
end

---Pending bundles, oldest first.
---@return keel.Bundle[]
function M.pending()
  local out = {}
  for _, id in ipairs(state.order) do
    out[#out + 1] = state.bundles[id]
  end
  return out
end

---@param bundle_id string
---@return keel.Bundle?
function M.bundle(bundle_id)
  return state.bundles[bundle_id]
end

---Pending bundles touching `uri`, newest first.
---@param uri string
---@return keel.Bundle[]
function M.bundles_for(uri)
  local key = util.key(uri)
  local out = {}
  for i = #state.order, 1, -1 do
    local bundle = state.bundles[state.order[i]]
    for _, file in ipairs(bundle.files) do
      if util.key(file) == key then
        out[#out + 1] = bundle
        break
      end
    end
  end
  return out
end

---True when `uri` belongs to the session: a pending bundle's file, or a file the
---summary's nodes own.
---@param uri string
---@return boolean
function M.is_session_file(uri)
  if #M.bundles_for(uri) > 0 then
    return true
  end
  local key = util.key(uri)
  for _, file in ipairs(state.node_files) do
    if util.key(file) == key then
      return true
    end
  end
  return false
end

---Cache a bundle's proposed contents.
---@param bundle_id string
---@param files keel.DiffFile[]
function M.set_diff(bundle_id, files)
  state.diffs[bundle_id] = files
end

---@param bundle_id string
---@return keel.DiffFile[]?
function M.diff(bundle_id)
  return state.diffs[bundle_id]
end

---Forget everything (the server stopped).
function M.reset()
  state.summary = nil
  state.session_id = nil
  state.bundles = {}
  state.order = {}
  state.diffs = {}
  state.node_files = {}
end

return M
