-- Text for people: session summaries, bundle labels, ledger lines. The summary's keys
-- are not fixed by the contract, so every reader here tolerates missing or renamed keys.

local compat = require('keel.compat')
local util = require('keel.util')

local M = {}

---@param tbl table
---@param ... string keys to try, in order
---@return any
local function first(tbl, ...)
  for _, key in ipairs({ ... }) do
    local value = compat.value(tbl[key])
    if value ~= nil then
      return value
    end
  end
  return nil
end

---A bundle as one line: `Greeting (2 files, V=0.05) [b-1]`.
---@param bundle keel.Bundle
---@return string
function M.bundle_label(bundle)
  local parts = {}
  local files = #bundle.files
  if files > 0 then
    parts[#parts + 1] = files == 1 and '1 file' or (files .. ' files')
  end
  local energy = util.energy_text(bundle.energy)
  if energy then
    parts[#parts + 1] = energy
  end
  local text = bundle.title or bundle.nodeId or 'bundle'
  if #parts > 0 then
    text = text .. ' (' .. table.concat(parts, ', ') .. ')'
  end
  return text .. ' [' .. bundle.bundleId .. ']'
end

---Node state counts: `2 committed, 1 awaiting_approval`.
---@param summary table
---@return string?
local function state_counts(summary)
  local counts, order = {}, {}
  for _, node in ipairs(first(summary, 'nodes') or {}) do
    if type(node) == 'table' then
      local node_state = first(node, 'state', 'status') or '?'
      if not counts[node_state] then
        order[#order + 1] = node_state
        counts[node_state] = 0
      end
      counts[node_state] = counts[node_state] + 1
    end
  end
  if #order == 0 then
    return nil
  end
  local parts = {}
  for _, name in ipairs(order) do
    parts[#parts + 1] = counts[name] .. ' ' .. name
  end
  return table.concat(parts, ', ')
end

---A session summary as one line.
---@param summary table?
---@param pending integer number of pending bundles
---@return string
function M.summary_line(summary, pending)
  if type(summary) ~= 'table' then
    return 'no session'
  end
  local sid = first(summary, 'sessionId', 'session_id', 'id') or '?'
  local text = 'session ' .. tostring(sid)
  local status = first(summary, 'state', 'status', 'outcome')
  if status == nil and first(summary, 'running') == true then
    status = 'running'
  end
  if status then
    text = text .. ' ' .. tostring(status)
  end
  local counts = state_counts(summary)
  if counts then
    text = text .. ': ' .. counts
  end
  if pending > 0 then
    text = text
      .. (pending == 1 and '; 1 pending bundle' or ('; ' .. pending .. ' pending bundles'))
  end
  return text
end

---What makes a summary worth a notification: the session's outcome, and nodes that
---failed or escalated. nil while the session simply runs.
---@param summary table?
---@return string? key changes exactly when there is something new to tell
---@return boolean bad an outcome other than success, or a failed/escalated node
function M.milestone(summary)
  if type(summary) ~= 'table' then
    return nil, false
  end
  local outcome = first(summary, 'outcome')
  local troubled = {}
  for _, node in ipairs(first(summary, 'nodes') or {}) do
    if type(node) == 'table' then
      local node_state = first(node, 'state', 'status')
      if node_state == 'failed' or node_state == 'escalated' then
        troubled[#troubled + 1] = tostring(first(node, 'id', 'nodeId', 'node_id'))
          .. ' '
          .. node_state
      end
    end
  end
  if outcome == nil and #troubled == 0 then
    return nil, false
  end
  local bad = #troubled > 0 or (outcome ~= nil and outcome ~= 'success')
  return tostring(outcome or '') .. '|' .. table.concat(troubled, ','), bad
end

---A session summary as lines (what `:Keel status` shows).
---@param summary table?
---@param bundles keel.Bundle[]
---@return string[]
function M.summary_lines(summary, bundles)
  if type(summary) ~= 'table' then
    return { 'no session' }
  end
  local lines = { M.summary_line(summary, #bundles) }
  local task = first(summary, 'task')
  if type(task) == 'string' then
    lines[#lines + 1] = '  task: ' .. task
  end
  for _, node in ipairs(first(summary, 'nodes') or {}) do
    if type(node) == 'table' then
      local id = first(node, 'id', 'nodeId', 'node_id') or '?'
      local node_state = first(node, 'state', 'status') or '?'
      local energy = util.energy_text(first(node, 'energy', 'latestEnergy', 'latest_energy'))
      local title = first(node, 'title') or ''
      lines[#lines + 1] = string.format(
        '  %-10s %-18s %-10s %s',
        tostring(id),
        tostring(node_state),
        energy and energy:match('^(V=%S+)') or 'V=-',
        tostring(title)
      )
    end
  end
  for _, bundle in ipairs(bundles) do
    lines[#lines + 1] = '  pending: ' .. M.bundle_label(bundle)
  end
  return lines
end

---Ledger entries from whatever shape the server answered (a list, or `{entries = ...}`).
---@param result any
---@return keel.LedgerEntry[]
function M.ledger_entries(result)
  local list = result
  if type(result) == 'table' and not compat.islist(result) then
    list = first(result, 'entries', 'ledger', 'items') or {}
  end
  local out = {}
  for _, raw in ipairs(type(list) == 'table' and list or {}) do
    if type(raw) == 'table' then
      local sha = first(raw, 'sha', 'entry', 'commit', 'id')
      if sha then
        out[#out + 1] = {
          sha = tostring(sha),
          title = tostring(first(raw, 'title', 'message', 'subject') or ''),
          raw = raw,
        }
      end
    elseif type(raw) == 'string' then
      out[#out + 1] = { sha = raw, title = '', raw = { sha = raw } }
    end
  end
  return out
end

---One ledger entry as a line.
---@param entry keel.LedgerEntry
---@return string
function M.ledger_line(entry)
  local parts = { entry.sha:sub(1, 12), entry.title }
  local when = first(entry.raw, 'timestamp', 'date')
  if when then
    table.insert(parts, 2, tostring(when))
  end
  local energy = first(entry.raw, 'energy')
  if type(energy) == 'string' then
    parts[#parts + 1] = '[' .. energy .. ']'
  elseif type(energy) == 'table' then
    parts[#parts + 1] = '[' .. (util.energy_text(energy) or '') .. ']'
  end
  return table.concat(parts, '  ')
end

return M
