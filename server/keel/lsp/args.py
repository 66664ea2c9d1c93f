"""Validation of what the editor sends: command arguments and custom notifications.

Every command takes ONE JSON object (see ``docs/reference/lsp.md``). pygls hands command
handlers the raw JSON values, so each command validates its object here against its model
in ``keel.lsp.payloads`` and anything else (no argument, two arguments, a list, a wrong
type, an unknown key) becomes one clear ``InvalidParams`` error naming the command and the
problem. The server never crashes on it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pygls.exceptions import JsonRpcInvalidParams

from keel.lsp.payloads import (
    MAX_DIAGNOSTICS,
    MAX_MESSAGE_CHARS,
    MAX_TASK_CHARS,
    MAX_TEXT_CHARS,
    ApproveArgs,
    BundleArgs,
    CorrectArgs,
    EditorDiagnostic,
    EditorDiagnosticsParams,
    ExplainArgs,
    LedgerArgs,
    NoArgs,
    PlanArgs,
    RejectArgs,
    RollbackArgs,
    ScopeArgs,
    SessionArgs,
    StartSessionArgs,
)

__all__ = [
    "MAX_DIAGNOSTICS",
    "MAX_MESSAGE_CHARS",
    "MAX_TASK_CHARS",
    "MAX_TEXT_CHARS",
    "ApproveArgs",
    "BundleArgs",
    "CorrectArgs",
    "EditorDiagnostic",
    "EditorDiagnosticsParams",
    "ExplainArgs",
    "LedgerArgs",
    "NoArgs",
    "PlanArgs",
    "RejectArgs",
    "RollbackArgs",
    "ScopeArgs",
    "SessionArgs",
    "StartSessionArgs",
    "parse_args",
]

ArgsT = TypeVar("ArgsT", bound=BaseModel)


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
