"""The verifier: runs the sensors over a sandbox and turns what they see into energy.

Sensors per node: the contract (V_str), each owning plugin's checker (V_syn) and tests
(V_log), the node's commands and the plugins' build/init checks (V_boot). After the last node
the sheaf check runs the whole-workspace sensors and charges everything they find to V_sheaf.
On an unstable attempt the verifier *tier* (a model) analyses the evidence for the next one.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from keel.engine import prompts
from keel.engine.baseline import Baseline, mark
from keel.engine.bounds import UNBOUNDED_FILE_CHARS
from keel.engine.contracts import check_contract
from keel.engine.energy import measure
from keel.engine.gateway import ModelGateway
from keel.engine.guard import changed_for_prompt
from keel.engine.models import (
    CommandResult,
    Component,
    Energy,
    EnergyWeights,
    NodeKind,
    Residual,
    SensorReport,
    Tier,
)
from keel.engine.ports import LanguagePlugin, ProviderError
from keel.engine.replies import PlanNode, VerifierReport

SKIPPED_DIRS = {".git", ".keel", ".venv", "venv", "node_modules", "__pycache__", "target", ".tox"}


def tree_files(root: Path) -> list[str]:
    """Every file under ``root`` (relative, sorted), skipping VCS, store and build directories."""
    found: list[str] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS and not d.startswith("."))
        base = Path(directory).relative_to(root)
        found.extend((base / name).as_posix() for name in files)
    return sorted(found)


MAX_DIRECTORY_FILES = 200


def read_texts(root: Path, paths: Iterable[str], limit: int = 64_000) -> dict[str, str | None]:
    """Text of each path (``None`` when absent), cut at ``limit`` characters for prompts.

    A path naming a directory stands for the files under it (up to
    :data:`MAX_DIRECTORY_FILES`, as ``dir/file`` keys): a node owning ``pkg/`` owns, reads
    and is checked on every file in it. A directory with no file is absent (``None``).

    A path whose symbolic links lead outside ``root`` counts as absent: a sandboxed command
    can leave a link to ``~/.ssh/id_rsa`` in its tree, and Keel reads the tree unconfined.
    """
    texts: dict[str, str | None] = {}
    base = root.resolve()
    for path in paths:
        try:
            if _is_directory(root / path):
                inside = tree_files(root / path)[:MAX_DIRECTORY_FILES]
                if not inside:
                    texts[path] = None
                for name in inside:
                    texts.update(read_texts(root, [f"{path}/{name}"], limit))
                continue
            if not (root / path).resolve().is_relative_to(base):
                raise FileNotFoundError(path)
            text = (root / path).read_text(errors="replace")
        except (OSError, ValueError):  # absent, a directory, a name too long, a NUL byte
            texts[path] = None
            continue
        texts[path] = text if len(text) <= limit else text[:limit] + "\n[... cut ...]\n"
    return texts


def _is_directory(location: Path) -> bool:
    return stat.S_ISDIR(location.lstat().st_mode)


def command_report(results: Sequence[CommandResult]) -> SensorReport:
    residuals = []
    for result in results:
        if result.ok:
            continue
        if result.refused:
            message = f"not run: {result.refused}"
        elif result.timed_out:
            message = "timed out"
        else:
            tail = "\n".join(result.output.strip().splitlines()[-15:])
            message = f"failed{(': ' + tail) if tail else ''}"
        residuals.append(
            Residual(
                Component.BOOT,
                message,
                "command",
                command=result.command,
                exit_code=result.exit_code,
            )
        )
    return SensorReport("commands", tuple(residuals))


class Verifier:
    """Measures nodes and the whole workspace with the plugins' real tools."""

    def __init__(
        self,
        plugins: Sequence[LanguagePlugin],
        weights: EnergyWeights,
        *,
        defer_tests: bool,
        baseline: Baseline | None = None,
    ) -> None:
        """``baseline``: what was already wrong at HEAD; matching residuals do not count."""
        self._plugins = list(plugins)
        self._weights = weights
        self._defer_tests = defer_tests
        self.baseline = baseline

    def _owning(self, files: Iterable[str]) -> dict[str, list[str]]:
        by_plugin: dict[str, list[str]] = {p.name: [] for p in self._plugins}
        for path in files:
            for plugin in self._plugins:
                if plugin.owns_file(path):
                    by_plugin[plugin.name].append(path)
                    break
        return by_plugin

    async def measure_node(
        self,
        node: PlanNode,
        sandbox: Path,
        commands: Sequence[CommandResult],
        deleted: Iterable[str] = (),
        extra: Sequence[SensorReport] = (),
    ) -> Energy:
        """The node's energy in ``sandbox``; ``deleted`` are owned files its bundle deletes,
        ``extra`` what the engine found about the bundle itself."""
        owned = await asyncio.to_thread(read_texts, sandbox, node.owns)
        existing = [path for path, text in owned.items() if text is not None]
        reports = [check_contract(node, owned, deleted), command_report(commands), *extra]
        by_plugin = self._owning(existing)
        all_files = await asyncio.to_thread(tree_files, sandbox)
        jobs = []
        for plugin in self._plugins:
            mine = by_plugin[plugin.name]
            if mine:
                jobs.append(plugin.check(sandbox, mine))
            jobs.append(plugin.bootstrap(sandbox))
            tests = self._tests_for(node, plugin, mine, all_files)
            if tests:
                jobs.append(plugin.run_tests(sandbox, tests))
        reports.extend(await asyncio.gather(*jobs))
        relative = await asyncio.to_thread(within, reports, sandbox)
        return measure(mark(relative, self.baseline), self._weights)

    def _tests_for(
        self, node: PlanNode, plugin: LanguagePlugin, mine: list[str], all_files: list[str]
    ) -> list[str]:
        """V_log's scope: a test node's own tests; for other nodes, the existing suite."""
        if self._defer_tests:
            return []
        if node.kind is NodeKind.UNIT_TEST:
            return [path for path in mine if plugin.is_test_file(path)]
        return [path for path in all_files if plugin.owns_file(path) and plugin.is_test_file(path)]

    async def sheaf(
        self, sandbox: Path, files: Sequence[str], extra: Sequence[SensorReport] = ()
    ) -> Energy:
        """Whole-workspace consistency: imports resolve, the checker and the full suite pass.

        ``extra`` are more findings about the same files (the editor's diagnostics of them,
        under ``keel serve``); like every sensor's here they count as V_sheaf.
        """
        by_plugin = self._owning(files)
        all_files = await asyncio.to_thread(tree_files, sandbox)
        jobs = []
        for plugin in self._plugins:
            mine = by_plugin[plugin.name]
            if not mine:
                continue
            jobs += [plugin.cross_check(sandbox, mine), plugin.check(sandbox, mine)]
            if any(plugin.owns_file(p) and plugin.is_test_file(p) for p in all_files):
                jobs.append(plugin.run_tests(sandbox, None))
        found = [*await asyncio.gather(*jobs), *extra]
        reports = mark(await asyncio.to_thread(within, found, sandbox), self.baseline)
        return measure([_as_sheaf(report) for report in reports], self._weights)

    async def measure_baseline(
        self, sandbox: Path, files: Sequence[str], *, with_tests: bool
    ) -> tuple[list[SensorReport], list[SensorReport], list[SensorReport]]:
        """The workspace at HEAD in ``sandbox``: (tests, build checks, checker) reports.

        The whole suite and the build checks run only ``with_tests`` (the first measurement
        at a commit); the checker runs over ``files``, the plan's files that exist there.
        """
        by_plugin = self._owning(files)
        all_files = await asyncio.to_thread(tree_files, sandbox) if with_tests else []
        tests, boot, checks = [], [], []
        for plugin in self._plugins:
            if with_tests:
                if any(plugin.owns_file(p) and plugin.is_test_file(p) for p in all_files):
                    tests.append(plugin.run_tests(sandbox, None))
                boot.append(plugin.bootstrap(sandbox))
            if by_plugin[plugin.name]:
                checks.append(plugin.check(sandbox, by_plugin[plugin.name]))
        return (
            list(await asyncio.gather(*tests)),
            list(await asyncio.gather(*boot)),
            list(await asyncio.gather(*checks)),
        )


