"""A development server for the execution API: ``python -m keel.api -w ROOT [-w ROOT...]``.

``keel dashboard`` serves the same sub-application under ``/api/v1`` (docs/reference/api.md);
this entry point serves it alone, on loopback by default, for tests, benchmarks and trying
the API out. The token comes from the variable ``[dashboard] api_token_env`` names
(``KEEL_API_TOKEN`` by default); without it the server refuses to start. It logs
``listening on http://HOST:PORT`` on stderr once it accepts connections (``--port 0``
picks a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from keel.config import user_config

from .app import MIN_TOKEN, api_token, build_api_app

log = logging.getLogger("keel.api")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m keel.api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "-w",
        "--workspace-root",
        action="append",
        required=True,
        metavar="ROOT",
        help="a directory under which workspaces may be (repeatable)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace, roots: list[Path], token: str) -> None:
    root = web.Application()
    root.add_subapp("/api/v1", build_api_app(roots, token=token, env=os.environ))
    runner = web.AppRunner(root, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    log.warning("listening on http://%s:%s/api/v1", args.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="keel.api: %(message)s")
    args = parse(argv)
    token = api_token(os.environ)
    if token is None:
        name = user_config(os.environ).dashboard.api_token_env
        sys.stderr.write(f"keel.api: set {name} to the API token (at least {MIN_TOKEN} chars)\n")
        return 2
    if len(token) < MIN_TOKEN:
        sys.stderr.write(f"keel.api: the API token must be at least {MIN_TOKEN} characters\n")
        return 2
    roots = [Path(r).resolve() for r in args.workspace_root]
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        sys.stderr.write(f"keel.api: no such directory: {', '.join(missing)}\n")
        return 2
    asyncio.run(serve(args, roots, token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
