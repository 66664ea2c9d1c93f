-- `:Keel {subcommand} [args]`: parsing and completion.

local M = {}

---@class keel.Subcommand
---@field args string usage of the arguments, for messages and docs
---@field run fun(rest: string)
---@field complete (fun(arglead: string): string[])?

---@return table
local function keel()
  return require('keel')
end

---@type table<string, keel.Subcommand>
M.subcommands = {
  start = {
    args = '{task}',
    run = function(rest)
      if rest ~= '' then
        keel().start(rest)
        return
      end
      vim.ui.input({ prompt = 'Keel task: ' }, function(task)
        if task and task ~= '' then
          keel().start(task)
        end
      end)
    end,
  },
  plan = {
    args = '{task}',
    run = function(rest)
      if rest ~= '' then
        keel().plan(rest)
        return
      end
      vim.ui.input({ prompt = 'Keel plan: ' }, function(task)
        if task and task ~= '' then
          keel().plan(task)
        end
      end)
    end,
  },
  explain = {
    args = '{question}',
    run = function(rest)
      if rest ~= '' then
        keel().explain(rest)
        return
      end
      vim.ui.input({ prompt = 'Keel explain: ', default = vim.fn.expand('<cword>') }, function(q)
        if q and q ~= '' then
          keel().explain(q)
        end
      end)
    end,
  },
  approve = {
    args = '[hunk]',
    run = function(rest)
      if rest == 'hunk' then
        require('keel.review').approve_hunk()
      elseif rest ~= '' then
        error('approve takes no argument but `hunk` (the hunk at the cursor of the review)', 0)
      else
        keel().approve()
      end
    end,
    complete = function(arglead)
      return vim.startswith('hunk', arglead) and { 'hunk' } or {}
    end,
  },
  reject = {
    args = '[hunk] [reason]',
    run = function(rest)
      local reason = rest == 'hunk' and '' or rest:match('^hunk%s+(.*)$')
      if reason then
        require('keel.review').reject_hunk(reason ~= '' and reason or nil, false)
      else
        keel().reject(rest ~= '' and rest or nil)
      end
    end,
    complete = function(arglead)
      return vim.startswith('hunk', arglead) and { 'hunk' } or {}
    end,
  },
  correct = {
    args = '{feedback}',
    run = function(rest)
      keel().correct(rest)
    end,
  },
  diff = {
    args = '',
    run = function()
      keel().diff()
    end,
  },
  preview = {
    args = '',
    run = function()
      keel().preview()
    end,
  },
  status = {
    args = '',
    run = function()
      keel().status()
    end,
  },
  ledger = {
    args = '[limit]',
    run = function(rest)
      keel().ledger({ limit = tonumber(rest) })
    end,
  },
  rollback = {
    args = '{entry}',
    run = function(rest)
      keel().rollback(rest)
    end,
    complete = function(arglead)
      local out = {}
      for _, entry in ipairs(require('keel.actions').ledger_cache()) do
        if vim.startswith(entry.sha, arglead) then
          out[#out + 1] = entry.sha
        end
      end
      return out
    end,
  },
  abort = {
    args = '',
    run = function()
      keel().abort()
    end,
  },
  resume = {
    args = '[session]',
    run = function(rest)
      keel().resume(rest ~= '' and rest or nil)
    end,
  },
  log = {
    args = '',
    run = function()
      vim.cmd('split ' .. vim.fn.fnameescape(require('keel.log').path()))
    end,
  },
}

---Subcommand names, sorted.
---@return string[]
function M.names()
  local names = vim.tbl_keys(M.subcommands)
  table.sort(names)
  return names
end

---Run `:Keel` with the parsed command `opts` (`nvim_create_user_command` callback).
---@param opts { args: string }
function M.run(opts)
  local line = vim.trim(opts.args or '')
  if line == '' then
    M.subcommands.status.run('')
    return
  end
  local name, rest = line:match('^(%S+)%s*(.*)$')
  local sub = M.subcommands[name]
  if not sub then
    require('keel.log').notify(
      vim.log.levels.ERROR,
      string.format('unknown subcommand `%s`; one of: %s', name, table.concat(M.names(), ', '))
    )
    return
  end
  local ok, err = pcall(sub.run, rest)
  if not ok then
    require('keel.log').notify(
      vim.log.levels.ERROR,
      string.format(':Keel %s failed: %s', name, err)
    )
  end
end

---Completion for `:Keel` (`nvim_create_user_command` complete function).
---@param arglead string
---@param cmdline string
---@param cursorpos integer
---@return string[]
function M.complete(arglead, cmdline, cursorpos)
  local before = cmdline:sub(1, cursorpos)
  -- Drop the command name (possibly abbreviated, possibly after a range or bang).
  local args = before:gsub('^%s*%S+%s*', '', 1)
  local words = vim.split(args, '%s+', { trimempty = false })
  if #words <= 1 then
    local out = {}
    for _, name in ipairs(M.names()) do
      if vim.startswith(name, arglead) then
        out[#out + 1] = name
      end
    end
    return out
  end
  local sub = M.subcommands[words[1]]
  if sub and sub.complete and #words == 2 then
    return sub.complete(arglead)
  end
  return {}
end

return M