def _as_sheaf(report: SensorReport) -> SensorReport:
    return replace(
        report, residuals=tuple(replace(r, component=Component.SHEAF) for r in report.residuals)
    )


async def analyse(
    gateway: ModelGateway,
    task: str,
    node: PlanNode,
    bundle_summary: str,
    energy: Energy,
    attempt: int,
    changes: Mapping[str, bytes | None] | None = None,
    reason: str = "",
) -> VerifierReport | None:
    """The verifier tier's root-cause analysis of an unstable attempt (advisory: may be None),
    shown the files the attempt ``changes`` (within the prompt bound; ``reason`` names it)."""
    room = gateway.prompt_room(prompts.VERIFIER_SYSTEM)
    files = changed_for_prompt(changes or {}, UNBOUNDED_FILE_CHARS if room is None else room)
    prompt = prompts.verifier_prompt(
        task,
        node,
        bundle_summary,
        energy.evidence,
        energy.as_dict(),
        files,
        room=room,
        reason=reason,
    )
    try:
        reply = await gateway.ask(
            Tier.VERIFIER,
            VerifierReport,
            system=prompts.VERIFIER_SYSTEM,
            prompt=prompt,
            node_id=node.id,
            attempt=attempt,
        )
    except ProviderError:
        return None
    return reply.value


def evidence_dicts(evidence: Iterable[Residual]) -> list[dict[str, object]]:
    """Evidence as JSON; a residual present at baseline has ``"baseline": true`` and its
    commit in ``baseline_at``."""
    out: list[dict[str, object]] = []
    for r in evidence:
        item: dict[str, object] = {
            key: value for key, value in vars(r).items() if value is not None and key != "baseline"
        }
        item["component"] = r.component.value
        if r.baseline is not None:
            item |= {"baseline": True, "baseline_at": r.baseline}
        out.append(item)
    return out


def energy_summary(energy: Energy) -> Mapping[str, float]:
    return energy.as_dict()


def within(reports: Iterable[SensorReport], sandbox: Path) -> list[SensorReport]:
    """``reports`` with the sandbox's absolute path taken out of their messages: tools print
    it (pytest's tracebacks, a checker's file names), and the model then writes patches for
    it, and the user reads a temporary directory's name. Paths become workspace-relative."""
    roots = sorted({str(sandbox), str(sandbox.resolve())}, key=len, reverse=True)
    # The sandbox itself, not a sibling whose name it begins (``.../n1/1`` in ``.../n1/10``).
    bare = [re.compile(re.escape(root) + r"(?![\w.-])") for root in roots]

    def relative(message: str) -> str:
        for root, alone in zip(roots, bare, strict=True):
            message = alone.sub(".", message.replace(root + os.sep, ""))
        return message

    out = []
    for report in reports:
        residuals = tuple(replace(r, message=relative(r.message)) for r in report.residuals)
        out.append(replace(report, residuals=residuals))
    return out
