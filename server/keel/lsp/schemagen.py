"""The published forms of ``keel.lsp.payloads``: JSON Schema, TypeScript and LuaCATS.

``scripts/protocol-schema`` writes the three files (``--check`` compares instead);
``tests/unit/lsp/test_protocol_drift.py`` fails when a checked-in file is not what this
module renders, or when a client's types name other keys than the schema. Each file is a
pure function of the schema, so the clients read exactly the keys the server sends.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keel.lsp.payloads import schema

SCHEMA_PATH = Path("docs/reference/lsp.schema.json")
TYPESCRIPT_PATH = Path("extensions/vscode/src/common/payloads.ts")
LUA_PATH = Path("extensions/neovim/lua/keel/payloads.lua")
LUA_PREFIX = "keel.proto."
_HEADER = "Generated from docs/reference/lsp.schema.json by scripts/protocol-schema: do not edit."


def render_schema(document: dict[str, Any] | None = None) -> str:
    return json.dumps(document or schema(), indent=2, ensure_ascii=False) + "\n"


def _name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _doc(text: str | None) -> str:
    """A description on one line, without reStructuredText's double backquotes."""
    return " ".join((text or "").replace("``", "`").split())


# -- TypeScript ------------------------------------------------------------------------------


def _ts(node: dict[str, Any]) -> str:
    if "$ref" in node:
        return _name(node["$ref"])
    if "anyOf" in node:
        return " | ".join(_ts(option) for option in node["anyOf"])
    if "const" in node:
        return json.dumps(node["const"]).replace('"', "'")
    if "enum" in node:
        return " | ".join(json.dumps(value).replace('"', "'") for value in node["enum"])
    kind = node.get("type")
    if kind == "array":
        inner = _ts(node.get("items", {}))
        return f"readonly ({inner})[]" if " " in inner else f"readonly {inner}[]"
    if kind == "object":
        extra = node.get("additionalProperties", True)
        value = "unknown" if extra is True else _ts(extra)
        return f"Readonly<Record<string, {value}>>"
    return {
        "string": "string",
        "integer": "number",
        "number": "number",
        "boolean": "boolean",
        "null": "null",
    }.get(str(kind), "unknown")


def render_typescript(document: dict[str, Any] | None = None) -> str:
    document = document or schema()
    out = [
        f"/* {_HEADER} */",
        "/* eslint-disable */",
        "",
        "/**",
        " * Every payload of Keel's own LSP messages (docs/reference/lsp.md): command arguments",
        " * and results, and the `keel/*` notifications. The client reads exactly these keys.",
        " */",
        "",
    ]
    for name, node in document["$defs"].items():
        if node.get("description"):
            out.append(f"/** {_doc(node['description'])} */")
        if "properties" in node:
            required = set(node.get("required", []))
            out.append(f"export interface {name} {{")
            for key, prop in node["properties"].items():
                if prop.get("description"):
                    out.append(f"  /** {_doc(prop['description'])} */")
                optional = "" if key in required else "?"
                out.append(f"  readonly {key}{optional}: {_ts(prop)};")
            out.append("}")
        else:
            out.append(f"export type {name} = {_ts(node)};")
        out.append("")
    out.append("/** The keys every payload object must have, by name: what `expect` checks. */")
    out.append("export const REQUIRED_KEYS = {")
    for name, node in document["$defs"].items():
        if "properties" in node:
            keys = ", ".join(f"'{key}'" for key in node.get("required", []))
            out.append(f"  {name}: [{keys}],")
    out.append("} as const;")
    out.append("")
    out.append("/** Every payload object type by its name (the keys of `REQUIRED_KEYS`). */")
    out.append("export interface Payloads {")
    for name, node in document["$defs"].items():
        if "properties" in node:
            out.append(f"  readonly {name}: {name};")
    out.append("}")
    out.append("")
    out.append("/** The `keel.server.*` commands: the argument each takes and the result. */")
    out.append("export interface Commands {")
    for command, spec in document["commands"].items():
        argument, result = _ts(spec["argument"]), _ts(spec["result"])
        out.append(f"  readonly '{command}': {{")
        out.append(f"    readonly argument: {argument};")
        out.append(f"    readonly result: {result};")
        out.append("  };")
    out.append("}")
    out.append("")
    out.append("/** The `keel/*` notifications and their params. */")
    out.append("export interface Notifications {")
    for method, spec in document["notifications"].items():
        out.append(f"  /** {spec['direction']}: {spec['summary']} */")
        out.append(f"  readonly '{method}': {_ts(spec['params'])};")
    out.append("}")
    return "\n".join(out) + "\n"


