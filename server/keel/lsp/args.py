"""Validation of what the editor sends: command arguments and custom notifications.

Contract section 9: every command takes ONE JSON object. pygls hands command handlers the
raw JSON values, so each command validates its object here with pydantic and anything else
(no argument, two arguments, a list, a wrong type, an unknown key) becomes one clear
``InvalidParams`` error naming the command and the problem. The server never crashes on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pygls.exceptions import JsonRpcInvalidParams

MAX_TASK_CHARS = 20_000
MAX_TEXT_CHARS = 20_000
MAX_DIAGNOSTICS = 1_000
MAX_MESSAGE_CHARS = 2_000


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NoArgs(_Args):
    pass


class ScopeArgs(_Args):
    """Limits on the plan: at most ``maxNodes`` nodes, and ``files`` (URIs) owned by one."""

    files: list[str] = Field(default_factory=list, max_length=100)
    max_nodes: int | None = Field(default=None, alias="maxNodes", ge=1, le=1_000)


class StartSessionArgs(_Args):
    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    mode: str | None = Field(default=None, pattern="^(cautious|balanced|yolo)$")
    scope: ScopeArgs | None = None


class BundleArgs(_Args):
    bundle_id: str = Field(alias="bundleId", min_length=1, max_length=200)


class ApproveArgs(BundleArgs):
    files: list[str] | None = Field(default=None, min_length=1, max_length=10_000)


class RejectArgs(BundleArgs):
    reason: str = Field(default="", max_length=MAX_TEXT_CHARS)
    files: list[str] | None = Field(default=None, min_length=1, max_length=10_000)


class CorrectArgs(BundleArgs):
    feedback: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class SessionArgs(_Args):
    session_id: str | None = Field(default=None, alias="sessionId", min_length=1, max_length=200)


class LedgerArgs(_Args):
    limit: int | None = Field(default=None, ge=1, le=1_000)


class RollbackArgs(_Args):
    entry: str = Field(min_length=4, max_length=100, pattern="^[0-9a-fA-F]+$")


ArgsT = TypeVar("ArgsT", bound=_Args)


def parse_args(command: str, model: type[ArgsT], args: tuple[Any, ...]) -> ArgsT:
    """The command's one JSON object as ``model``; ``InvalidParams`` with the reason if not.

    No argument at all means ``{}`` (a palette command passes none), so commands whose
    fields are all optional work without one.
    """
    if len(args) > 1:
        raise JsonRpcInvalidParams(
            f"{command} takes one JSON object as its argument, got {len(args)} arguments"
        )
    value = args[0] if args else {}
    if not isinstance(value, dict):
        raise JsonRpcInvalidParams(
            f"{command} takes one JSON object as its argument, got {type(value).__name__}"
        )
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'argument'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise JsonRpcInvalidParams(f"{command}: invalid argument: {problems}") from None


# -- keel/editorDiagnostics ------------------------------------------------------------------


@dataclass(frozen=True)
class EditorDiagnostic:
    """The part of a forwarded LSP diagnostic that V_syn needs."""

    line: int
    message: str
    severity: int | None = None
    source: str | None = None
    code: str | None = None


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Position(_Loose):
    line: int = Field(ge=0)
    character: int = Field(default=0, ge=0)


class _Range(_Loose):
    start: _Position
    end: _Position | None = None


class _Diagnostic(_Loose):
    range: _Range
    message: str
    severity: int | None = Field(default=None, ge=1, le=4)
    source: str | None = None
    code: str | int | None = None


class EditorDiagnosticsParams(_Loose):
    """``{"uri", "version"?, "diagnostics": [LSP Diagnostic]}`` (extra keys are ignored)."""

    uri: str = Field(min_length=1, max_length=4_096)
    version: int | None = None
    diagnostics: list[Any] = Field(max_length=100_000)

    @field_validator("uri")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError("NUL in uri")
        return value

    def parsed(self) -> tuple[list[EditorDiagnostic], int]:
        """The usable diagnostics (at most ``MAX_DIAGNOSTICS``) and how many were skipped."""
        out: list[EditorDiagnostic] = []
        skipped = 0
        for raw in self.diagnostics:
            if len(out) >= MAX_DIAGNOSTICS:
                skipped += 1
                continue
            try:
                item = _Diagnostic.model_validate(raw)
            except ValidationError:
                skipped += 1
                continue
            out.append(
                EditorDiagnostic(
                    line=item.range.start.line,
                    message=item.message[:MAX_MESSAGE_CHARS],
                    severity=item.severity,
                    source=item.source,
                    code=None if item.code is None else str(item.code),
                )
            )
        return out, skipped


# -- keel.server.plan and keel.server.explain ------------------------------------------------


class PlanArgs(_Args):
    """``keel.server.plan``: the task, and optionally the editor's file (a URI), shown first."""

    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    file: str | None = Field(default=None, min_length=1, max_length=10_000)


class ExplainArgs(_Args):
    """``keel.server.explain``: a question or a symbol, and optionally the editor's file."""

    question: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    file: str | None = Field(default=None, min_length=1, max_length=10_000)
