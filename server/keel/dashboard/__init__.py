"""``keel dashboard``: every session of every workspace, live, in the browser.

An adapter: it reads the session stores read-only (``queries``), renders server-side HTML
(``render``) and serves it with aiohttp (``server``); ``registry`` remembers the workspaces Keel
ran in. Importing this package imports nothing heavy: ``keel.app`` calls :func:`remember` on
every session start, and aiohttp is only imported by ``keel.dashboard.server``.
"""

from keel.dashboard.registry import known_workspaces, registry_path, remember

__all__ = ["known_workspaces", "registry_path", "remember"]
