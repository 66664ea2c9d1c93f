"""The composition root: the one place that knows every adapter and wires them to the engine.

Everything else receives its collaborators; nothing reaches for a global. Tests build engines
through :func:`open_engine` with their own sink, approver and environment; the language
server gets its workspaces from :func:`create_server` (one shared store and ledger each).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keel.config import KeelConfig
from keel.context.explore import WorkspaceExplorer
from keel.context.inventory import Inventory, secret_looking
from keel.context.repomap import RepositoryMap
from keel.dashboard.registry import remember as remember_workspace
from keel.engine.models import Tier
from keel.engine.modes import ReadOnlyModes
from keel.engine.planner import PlanScope
from keel.engine.planning import PreviousSession
from keel.engine.ports import (
    Approver,
    EventSink,
    ExplorationTools,
    KeelError,
    ModelClient,
    Sandbox,
    StructuredModeMemory,
)
from keel.engine.redaction import Redactor, secrets_in
from keel.engine.session import Engine
from keel.faults import Faults
from keel.ledger import GitLedger
from keel.plugins.environment import KEEL_SOURCE, ProjectEnvironment, detect_environment
from keel.plugins.registry import detect_languages, detect_plugins
from keel.process import StartGate, SubprocessRunner
from keel.providers import ProviderSettings, build_model_client
from keel.providers.base import DEFAULT_API_KEY_ENV
from keel.sandbox import SandboxOptions, SandboxUnavailable, open_sandbox
from keel.store import SqliteSessionRecords as SqliteSessionRecords
from keel.store import SqliteStore as SqliteStore
from keel.store.lock import WorkspaceLock

if TYPE_CHECKING:
    from keel.lsp import KeelLanguageServer

log = logging.getLogger(__name__)


def store_path(workspace: Path) -> Path:
    return workspace / ".keel" / "keel.db"


def provider_settings(config: KeelConfig, env: Mapping[str, str]) -> ProviderSettings:
    compatible = config.providers.get("openai-compatible")
    key_env = {name: p.api_key_env for name, p in config.providers.items() if p.api_key_env}
    return ProviderSettings(
        env=env,
        openai_compatible_base_url=compatible.base_url if compatible else None,
        api_key_env={**DEFAULT_API_KEY_ENV, **key_env},
        timeout_s=config.network.timeout_s,
        max_retries=config.network.max_retries,
        retry_base_delay_s=config.network.retry_base_delay_s,
        prices=dict(config.prices),
        structured=compatible.structured if compatible else "auto",
    )


def model_clients(config: KeelConfig, env: Mapping[str, str]) -> dict[Tier, ModelClient]:
    """One client per distinct model name; tiers naming the same model share it."""
    settings = provider_settings(config, env)
    by_name: dict[str, ModelClient] = {}
    clients = {}
    for tier in Tier:
        spec = config.models.for_tier(tier)
        if spec not in by_name:
            by_name[spec] = build_model_client(spec, settings)
        clients[tier] = by_name[spec]
    return clients


def building_clients(
    config: KeelConfig, env: Mapping[str, str]
) -> asyncio.Task[dict[Tier, ModelClient]]:
    """:func:`model_clients`, built in a thread: importing an SDK and making its TLS context
    take a few hundred milliseconds of CPU, which then overlap the set-up that waits on
    subprocesses (the sandbox probe, the project's environment) instead of following it.
    Await the task, or give it to :func:`discard_clients` when that set-up fails."""
    return asyncio.create_task(asyncio.to_thread(_built_clients, config, env))


def _built_clients(config: KeelConfig, env: Mapping[str, str]) -> dict[Tier, ModelClient]:
    clients = model_clients(config, env)
    # The SDKs name the platform in a header of their first request: platform.platform()
    # runs `uname -p` (tens of milliseconds) once per process. Asked here, it is cached by
    # the time the first request goes out.
    platform.platform()
    return clients


async def discard_clients(building: asyncio.Task[dict[Tier, ModelClient]]) -> None:
    """The session's set-up failed: close the clients being built. Their own error (a missing
    API key) is dropped: the set-up's error, raised first, is the one the user sees."""
    try:
        clients = await building
    except Exception:
        return
    await close_clients(clients)


async def close_clients(clients: Mapping[Tier, ModelClient]) -> None:
    for client in {id(c): c for c in clients.values()}.values():
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()


def remember_structured_modes(
    clients: Mapping[Tier, ModelClient], memory: StructuredModeMemory
) -> None:
    """Clients that negotiate structured output (``openai-compatible``) recall and remember
    the mode each endpoint takes in ``memory``, the workspace's store."""
    for client in clients.values():
        use_memory = getattr(client, "use_memory", None)
        if use_memory is not None:
            use_memory(memory)


