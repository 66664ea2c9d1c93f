-- Generated from docs/reference/lsp.schema.json by scripts/protocol-schema: do not edit.
-- Every payload of Keel's own LSP messages (docs/reference/lsp.md). JSON null arrives
-- as vim.NIL (read it with compat.value). The plugin reads exactly these keys;
-- keel.protocol checks them with `required` below.

---@class keel.proto.AbortResult `keel.server.abort`: the sessions it cancelled.
---@field aborted string[]

---@class keel.proto.ApproveArgs
---@field bundleId string
---@field files? string[]|vim.NIL
---@field hunks? string[]|vim.NIL hunk ids of keel.server.diff

---@class keel.proto.BundleArgs
---@field bundleId string

---@class keel.proto.BundleProposed A bundle waiting for the user's decision (`keel/bundleProposed`, `pendingBundles`).
---@field bundleId string
---@field nodeId string
---@field title string
---@field files string[] file URIs the bundle touches
---@field energy keel.proto.Energy
---@field sessionId string

---@class keel.proto.Citation
---@field path string
---@field line integer
---@field uri string

---@class keel.proto.CorrectArgs
---@field bundleId string
---@field feedback string

---@class keel.proto.DecisionResult `keel.server.reject` and `keel.server.correct`.
---@field bundleId string
---@field decision 'rejected'|'correcting'

---@class keel.proto.Diagnostic The keys of an LSP `Diagnostic` that Keel reads (others are ignored).
---@field range keel.proto.Range
---@field message string
---@field severity? integer|vim.NIL
---@field source? string|vim.NIL
---@field code? string|integer|vim.NIL

---@class keel.proto.DiffFile One file of `keel.server.diff`.
---@field uri string
---@field path string workspace-relative
---@field change 'create'|'modify'|'delete'
---@field before string '' for a created file
---@field after string '' for a deleted file
---@field unifiedDiff string a git-style patch
---@field hunks keel.proto.DiffHunk[] the changed regions; a created, deleted or binary file is one hunk

---@class keel.proto.DiffHunk One changed region of a file (zero lines of context), decided on its own with `hunks` on approve and reject. Starts are 1-based; with a count of 0 the start is the line after which the change sits (0: before the first line).
---@field id string stable: kept when other hunks are committed or dropped
---@field oldStart integer
---@field oldLines integer
---@field newStart integer
---@field newLines integer
---@field header string '@@ -oldStart,oldLines +newStart,newLines @@'
---@field removed string[] the base's lines, without line endings
---@field added string[] the proposal's lines, without line endings

---@class keel.proto.DiffResult `keel.server.diff`.
---@field bundleId string
---@field files keel.proto.DiffFile[]

---@class keel.proto.DroppedCitation
---@field path string
---@field line integer
---@field reason string

---@class keel.proto.EditorDiagnosticsParams `keel/editorDiagnostics`: a file's diagnostics from the editor's other sources (extra keys are ignored; a malformed diagnostic is skipped, not the report).
---@field uri string
---@field version? integer|vim.NIL
---@field diagnostics keel.proto.Diagnostic[]

---@class keel.proto.Energy An energy measurement as the editor sees it: V(x), its components, epsilon, stable.
---@field v number V(x), the weighted sum of the components
---@field v_syn number
---@field v_str number
---@field v_log number
---@field v_boot number
---@field v_sheaf number
---@field epsilon number the stability threshold
---@field stable boolean V(x) < epsilon and no sensor degraded

---@class keel.proto.ExplainArgs `keel.server.explain`: a question or a symbol, and optionally the editor's file.
---@field question string
---@field file? string|vim.NIL

---@class keel.proto.ExplainResult `keel.server.explain`: the answer, its checked citations and its Markdown.
---@field question string
---@field answer string
---@field citations keel.proto.Citation[]
---@field dropped keel.proto.DroppedCitation[]
---@field explore keel.proto.ExploreCall[]
---@field markdown string

