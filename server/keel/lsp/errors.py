"""The JSON-RPC errors Keel's commands answer with.

``InvalidParams`` (-32602) when the request itself is wrong (malformed arguments, an unknown
or already decided bundle); LSP's ``RequestFailed`` (-32803) when it was well formed but
refused (an unstable bundle, a conflict with the user's edits, an editor that did not
apply the edit). The message always says why, and what happens to the bundle.
"""

from __future__ import annotations

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams


class RequestFailed(JsonRpcException):
    """LSP ``RequestFailed``: a syntactically correct request that could not be done."""

    CODE = -32803


def failed(message: str) -> RequestFailed:
    return RequestFailed(message=message)


def invalid(message: str) -> JsonRpcInvalidParams:
    return JsonRpcInvalidParams(message=message)