def secrets_of(env: Mapping[str, str], config: KeelConfig | None = None) -> dict[str, str]:
    """The values that must never be stored or logged: every configured API key and every
    variable named like a credential (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``, ...)."""
    names = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    if config is not None:
        names |= {p.api_key_env for p in config.providers.values() if p.api_key_env}
    return {**secrets_in(env), **{name: env[name] for name in names if env.get(name)}}


def command_runner(
    env: Mapping[str, str],
    environment: ProjectEnvironment | None = None,
    sandbox: Sandbox | None = None,
    config: KeelConfig | None = None,
    *,
    verification: bool = True,
) -> SubprocessRunner:
    """Commands find the project's interpreter first, then Keel's, so ``python -m pytest``
    runs in the project's environment when it has one and works out of the box otherwise.

    Every command of a session runs in ``sandbox`` (see :func:`session_sandbox`), which also
    lets them read the project's environment (its virtualenv or toolchain), at the lower
    priority of ``[commands] niceness``, their starts spread by ``start_interval_ms``.
    ``verification=False`` is for Keel's own probes on the way to a session's first model
    call (the project's interpreter): they run at Keel's priority, as they delay it.
    """
    commands = (config or KeelConfig()).commands
    dirs = [str(Path(sys.executable).parent), env.get("PATH", os.defpath)]
    extra: dict[str, str] = {}
    python = environment.python if environment else None
    if python is not None and python.source != KEEL_SOURCE:
        dirs.insert(0, str(python.bin_dir))
        if python.virtual and python.prefix is not None:
            extra["VIRTUAL_ENV"] = str(python.prefix)
    return SubprocessRunner(
        base_env=dict(env),
        extra_env={**extra, "PATH": os.pathsep.join(dirs)},
        sandbox=sandbox,
        readonly_paths=environment.readonly_paths if environment else (),
        niceness=commands.niceness if verification else 0,
        start_gate=StartGate(commands.start_interval_ms / 1000),
    )


async def session_sandbox(workspace: Path, config: KeelConfig, env: Mapping[str, str]) -> Sandbox:
    """The sandbox of a session's commands; raises ``SandboxUnavailable`` naming the fix.

    With ``[sandbox] mode = "off"`` the commands run unconfined, and the log says so here
    (the session's events and ``status`` say so too).
    """
    c = config.sandbox
    options = SandboxOptions(
        network=c.network,
        memory_mb=c.memory_mb,
        readonly_paths=tuple(map(Path, c.readonly_paths)),
    )
    sandbox = await asyncio.to_thread(open_sandbox, c.mode, workspace, options, env)
    if sandbox.mode == "off":
        log.warning("%s: %s", workspace, sandbox.describe()["warning"])
    return sandbox


async def sandbox_missing(workspace: Path, config: KeelConfig) -> str | None:
    """Why no sandbox can be made here (the message names the fix), or ``None``."""
    try:
        await session_sandbox(workspace, config, os.environ)
    except SandboxUnavailable as exc:
        return str(exc)
    return None


async def project_environment(
    workspace: Path, task: str, config: KeelConfig, env: Mapping[str, str]
) -> ProjectEnvironment:
    """The project's own interpreter and caches (``keel.plugins.environment``)."""
    detection = await asyncio.to_thread(detect_languages, workspace, task)
    return await detect_environment(
        workspace,
        detection.languages,
        env,
        interpreter=config.python.interpreter,
        runner=command_runner(env, config=config, verification=False),
    )


@dataclass
class Services:
    """The adapters of one workspace, for commands that do not run a session."""

    ledger: GitLedger
    store: SqliteStore


@asynccontextmanager
async def open_services(
    workspace: Path, faults: Faults | None = None, secrets: Mapping[str, str] | None = None
) -> AsyncIterator[Services]:
    """The ledger and the store; the store redacts ``secrets`` (default: the environment's)
    from every record before writing it."""
    ledger = await GitLedger.open(workspace, faults=faults)
    redactor = Redactor(secrets_of(os.environ) if secrets is None else secrets)
    store = await SqliteStore.open(store_path(workspace), redactor)
    try:
        yield Services(ledger, store)
    finally:
        await store.close()