---@class keel.proto.ExploreCall One read-only tool call of the architect (`keel.server.plan`/`explain`).
---@field tool string
---@field arguments table<string, any>
---@field chars integer
---@field refused boolean
---@field reason string

---@class keel.proto.InvalidAttempt
---@field attempt integer
---@field errors string[]

---@class keel.proto.LedgerArgs
---@field limit? integer|vim.NIL

---@class keel.proto.LedgerEntry One approval commit of `keel.server.ledger`, newest first.
---@field sha string
---@field title string
---@field sessionId string
---@field nodeId string
---@field bundle string
---@field energy string the Keel-Energy trailer, e.g. 'V=0.000'
---@field approvedBy string
---@field timestamp string
---@field files string[] workspace-relative paths
---@field reverts string|vim.NIL the entry a rollback commit reverts

---@class keel.proto.LedgerEntryResult `keel.server.approve` (the approval commit) and `keel.server.rollback` (the revert).
---@field ledgerEntry string

-- `keel.server.ledger`: a JSON array of entries.
---@alias keel.proto.LedgerResult keel.proto.LedgerEntry[]

---@class keel.proto.NoArgs

---@class keel.proto.NodeContract
---@field symbols string[] the function, class or constant names the node's files must define at top level, e.g. ["circle_area"] for circle_area(radius); never a parameter such as radius, nor a local variable
---@field forbidden string[] text that must not appear in the node's files (e.g. "TODO")

---@alias keel.proto.NodeKind 'command'|'code'|'unit_test'

---@class keel.proto.PlanArgs `keel.server.plan`: the task, and optionally the editor's file (a URI), shown first.
---@field task string
---@field file? string|vim.NIL

---@class keel.proto.PlanNode
---@field id string a short unique name: letters, digits, - or _
---@field title string one line saying what the node does
---@field kind keel.proto.NodeKind "code" (writes source files), "unit_test" (writes test files) or "command" (project set-up checked by commands)
---@field owns string[] the files this node creates or edits (workspace-relative, '/' separators); every code and unit_test node owns at least one file and no file has two owners
---@field context string[] files the node reads but does not write (a test node lists the files it tests)
---@field depends_on string[] ids of the nodes whose files this node needs; a unit_test node depends on the nodes it tests
---@field commands string[] shell commands that check the node (e.g. "python -m pytest -q test_x.py"); they must really run the node's tests
---@field contract keel.proto.NodeContract what the node's files must and must not contain

---@class keel.proto.PlanResult `keel.server.plan`: the plan (as `keel plan --json`) and its Markdown.
---@field task string
---@field plan keel.proto.TaskPlan
---@field invalidAttempts keel.proto.InvalidAttempt[]
---@field explore keel.proto.ExploreCall[]
---@field markdown string

---@class keel.proto.Position
---@field line integer
---@field character? integer

---@class keel.proto.Range
---@field start keel.proto.Position
---@field end? keel.proto.Position|vim.NIL

---@class keel.proto.RejectArgs
---@field bundleId string
---@field files? string[]|vim.NIL
---@field hunks? string[]|vim.NIL hunk ids of keel.server.diff
---@field reason? string

---@class keel.proto.RollbackArgs
---@field entry string

---@class keel.proto.ScopeArgs Limits on the plan: at most `maxNodes` nodes, and `files` (URIs) owned by one.
---@field files? string[]
---@field maxNodes? integer|vim.NIL

---@class keel.proto.SessionArgs
---@field sessionId? string|vim.NIL

---@class keel.proto.SessionIdResult `keel.server.startSession` and `keel.server.resume`.
---@field sessionId string

---@class keel.proto.SessionRef A session the server knows (to resume it).
---@field sessionId string
---@field task string
---@field running boolean
---@field outcome string|vim.NIL

