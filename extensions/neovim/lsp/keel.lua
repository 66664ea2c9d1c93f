-- The Keel language server as a vim.lsp.Config (Neovim 0.11+):
--   vim.lsp.enable('keel')
-- It shares keel.nvim's handlers, so session and bundle notifications, progress and
-- :Keel commands work the same as with require('keel').setup().
---@type vim.lsp.Config
return require('keel.client').client_config(nil)