@asynccontextmanager
async def open_engine(
    workspace: Path,
    task: str,
    config: KeelConfig,
    *,
    sink: EventSink,
    approver: Approver,
    auto_approve: bool,
    env: Mapping[str, str] | None = None,
    previous: PreviousSession | None = None,
) -> AsyncIterator[Engine]:
    """Build an engine for ``workspace``; closes the store and model clients afterwards.

    ``previous``: the finished session a follow-up continues (the API's ``continue``)."""
    env = dict(os.environ if env is None else env)
    building = building_clients(config, env)
    try:
        sandbox = await session_sandbox(workspace, config, env)
        environment = await project_environment(workspace, task, config, env)
    except BaseException:
        await discard_clients(building)
        raise
    clients = await building
    runner = command_runner(env, environment, sandbox, config)
    faults = Faults.from_env(env)
    secrets = secrets_of(env, config)
    lock = WorkspaceLock(workspace / ".keel")
    await asyncio.to_thread(lock.acquire)
    await asyncio.to_thread(remember_workspace, workspace, env)
    try:
        async with open_services(workspace, faults, secrets) as services:
            remember_structured_modes(clients, services.store)
            yield Engine(
                workspace=workspace,
                clients=clients,
                plugins=detect_plugins(workspace, task, runner=runner, environment=environment),
                ledger=services.ledger,
                store=services.store,
                runner=runner,
                sink=sink,
                approver=approver,
                settings=config.engine_settings(auto_approve=auto_approve),
                secrets=secrets,
                faults=faults,
                sandbox=sandbox.describe(),
                environment=environment.record(),
                environment_notes=environment.warnings(),
                explorer=exploration_tools(workspace, config),
                context=repository_context(workspace),
                previous=previous,
            )
    finally:
        lock.release()
        for client in {id(c): c for c in clients.values()}.values():
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()


@asynccontextmanager
async def open_modes(
    workspace: Path,
    config: KeelConfig,
    *,
    task: str = "",
    env: Mapping[str, str] | None = None,
    scope: PlanScope | None = None,
) -> AsyncIterator[ReadOnlyModes]:
    """``keel plan`` and ``keel explain``: the model clients and plugins of a session, and
    nothing that writes (no lock, store, ledger or repository)."""
    env = dict(os.environ if env is None else env)
    clients = await building_clients(config, env)  # off the loop: `keel serve` keeps answering
    try:
        runner = command_runner(env, config=config)
        plugins = await asyncio.to_thread(detect_plugins, workspace, task, runner=runner)
        yield ReadOnlyModes(
            workspace=workspace,
            clients=clients,
            plugins=plugins,
            settings=config.engine_settings(auto_approve=False),
            secrets=secrets_of(env, config),
            scope=scope,
            # No cache: plan and explain write nothing, not even into an existing .keel/.
            context=RepositoryMap(workspace),
            explorer=exploration_tools(workspace, config, cache=False),
        )
    finally:
        for client in {id(c): c for c in clients.values()}.values():
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()


def exploration_tools(
    workspace: Path, config: KeelConfig, *, cache: bool = True
) -> ExplorationTools | None:
    """The architect's read-only tools over the workspace's inventory (``None``: switched
    off with ``[context] explore_turns = 0`` or ``explore_tokens = 0``). The inventory's
    cache is used only when ``.keel/`` exists, and never with ``cache=False`` (``keel plan``
    and ``keel explain`` write nothing, not even into an existing ``.keel/``)."""
    if config.context.explore_turns <= 0 or config.context.explore_tokens <= 0:
        return None

    async def inventory() -> Inventory:  # listed when the architect first calls a tool
        keel_dir = workspace / ".keel"
        kept = cache and await asyncio.to_thread(keel_dir.is_dir)
        return await Inventory.load(workspace, keel_dir / "context" if kept else None)

    return WorkspaceExplorer(workspace, secret=secret_looking, load=inventory)