---@class keel.proto.SessionSummary `keel.server.status` and `keel/sessionChanged`: the current session, its nodes, every pending bundle and the sessions this server knows. No session: `sessionId` null.
---@field sessionId string|vim.NIL
---@field task string|vim.NIL
---@field running boolean
---@field outcome string|vim.NIL null while running or before any session
---@field reason string
---@field mode string|vim.NIL
---@field epsilon number|vim.NIL
---@field nodes keel.proto.SummaryNode[]
---@field pendingBundles keel.proto.BundleProposed[]
---@field sessions keel.proto.SessionRef[]

---@class keel.proto.StartSessionArgs
---@field task string
---@field mode? 'cautious'|'balanced'|'yolo'|vim.NIL
---@field scope? keel.proto.ScopeArgs|vim.NIL

---@class keel.proto.SummaryNode One node of the session summary.
---@field id string
---@field title string
---@field kind string code, unit_test or command ('' before the plan says)
---@field state string one of: queued, running, verifying, retrying, awaiting_approval, committed, failed, escalated, waiting
---@field owns string[] workspace-relative paths the node owns
---@field dependsOn string[] ids of the nodes it runs after
---@field attempts integer
---@field energy keel.proto.Energy|vim.NIL the latest measurement, null before one
---@field ledgerEntry string|vim.NIL the commit of a committed node

---@class keel.proto.TaskPlan
---@field nodes keel.proto.PlanNode[] the steps of the plan, at least one; keep it small

local M = {}

---The keys every payload object must have, by class name (without keel.proto.).
---A key whose value may be null is not listed: Neovim 0.7 decodes null as nil.
---@type table<string, string[]>
-- stylua: ignore
M.required = {
  AbortResult = { 'aborted' },
  ApproveArgs = { 'bundleId' },
  BundleArgs = { 'bundleId' },
  BundleProposed = { 'bundleId', 'nodeId', 'title', 'files', 'energy', 'sessionId' },
  Citation = { 'path', 'line', 'uri' },
  CorrectArgs = { 'bundleId', 'feedback' },
  DecisionResult = { 'bundleId', 'decision' },
  Diagnostic = { 'range', 'message' },
  DiffFile = { 'uri', 'path', 'change', 'before', 'after', 'unifiedDiff', 'hunks' },
  DiffHunk = { 'id', 'oldStart', 'oldLines', 'newStart', 'newLines', 'header', 'removed', 'added' },
  DiffResult = { 'bundleId', 'files' },
  DroppedCitation = { 'path', 'line', 'reason' },
  EditorDiagnosticsParams = { 'uri', 'diagnostics' },
  Energy = { 'v', 'v_syn', 'v_str', 'v_log', 'v_boot', 'v_sheaf', 'epsilon', 'stable' },
  ExplainArgs = { 'question' },
  ExplainResult = { 'question', 'answer', 'citations', 'dropped', 'explore', 'markdown' },
  ExploreCall = { 'tool', 'arguments', 'chars', 'refused', 'reason' },
  InvalidAttempt = { 'attempt', 'errors' },
  LedgerArgs = {},
  LedgerEntry = { 'sha', 'title', 'sessionId', 'nodeId', 'bundle', 'energy', 'approvedBy', 'timestamp', 'files' },
  LedgerEntryResult = { 'ledgerEntry' },
  NoArgs = {},
  NodeContract = { 'symbols', 'forbidden' },
  PlanArgs = { 'task' },
  PlanNode = { 'id', 'title', 'kind', 'owns', 'context', 'depends_on', 'commands', 'contract' },
  PlanResult = { 'task', 'plan', 'invalidAttempts', 'explore', 'markdown' },
  Position = { 'line' },
  Range = { 'start' },
  RejectArgs = { 'bundleId' },
  RollbackArgs = { 'entry' },
  ScopeArgs = {},
  SessionArgs = {},
  SessionIdResult = { 'sessionId' },
  SessionRef = { 'sessionId', 'task', 'running' },
  SessionSummary = { 'running', 'reason', 'nodes', 'pendingBundles', 'sessions' },
  StartSessionArgs = { 'task' },
  SummaryNode = { 'id', 'title', 'kind', 'state', 'owns', 'dependsOn', 'attempts' },
  TaskPlan = { 'nodes' },
}

return M
