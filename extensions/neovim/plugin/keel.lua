-- keel.nvim: the :Keel command and <Plug> mappings. Modules load on first use;
-- nothing here calls setup() (call require('keel').setup() yourself).
if vim.g.loaded_keel == 1 then
  return
end
if vim.fn.has('nvim-0.7') == 0 then
  vim.api.nvim_err_writeln('keel.nvim needs Neovim 0.7 or later')
  return
end
vim.g.loaded_keel = 1

vim.api.nvim_create_user_command('Keel', function(opts)
  require('keel.commands').run(opts)
end, {
  nargs = '*',
  desc = 'Keel: start, approve, reject, correct, diff, preview, status, ledger, rollback, abort, resume',
  complete = function(arglead, cmdline, cursorpos)
    return require('keel.commands').complete(arglead, cmdline, cursorpos)
  end,
})

for lhs, call in pairs({
  ['<Plug>(keel-approve)'] = 'approve',
  ['<Plug>(keel-reject)'] = 'reject_prompt',
  ['<Plug>(keel-diff)'] = 'diff',
  ['<Plug>(keel-preview)'] = 'preview',
  ['<Plug>(keel-status)'] = 'status',
  ['<Plug>(keel-hover)'] = 'hover',
}) do
  vim.keymap.set('n', lhs, function()
    require('keel')[call]()
  end, { desc = 'Keel: ' .. call:gsub('_prompt', '') })
end

-- The review view's hunks (gitsigns-style): they act on the hunk at the cursor of the
-- view's current file or proposed side; the view maps them itself (review.keymaps).
for lhs, call in pairs({
  ['<Plug>(keel-hunk-next)'] = { 'hunk_step', 1, 'next hunk' },
  ['<Plug>(keel-hunk-prev)'] = { 'hunk_step', -1, 'previous hunk' },
  ['<Plug>(keel-hunk-approve)'] = { 'approve_hunk', nil, 'approve the hunk' },
  ['<Plug>(keel-hunk-reject)'] = { 'reject_hunk', nil, 'reject the hunk' },
  ['<Plug>(keel-hunk-preview)'] = { 'preview_hunk', nil, 'show the hunk' },
}) do
  vim.keymap.set('n', lhs, function()
    local review = require('keel.review')
    if call[1] == 'reject_hunk' then
      review.reject_hunk(nil, true)
    else
      review[call[1]](call[2])
    end
  end, { desc = 'Keel: ' .. call[3] })
end