class SharedWorkspace:
    """A workspace's store and ledger, shared by every session of one language server.

    The workspace lock is held while at least one session runs, so ``keel agent`` or
    ``keel resume`` in a terminal is refused during an editor session and allowed between
    them; reads (status, hover, the ledger) need no lock.
    """

    def __init__(
        self, workspace: Path, ledger: GitLedger, store: SqliteStore, env: Mapping[str, str]
    ):
        self._workspace = workspace
        self._ledger = ledger
        self._store = store
        self._env = dict(env)
        self._lock = WorkspaceLock(workspace / ".keel")
        self._running = 0
        self._context = repository_context(workspace)  # kept: its index stays warm

    @classmethod
    async def open(cls, workspace: Path, env: Mapping[str, str]) -> SharedWorkspace:
        ledger = await GitLedger.open(workspace, faults=Faults.from_env(env))
        store = await SqliteStore.open(store_path(workspace), Redactor(secrets_of(env)))
        return cls(workspace, ledger, store, env)

    @property
    def workspace(self) -> Path:
        return self._workspace

    @property
    def ledger(self) -> GitLedger:
        return self._ledger

    @property
    def store(self) -> SqliteStore:
        return self._store

    @asynccontextmanager
    async def engine(
        self, task: str, config: KeelConfig, *, sink: EventSink, approver: Approver
    ) -> AsyncIterator[Engine]:
        building = building_clients(config, self._env)
        try:
            sandbox = await session_sandbox(self._workspace, config, self._env)
            environment = await project_environment(self._workspace, task, config, self._env)
            runner = command_runner(self._env, environment, sandbox, config)
            plugins = await asyncio.to_thread(
                detect_plugins, self._workspace, task, runner=runner, environment=environment
            )
        except BaseException:
            await discard_clients(building)
            raise
        clients = await building
        remember_structured_modes(clients, self._store)
        try:
            if self._running == 0:
                await asyncio.to_thread(self._lock.acquire)
                await asyncio.to_thread(remember_workspace, self._workspace, self._env)
            self._running += 1
            try:
                yield Engine(
                    workspace=self._workspace,
                    clients=clients,
                    plugins=plugins,
                    ledger=self._ledger,
                    store=self._store,
                    runner=runner,
                    sink=sink,
                    approver=approver,
                    settings=config.engine_settings(auto_approve=False),
                    secrets=secrets_of(self._env, config),
                    faults=Faults.from_env(self._env),
                    sandbox=sandbox.describe(),
                    environment=environment.record(),
                    environment_notes=environment.warnings(),
                    explorer=exploration_tools(self._workspace, config),
                    context=self._context,
                )
            finally:
                self._running -= 1
                if self._running == 0:
                    self._lock.release()
        finally:
            for client in {id(c): c for c in clients.values()}.values():
                close = getattr(client, "aclose", None)
                if close is not None:
                    await close()

    async def close(self) -> None:
        await self._store.close()


def create_server(env: Mapping[str, str] | None = None) -> KeelLanguageServer:
    """The language server of ``keel serve``: a fresh instance, wired to the real adapters.

    The LSP libraries are imported here, not at the top: they cost most of a second, which
    every other command (``keel agent``, ``keel status``) would otherwise pay on start.
    """
    from keel.lsp import KeelLanguageServer

    environment = dict(os.environ if env is None else env)

    async def open_workspace(workspace: Path, session_env: Mapping[str, str]) -> SharedWorkspace:
        return await SharedWorkspace.open(workspace, session_env)

    def read_only_modes(
        workspace: Path, config: KeelConfig, task: str, session_env: Mapping[str, str]
    ) -> AbstractAsyncContextManager[ReadOnlyModes]:
        return open_modes(workspace, config, task=task, env=session_env)

    return KeelLanguageServer(
        open_workspace=open_workspace, env=environment, open_modes=read_only_modes
    )


def serve(tcp: tuple[str, int] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run ``keel serve``. Logs go to the client and to stderr; stdout is the protocol."""
    from keel.lsp import WindowLogMessageHandler, serve_stdio, serve_tcp
    from keel.lsp.log import configure as configure_logging
    from keel.lsp.transport import DEFAULT_LIMIT, DEFAULT_STALL_S

    environment = dict(os.environ if env is None else env)
    handler = WindowLogMessageHandler()
    configure_logging(handler)
    server = create_server(environment)
    server.log_handler = handler
    limit = int(environment.get("KEEL_LSP_MAX_MESSAGE_BYTES") or DEFAULT_LIMIT)
    stall_s = float(environment.get("KEEL_LSP_STALL_S") or DEFAULT_STALL_S)
    if tcp is None:
        return serve_stdio(server, limit, stall_s)
    return serve_tcp(server, tcp[0], tcp[1], limit, stall_s)


def repository_context(workspace: Path) -> RepositoryMap:
    """The workspace's ranked repository map, caching its parses under ``.keel/context``
    when ``.keel/`` exists (a read-only command such as ``keel map`` never creates it)."""
    return RepositoryMap(
        workspace, cache_dir=workspace / ".keel" / "context", cache_only_if=workspace / ".keel"
    )


def workspace_busy(workspace: Path) -> str | None:
    """Why a session cannot start in ``workspace`` now (another holds its lock), or ``None``.

    Blocking (a file lock); call it in a thread. Nothing is created when ``.keel/`` is absent.
    """
    if not (workspace / ".keel").is_dir():
        return None
    lock = WorkspaceLock(workspace / ".keel")
    try:
        lock.acquire()
    except KeelError as exc:
        return str(exc)
    lock.release()
    return None


async def open_ledger(workspace: Path) -> GitLedger:
    """The ledger of an existing repository (the execution API's diffs and ledger): never
    ``git init``, no store. Raises :class:`~keel.engine.ports.ConfigError` outside a repository."""
    return await GitLedger.open(workspace, create=False)