# -- LuaCATS ---------------------------------------------------------------------------------


def _lua(node: dict[str, Any]) -> str:
    if "$ref" in node:
        return LUA_PREFIX + _name(node["$ref"])
    if "anyOf" in node:
        return "|".join(_lua(option) for option in node["anyOf"])
    if "const" in node:
        return json.dumps(node["const"]).replace('"', "'")
    if "enum" in node:
        return "|".join(json.dumps(value).replace('"', "'") for value in node["enum"])
    kind = node.get("type")
    if kind == "array":
        inner = _lua(node.get("items", {}))
        return f"({inner})[]" if "|" in inner else f"{inner}[]"
    if kind == "object":
        extra = node.get("additionalProperties", True)
        return "table<string, " + ("any" if extra is True else _lua(extra)) + ">"
    return {
        "string": "string",
        "integer": "integer",
        "number": "number",
        "boolean": "boolean",
        "null": "vim.NIL",
    }.get(str(kind), "any")


def _nullable(node: dict[str, Any]) -> bool:
    return any(option.get("type") == "null" for option in node.get("anyOf", []))


def render_lua(document: dict[str, Any] | None = None) -> str:
    document = document or schema()
    out = [
        f"-- {_HEADER}",
        "-- Every payload of Keel's own LSP messages (docs/reference/lsp.md). JSON null arrives",
        "-- as vim.NIL (read it with compat.value). The plugin reads exactly these keys;",
        "-- keel.protocol checks them with `required` below.",
        "",
    ]
    for name, node in document["$defs"].items():
        description = _doc(node.get("description"))
        if "properties" in node:
            out.append(f"---@class {LUA_PREFIX}{name}" + (f" {description}" if description else ""))
            required = set(node.get("required", []))
            for key, prop in node["properties"].items():
                optional = "" if key in required else "?"
                comment = _doc(prop.get("description"))
                line = f"---@field {key}{optional} {_lua(prop)}"
                out.append(line + (f" {comment}" if comment else ""))
        else:
            if description:
                out.append(f"-- {description}")
            out.append(f"---@alias {LUA_PREFIX}{name} {_lua(node)}")
        out.append("")
    out.append("local M = {}")
    out.append("")
    out.append("---The keys every payload object must have, by class name (without keel.proto.).")
    out.append("---A key whose value may be null is not listed: Neovim 0.7 decodes null as nil.")
    out.append("---@type table<string, string[]>")
    out.append("-- stylua: ignore")
    out.append("M.required = {")
    for name, node in document["$defs"].items():
        if "properties" in node:
            keys = ", ".join(
                f"'{key}'"
                for key in node.get("required", [])
                if not _nullable(node["properties"][key])
            )
            out.append(f"  {name} = {{ {keys} }}," if keys else f"  {name} = {{}},")
    out.append("}")
    out.append("")
    out.append("return M")
    return "\n".join(out) + "\n"


def outputs(root: Path) -> dict[Path, str]:
    """Every generated file (absolute path under ``root``) and its content."""
    document = schema()
    return {
        root / SCHEMA_PATH: render_schema(document),
        root / TYPESCRIPT_PATH: render_typescript(document),
        root / LUA_PATH: render_lua(document),
    }
