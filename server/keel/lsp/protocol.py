"""The JSON-RPC protocol with Keel's own messages: their params arrive as plain JSON.

Without a registered type pygls turns unknown messages' params into nested namedtuples that
rename keys; Keel validates its messages itself (``keel.lsp.args``), so ``keel/*`` methods
are structured as raw JSON values instead.
"""

from __future__ import annotations

from typing import Any

import attrs
from pygls.protocol import LanguageServerProtocol


@attrs.define
class RawNotification:
    # No defaults: lsprotocol's converter leaves out fields equal to their default.
    params: Any
    method: str
    jsonrpc: str


@attrs.define
class RawRequest:
    id: int | str
    params: Any
    method: str
    jsonrpc: str


class KeelProtocol(LanguageServerProtocol):
    """``keel/*`` requests and notifications keep their params as plain dicts and lists."""

    def get_message_type(self, method: str) -> type[Any] | None:  # type: ignore[override]
        if method.startswith("keel/"):
            return RawNotification
        return super().get_message_type(method)

    def structure_message(self, data: dict[str, Any]) -> Any:
        method = data.get("method")
        if "jsonrpc" in data and isinstance(method, str) and method.startswith("keel/"):
            if "id" in data and "error" not in data:
                return RawRequest(data["id"], data.get("params"), method, data["jsonrpc"])
            if "id" not in data:
                return RawNotification(data.get("params"), method, data["jsonrpc"])
        return super().structure_message(data)
