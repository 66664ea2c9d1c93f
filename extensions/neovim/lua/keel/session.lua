-- What the plugin knows about the session: the latest summary (keel.server.status,
-- keel/sessionChanged), the pending bundles (keel/bundleProposed, status) and the
-- proposed contents fetched with keel.server.diff.
--
-- Contract section 9 fixes the bundle notification's keys but not the summary's, so
-- the summary is read tolerantly (see `pending_from_summary`).

local compat = require('keel.compat')
local util = require('keel.util')

local M = {}

local state = {
  ---@type table?
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

---Turn a file entry (URI, path, or `{uri = ...}`) into a URI.
---@param file any
---@param root string?
---@return string?
local function to_uri(file, root)
  if type(file) == 'table' then
    file = compat.value(file.uri) or compat.value(file.path)
  end
  if type(file) ~= 'string' or file == '' then
    return nil
  end
  if file:match('^%a[%w+.-]*:') then
    return file
  end
  if root and not vim.startswith(file, '/') then
    file = root .. '/' .. file
  end
  return vim.uri_from_fname(file)
end

---A bundle in the shape of `keel/bundleProposed`, from any of the shapes a summary may use.
---@param raw any
---@param root string?
---@return keel.Bundle?
function M.normalize_bundle(raw, root)
  if type(raw) ~= 'table' then
    return nil
  end
  local id = compat.value(raw.bundleId) or compat.value(raw.bundle_id) or compat.value(raw.id)
  if type(id) ~= 'string' and type(id) ~= 'number' then
    return nil
  end
  local files = {}
  for _, file in ipairs(compat.value(raw.files) or compat.value(raw.uris) or {}) do
    local uri = to_uri(file, root)
    if uri then
      files[#files + 1] = uri
    end
  end
  return {
    bundleId = tostring(id),
    nodeId = compat.value(raw.nodeId) or compat.value(raw.node_id) or compat.value(raw.node),
    title = compat.value(raw.title) or compat.value(raw.nodeTitle),
    files = files,
    energy = compat.value(raw.energy),
  }
end

---The pending bundles a summary lists, or nil when it lists none in a known key.
---@param summary table
---@param root string?
---@return keel.Bundle[]?
function M.pending_from_summary(summary, root)
  if type(summary) ~= 'table' then
    return nil
  end
  for _, key in ipairs({ 'pendingBundles', 'pending_bundles', 'bundles', 'pending' }) do
    local list = compat.value(summary[key])
    if type(list) == 'table' then
      local out = {}
      for _, raw in ipairs(list) do
        local bundle = M.normalize_bundle(raw, root)
        if bundle then
          out[#out + 1] = bundle
        end
      end
      return out
    end
  end
  return nil
end

---@param summary table
---@param root string?
---@return string[]
local function files_of_nodes(summary, root)
  local out = {}
  for _, node in ipairs(compat.value(summary.nodes) or {}) do
    if type(node) == 'table' then
      for _, key in ipairs({ 'files', 'owns' }) do
        for _, file in ipairs(compat.value(node[key]) or {}) do
          local uri = to_uri(file, root)
          if uri then
            out[#out + 1] = uri
          end
        end
      end
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
---@param params table
---@param root string?
---@return keel.Bundle?
function M.on_bundle_proposed(params, root)
  local bundle = M.normalize_bundle(params, root)
  if bundle then
    put(bundle)
  end
  return bundle
end

---Record a session summary (from status or `keel/sessionChanged`). When it lists the
---pending bundles, that list replaces the known one.
---@param summary table
---@param root string?
---@return string[] gone ids of bundles no longer pending
function M.on_summary(summary, root)
  if type(summary) ~= 'table' then
    return {}
  end
  state.summary = summary
  local sid = compat.value(summary.sessionId) or compat.value(summary.session_id)
  if type(sid) == 'string' then
    state.session_id = sid
  end
  if compat.value(summary.nodes) ~= nil then
    state.node_files = files_of_nodes(summary, root)
  end
  local pending = M.pending_from_summary(summary, root)
  local gone = {}
  if pending then
    local keep = {}
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
      local known = state.bundles[bundle.bundleId]
      if known then
        if #bundle.files == 0 then
          bundle.files = known.files
        end
        bundle.title = bundle.title or known.title
        bundle.nodeId = bundle.nodeId or known.nodeId
        bundle.energy = bundle.energy or known.energy
      end
      put(bundle)
    end
  end
  return gone
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
---@return table?
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
