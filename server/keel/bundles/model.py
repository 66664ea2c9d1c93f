"""The ``artifact_bundle`` reply (docs/reference/protocol.md): what one node wants to change.

It lives here, below the engine, because applying it needs nothing but the file system.
``extra="forbid"`` makes a misspelt key a schema violation fed back to the model rather than
silently dropped content.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class FileWrite(_Strict):
    path: str = Field(min_length=1)
    content: str


class FileDiff(_Strict):
    path: str = Field(min_length=1)
    patch: str = Field(min_length=1)


class ArtifactBundle(_Strict):
    writes: list[FileWrite] = Field(default_factory=list)
    diffs: list[FileDiff] = Field(default_factory=list)
    deletes: list[str] = Field(default_factory=list)
    commands: list[str] = Field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.writes or self.diffs or self.deletes or self.commands)
