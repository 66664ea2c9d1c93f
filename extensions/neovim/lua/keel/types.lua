---@meta
-- LuaCATS definitions shared by the keel modules. Nothing here runs.

---@alias keel.Callback fun(err: string?, result: any?)
---@alias keel.OffsetEncoding 'utf-8'|'utf-16'|'utf-32'
---@alias keel.Mode 'cautious'|'balanced'|'yolo'

---@class keel.DiagnosticsConfig
---@field forward boolean Send other servers' diagnostics as `keel/editorDiagnostics`.
---@field debounce_ms integer Quiet time before a burst of `DiagnosticChanged` is sent.
---@field scope 'session'|'attached' Which files are forwarded.

---@class keel.SignsConfig
---@field enabled boolean Mark lines a pending bundle changes in the sign column.
---@field priority integer Sign priority.
---@field add string Sign text for added lines.
---@field change string Sign text for changed lines.
---@field delete string Sign text where lines are removed.

---@class keel.ReviewKeymaps
---@field approve_file string|false
---@field approve string|false
---@field reject_file string|false
---@field reject string|false
---@field next_file string|false
---@field prev_file string|false
---@field next_hunk string|false
---@field prev_hunk string|false
---@field approve_hunk string|false
---@field reject_hunk string|false
---@field preview_hunk string|false
---@field close string|false

---@class keel.ReviewConfig
---@field layout 'vertical'|'horizontal' How the proposed side is split off.
---@field keymaps keel.ReviewKeymaps Buffer-local mappings in the proposed-content buffer.

---@class keel.NotifyConfig
---@field progress boolean Show `$/progress` from the server.
---@field progress_throttle_ms integer Minimum time between two progress reports.
---@field session boolean Show the session outcome and failed or escalated nodes.
---@field bundles boolean Show `keel/bundleProposed`.

---@class keel.LogConfig
---@field level 'trace'|'debug'|'info'|'warn'|'error'|'off'
---@field file string? Log file (default: `stdpath('log')/keel.log`).
---@field max_size integer Rotate the log file above this many bytes.

---@class keel.Config
---@field cmd string[] Command starting the language server.
---@field cmd_env table<string, string>? Extra environment for the server.
---@field root_dir (string|fun(bufnr: integer): string?)? Workspace root override.
---@field root_markers string[] Files or folders that mark a workspace root.
---@field filetypes string[]? Attach only to these filetypes (nil: every normal file buffer).
---@field autostart boolean Start the server and attach when a file under a root is opened.
---@field init_options table `initializationOptions` (keys of keel.toml).
---@field settings table The `keel` section of `workspace/configuration`.
---@field mode keel.Mode? Approval mode for sessions started from Neovim.
---@field on_attach fun(client: table, bufnr: integer)? Called when a buffer attaches.
---@field ledger_limit integer How many ledger entries `:Keel ledger` asks for.
---@field diagnostics keel.DiagnosticsConfig
---@field signs keel.SignsConfig
---@field review keel.ReviewConfig
---@field notify keel.NotifyConfig
---@field log keel.LogConfig

---@class keel.Options Options for `setup()`: any subset of keel.Config (nested tables too).
---@field cmd string[]?
---@field cmd_env table<string, string>?
---@field root_dir (string|fun(bufnr: integer): string?)?
---@field root_markers string[]?
---@field filetypes string[]?
---@field autostart boolean?
---@field init_options table?
---@field settings table?
---@field mode keel.Mode?
---@field on_attach fun(client: table, bufnr: integer)?
---@field ledger_limit integer?
---@field diagnostics { forward: boolean?, debounce_ms: integer?, scope: ('session'|'attached')? }?
---@field signs { enabled: boolean?, priority: integer?, add: string?, change: string?, delete: string? }?
---@field review { layout: ('vertical'|'horizontal')?, keymaps: table<string, string|false>? }?
---@field notify { progress: boolean?, progress_throttle_ms: integer?, session: boolean?, bundles: boolean? }?
---@field log { level: string?, file: string?, max_size: integer? }?

---@class keel.Bundle A pending bundle: what `keel/bundleProposed` (keel.proto.BundleProposed) says, or only `bundleId` and `files` for a command given an id the plugin has not seen.
---@field bundleId string
---@field nodeId string?
---@field title string?
---@field files string[] File URIs the bundle touches.
---@field energy keel.proto.Energy?
---@field sessionId string?

---@alias keel.DiffFile keel.proto.DiffFile One file of `keel.server.diff`.

---@alias keel.LedgerEntry keel.proto.LedgerEntry One entry of `keel.server.ledger`.

---@class keel.LspDiagnostic A `Diagnostic` as the LSP specification defines it.
---@field range { start: { line: integer, character: integer }, ['end']: { line: integer, character: integer } }
---@field severity integer?
---@field message string
---@field source string?
---@field code (string|integer)?
---@field tags integer[]?

---@class keel.ActionOpts Options shared by the public actions.
---@field bundle_id string? Act on this bundle instead of picking one.
---@field files string[]? Only these file URIs of the bundle (approve, reject).
---@field hunks string[]? Only these hunks (ids from `keel.server.diff`) of the bundle (approve, reject); not with `files`.
---@field what string? With `hunks`: how the message names them, e.g. "hunk greet.py @@ -1 +1 @@".
---@field rest string[]? With `hunks`: what the decision leaves pending, named for the message.
---@field callback keel.Callback? Called when the server answered.
