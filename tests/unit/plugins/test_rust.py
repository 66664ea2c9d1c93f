"""The Rust plugin against real cargo and real crates (skipped, saying why, without cargo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.engine.models import Component
from keel.engine.ports import LanguagePlugin
from keel.plugins.rust import RustPlugin, find_cargo

from .conftest import WriteTree

needs_cargo = pytest.mark.skipif(
    find_cargo() is None, reason="cargo is neither on PATH nor in ~/.cargo/bin"
)

MANIFEST = '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n'

LIB = """
pub fn add(a: i32, b: i32) -> i32 {
    a + b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds() {
        assert_eq!(add(1, 2), 3);
    }

    #[test]
    fn adds_wrong() {
        assert_eq!(add(1, 2), 4, "one plus two");
    }
}
"""

INTEGRATION = """
#[test]
fn boom() {
    panic!("boom");
}

#[test]
fn fine() {}
"""

TYPE_ERROR = """
pub fn add(a: i32, b: i32) -> i32 {
    let s: i32 = "x";
    a + b + s
}
"""


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cargo target directory for the module's crates: compiled once, reused."""
    return tmp_path_factory.mktemp("cargo-target")


def test_the_plugin_implements_the_port() -> None:
    plugin: LanguagePlugin = RustPlugin()
    assert plugin.name == "rust"


@needs_cargo
async def test_cargo_check_reports_a_type_error(write_tree: WriteTree, target_dir: Path) -> None:
    root = write_tree({"Cargo.toml": MANIFEST, "src/lib.rs": TYPE_ERROR})
    report = await RustPlugin(target_dir=target_dir / "a").check(root, ["src/lib.rs"])
    assert not report.degraded
    [residual] = report.residuals
    assert residual.component is Component.SYN and residual.magnitude == 1.0
    assert (residual.path, residual.line) == ("src/lib.rs", 2)
    assert residual.message.startswith("error[E0308] mismatched types")


@needs_cargo
async def test_failing_tests_are_parsed_per_test(write_tree: WriteTree, target_dir: Path) -> None:
    root = write_tree({"Cargo.toml": MANIFEST, "src/lib.rs": LIB, "tests/it.rs": INTEGRATION})
    plugin = RustPlugin(target_dir=target_dir / "b")
    check = await plugin.check(root, ["src/lib.rs"])
    assert check.residuals == ()
    report = await plugin.run_tests(root, None)
    by_id = {r.test_id: r for r in report.residuals}
    assert set(by_id) == {"src/lib.rs::tests::adds_wrong", "tests/it.rs::boom"}
    wrong = by_id["src/lib.rs::tests::adds_wrong"]
    assert wrong.component is Component.LOG
    assert "one plus two" in wrong.message
    assert (wrong.path, wrong.line) == ("src/lib.rs", 16)
    boom = by_id["tests/it.rs::boom"]
    assert (boom.message, boom.path, boom.line) == ("boom", "tests/it.rs", 3)

    only_integration = await plugin.run_tests(root, ["tests/it.rs"])
    assert [r.test_id for r in only_integration.residuals] == ["tests/it.rs::boom"]


@needs_cargo
async def test_a_crate_that_does_not_compile_is_one_test_residual(
    write_tree: WriteTree, target_dir: Path
) -> None:
    root = write_tree({"Cargo.toml": MANIFEST, "src/lib.rs": TYPE_ERROR})
    report = await RustPlugin(target_dir=target_dir / "a").run_tests(root, None)
    [residual] = report.residuals
    assert residual.message.startswith("does not compile: error[E0308]")
    assert (residual.path, residual.line) == ("src/lib.rs", 2)


async def test_missing_cargo_is_degraded(write_tree: WriteTree) -> None:
    root = write_tree({"Cargo.toml": MANIFEST, "src/lib.rs": LIB})
    plugin = RustPlugin(tool_finder=lambda name: None)
    for report in (await plugin.check(root, ["src/lib.rs"]), await plugin.run_tests(root, None)):
        assert report.degraded
        assert report.residuals[0].component is Component.BOOT
        assert report.residuals[0].message.startswith("cargo not found")


async def test_bootstrap_checks_the_manifest(write_tree: WriteTree) -> None:
    plugin = RustPlugin()
    good = write_tree({"Cargo.toml": MANIFEST})
    assert (await plugin.bootstrap(good)).residuals == ()
    (good / "Cargo.toml").write_text('[package]\nversion = "1"\n')
    [residual] = (await plugin.bootstrap(good)).residuals
    assert residual.message == "[package] has no name" and residual.component is Component.BOOT
    (good / "Cargo.toml").write_text('[workspace]\nmembers = ["a"]\n')
    assert (await plugin.bootstrap(good)).residuals == ()
    (good / "Cargo.toml").write_text("[package\n")
    [residual] = (await plugin.bootstrap(good)).residuals
    assert residual.message.startswith("Cargo.toml does not parse")


async def test_cross_check_is_covered_by_cargo_check(write_tree: WriteTree) -> None:
    report = await RustPlugin().cross_check(write_tree({}), ["src/lib.rs"])
    assert report.residuals == () and "cargo check" in report.detail


def test_files() -> None:
    plugin = RustPlugin()
    assert plugin.owns_file("src/lib.rs") and plugin.owns_file("Cargo.toml")
    assert not plugin.owns_file("src/lib.py")
    assert plugin.is_test_file("tests/it.rs") and not plugin.is_test_file("src/lib.rs")


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("cargo check", True),
        ("cargo test --no-fail-fast", True),
        ("cargo build --release", True),
        ("cargo clippy --all-targets", True),
        ("cargo fmt --check", True),
        ("cargo fmt", False),
        ("cargo clippy --fix", False),
        ("cargo +nightly check", False),
        ("cargo check -Zunstable-options", False),
        ("cargo install ripgrep", False),
        ("cargo run", False),
        ("cargo test; rm -rf /", False),
        ("cargo check && cargo publish", False),
        ("rustc main.rs", False),
    ],
)
def test_command_allowed(command: str, allowed: bool) -> None:
    assert RustPlugin().command_allowed(command) is allowed
