"""The request bodies of ``/api/v1``: strict pydantic models, one per POST.

Why pydantic: every field is checked once, unknown fields are refused, and the same models
give the OpenAPI document its schemas (``keel.api.openapi``), so the document cannot drift
from what the server accepts.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The longest task or feedback text accepted (characters).
MAX_TEXT = 20_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SessionOptions(_Body):
    """What ``keel agent`` takes as flags; absent fields keep the configuration's values."""

    model: str | None = Field(default=None, min_length=1, max_length=200)
    mode: Literal["cautious", "balanced", "yolo"] | None = None
    max_cost: float | None = Field(default=None, ge=0, alias="maxCost")
    max_steps: int | None = Field(default=None, ge=1, le=100_000, alias="maxSteps")

    def flags(self) -> dict[str, object]:
        return {
            "model": self.model,
            "mode": self.mode,
            "max_cost": self.max_cost,
            "max_steps": self.max_steps,
        }


class StartBody(SessionOptions):
    """``POST /sessions``."""

    task: str = Field(min_length=1, max_length=MAX_TEXT)
    workspace: str = Field(min_length=1, max_length=4096)


class ContinueBody(SessionOptions):
    """``POST /sessions/{id}/continue``: a follow-up in the same workspace."""

    task: str = Field(min_length=1, max_length=MAX_TEXT)


class ResumeBody(_Body):
    """``POST /sessions/{id}/resume``: budgets raised for the rest of the session."""

    mode: Literal["cautious", "balanced", "yolo"] | None = None
    max_cost: float | None = Field(default=None, ge=0, alias="maxCost")
    max_steps: int | None = Field(default=None, ge=1, le=100_000, alias="maxSteps")


HunkIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(min_length=1, max_length=10_000),
]


class _Hunks(_Body):
    """``hunks``: ids from the bundle's JSON diff; not with ``files``, each id once."""

    hunks: HunkIds | None = None

    @model_validator(mode="after")
    def _checked(self) -> _Hunks:
        if self.hunks is not None and getattr(self, "files", None) is not None:
            raise ValueError("give files or hunks, not both")
        twice = sorted(h for h, n in Counter(self.hunks or ()).items() if n > 1)
        if twice:
            raise ValueError(f"hunk ids given twice: {', '.join(twice)}")
        return self


class ApproveBody(_Hunks):
    """``POST /sessions/{id}/approve``: commit the bundle (or only ``files`` or ``hunks``
    of it)."""

    bundle: str = Field(min_length=1, max_length=200)
    files: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    feedback: str = Field(default="", max_length=MAX_TEXT)


class RejectBody(_Hunks):
    """``POST /sessions/{id}/reject``: the model tries again, hearing ``feedback`` (with
    ``hunks``, only those leave the bundle and the rest is verified again)."""

    bundle: str = Field(min_length=1, max_length=200)
    feedback: str = Field(default="", max_length=MAX_TEXT)


class CorrectBody(_Body):
    """``POST /sessions/{id}/correct``: a rejection whose instructions are required."""

    bundle: str = Field(min_length=1, max_length=200)
    feedback: str = Field(min_length=1, max_length=MAX_TEXT)


class EmptyBody(_Body):
    """``POST /sessions/{id}/abort``: no fields (an empty body or ``{}``)."""
