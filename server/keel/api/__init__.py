"""The execution API: ``/api/v1`` over HTTP (aiohttp), for CI systems, bots and tools.

``keel dashboard`` mounts :func:`build_api_app` under ``/api/v1``; ``python -m keel.api``
serves it alone for development. See docs/reference/api.md.
"""

from __future__ import annotations

from .app import api_token, build_api_app

__all__ = ["api_token", "build_api_app"]
