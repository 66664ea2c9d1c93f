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
    path: str = Field(min_length=1, description="a file the node owns (workspace-relative)")
    content: str = Field(description="the complete new content of the file")


class FileDiff(_Strict):
    path: str = Field(min_length=1, description="an existing file the node owns")
    patch: str = Field(
        min_length=1, description="a unified diff: --- a/path, +++ b/path, then @@ hunks"
    )


class ArtifactBundle(_Strict):
    writes: list[FileWrite] = Field(
        default_factory=list, description="whole files to write: new files, or full rewrites"
    )
    diffs: list[FileDiff] = Field(default_factory=list, description="small edits to existing files")
    deletes: list[str] = Field(default_factory=list, description="owned files to delete")
    commands: list[str] = Field(
        default_factory=list,
        description="shell commands run in a sandbox after the files are written to check "
        'them (e.g. "python -m pytest -q test_x.py"); they must actually run the tests',
    )

    def is_empty(self) -> bool:
        return not (self.writes or self.diffs or self.deletes or self.commands)
