-- Text for people: session summaries, bundle labels, ledger lines, from the payloads as
-- the server sends them (keel.payloads).

local compat = require('keel.compat')
local protocol = require('keel.protocol')
local util = require('keel.util')

local M = {}

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
---@param summary keel.proto.SessionSummary
---@return string?
local function state_counts(summary)
  local counts, order = {}, {}
  for _, node in ipairs(summary.nodes) do
    if not counts[node.state] then
      order[#order + 1] = node.state
      counts[node.state] = 0
    end
    counts[node.state] = counts[node.state] + 1
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
---@param summary keel.proto.SessionSummary?
---@param pending integer number of pending bundles
---@return string
function M.summary_line(summary, pending)
  local sid = summary and compat.value(summary.sessionId)
  if not summary or not sid then
    return 'no session'
  end
  local text = 'session ' .. sid
  local status = compat.value(summary.outcome) or (summary.running and 'running' or nil)
  if status then
    text = text .. ' ' .. status
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
---@param summary keel.proto.SessionSummary?
---@return string? key changes exactly when there is something new to tell
---@return boolean bad an outcome other than success, or a failed/escalated node
function M.milestone(summary)
  if not summary then
    return nil, false
  end
  local outcome = compat.value(summary.outcome)
  local troubled = {}
  for _, node in ipairs(summary.nodes) do
    if node.state == 'failed' or node.state == 'escalated' then
      troubled[#troubled + 1] = node.id .. ' ' .. node.state
    end
  end
  if outcome == nil and #troubled == 0 then
    return nil, false
  end
  local bad = #troubled > 0 or (outcome ~= nil and outcome ~= 'success')
  return tostring(outcome or '') .. '|' .. table.concat(troubled, ','), bad
end

---A session summary as lines (what `:Keel status` shows).
---@param summary keel.proto.SessionSummary?
---@param bundles keel.Bundle[]
---@return string[]
function M.summary_lines(summary, bundles)
  if not summary or not compat.value(summary.sessionId) then
    return { 'no session' }
  end
  local lines = { M.summary_line(summary, #bundles) }
  local task = compat.value(summary.task)
  if task then
    lines[#lines + 1] = '  task: ' .. task
  end
  for _, node in ipairs(summary.nodes) do
    local energy = util.energy_text(compat.value(node.energy))
    lines[#lines + 1] = string.format(
      '  %-10s %-18s %-10s %s',
      node.id,
      node.state,
      energy and energy:match('^(V=%S+)') or 'V=-',
      node.title
    )
  end
  for _, bundle in ipairs(bundles) do
    lines[#lines + 1] = '  pending: ' .. M.bundle_label(bundle)
  end
  return lines
end

---The entries of `keel.server.ledger` (a list, newest first).
---@param result any
---@return keel.LedgerEntry[]? entries
---@return string? err why the result is not a ledger
function M.ledger_entries(result)
  if type(result) == 'table' and #result == 0 and next(result) ~= nil then
    return nil, 'LedgerResult: expected a list, got an object'
  end
  return protocol.check_list('LedgerEntry', result)
end

---One ledger entry as a line.
---@param entry keel.LedgerEntry
---@return string
function M.ledger_line(entry)
  return table.concat(
    { entry.sha:sub(1, 12), entry.timestamp, entry.title, '[' .. entry.energy .. ']' },
    '  '
  )
end

return M
