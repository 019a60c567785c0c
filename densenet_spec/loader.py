"""YAML to :class:`~densenet_spec.schema.Spec`: safe parsing, source locations, ``extends``, presets.

The YAML is composed into nodes (which carry their file, line and column) and checked (tags,
duplicate keys, merge keys, size) by :mod:`densenet_spec.yaml_nodes`, merged here along the
``extends`` chain node by node, and only then turned into plain data for pydantic. Every
validation error is mapped back to the node it came from, so that each problem reads
``FILE:LINE:COL: field.path: message``.
"""

from __future__ import annotations

import difflib
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Location, Problem, SpecError
from .schema import (
    STEM_KINDS,
    ActivationSpec,
    BlockSpec,
    FieldPath,
    HeadSpec,
    ImagenetStem,
    InputSpec,
    NormSpec,
    SourceMap,
    Spec,
    format_path,
)
from .yaml_nodes import TAG, construct, location, node_problem, read_tree

MAX_EXTENDS = 64  # files in one extends chain


# ----------------------------------------------------------------------------- presets


def preset_dir() -> Path:
    """The folder of the shipped specs: inside the package once installed, ``specs/`` in a checkout."""
    packaged = Path(str(resources.files("densenet_spec"))) / "specs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "specs"


def preset_names() -> list[str]:
    """The presets in natural order (densenet-40 before densenet-100)."""
    return sorted((p.stem for p in preset_dir().glob("*.yaml")), key=_natural)


def _natural(name: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (0, part) for part in re.split(r"(\d+)", name)]


def resolve_source(source: str | os.PathLike[str]) -> Path:
    """A spec argument as a file: an existing path, else a preset name."""
    path = Path(source)
    text = str(source)
    try:
        if path.is_file():
            return path
        preset = preset_dir() / f"{text}.yaml"
        if "/" not in text and "\0" not in text and preset.is_file():
            return preset
        exists = path.exists()
    except OSError as exc:  # a name too long for the file system, ...
        raise SpecError([Problem(Location(text[:200]), "", f"cannot open: {exc.strerror or exc}")]) from None
    hint = _did_you_mean(text, preset_names())
    if exists:
        raise SpecError([Problem(Location(text), "", "not a regular file (a folder, a FIFO or a device?)")])
    raise SpecError(
        [Problem(Location(text), "", f"no such file or preset{hint}; `densenet-spec presets` lists the presets")]
    )


def _display(path: Path) -> str:
    """A short name for messages: relative to the working directory where possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # elsewhere; a deleted working directory; a symlink loop
        return str(path)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _merge(parent: MappingNode, child: MappingNode) -> MappingNode:
    """``child`` over ``parent``: mappings merge key by key, everything else replaces."""
    entries: dict[str, tuple[Node, Node]] = {key.value: (key, value) for key, value in parent.value}
    for key, value in child.value:
        old = entries.get(key.value)
        if old is not None and isinstance(old[1], MappingNode) and isinstance(value, MappingNode):
            value = _merge(old[1], value)
        entries[key.value] = (key, value)
    return MappingNode(child.tag, list(entries.values()), child.start_mark, child.end_mark, child.flow_style)


def _extends_of(node: MappingNode) -> tuple[Node, str] | None:
    for key, value in node.value:
        if key.value == "extends":
            if isinstance(value, ScalarNode) and value.tag == TAG + "null":
                return None
            if not (isinstance(value, ScalarNode) and value.tag == TAG + "str"):
                raise SpecError([node_problem(value, "must be a preset name or a path to a spec file", "extends")])
            return value, value.value
    return None


def _quoted(text: str) -> str:
    """A value from the spec, quoted for a message: at most 200 characters, on one line.

    A message is one line (``FILE:LINE:COL: field: message``); an ``extends: |`` block scalar
    ends in a newline, and a value may hold tabs or other characters that would break the line.
    """
    return f"'{_one_line(text[:200])}'"


def _one_line(text: str) -> str:
    """``text`` with newlines and other non-printable characters escaped (``\\n``)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _resolve_extends(node: Node, target: str, child: Path) -> Path:
    try:
        return _find_parent(node, target, child)
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a symlink loop, ...
        reason = getattr(exc, "strerror", None) or str(exc)
        message = f"cannot open {_quoted(target)}: {_one_line(reason)}"
        raise SpecError([node_problem(node, message, "extends")]) from None


def _find_parent(node: Node, target: str, child: Path) -> Path:
    if target.endswith((".yaml", ".yml")) or "/" in target or os.sep in target:
        path = (child.parent / target).resolve()
        if path.is_file():
            return path
        message = f"no spec file {_quoted(target)} (looked for {_one_line(_display(path))})"
        raise SpecError([node_problem(node, message, "extends")])
    path = preset_dir() / f"{target}.yaml"
    if path.is_file():
        return path.resolve()
    hint = _did_you_mean(target, preset_names())
    raise SpecError(
        [
            node_problem(
                node, f"no preset named {_quoted(target)}{hint} (a file path must end in .yaml or .yml)", "extends"
            )
        ]
    )


def _load_tree(path: Path) -> MappingNode:
    """A file's node tree with its ``extends`` chain merged in, parents first.

    The chain is followed in a loop, not by recursion, and is capped at MAX_EXTENDS files, so that
    a long chain gets a message naming it instead of Python's recursion limit.
    """
    trees: list[MappingNode] = []
    chain: list[Path] = []
    current = path
    while True:
        tree = read_tree(current, _display(current))
        trees.append(tree)
        chain.append(current.resolve())
        found = _extends_of(tree)
        if found is None:
            break
        where, target = found
        parent = _resolve_extends(where, target, current)
        if parent in chain:
            names = " -> ".join(_display(p) for p in (*chain, parent))
            raise SpecError([node_problem(where, f"extends cycle: {names}", "extends")])
        if len(chain) >= MAX_EXTENDS:
            message = (
                f"the extends chain is longer than {MAX_EXTENDS} files ({_display(chain[0])} -> "
                f"{_display(chain[1])} -> ... -> {_display(parent)}); flatten some of its specs"
            )
            raise SpecError([node_problem(where, message, "extends")])
        current = parent
    merged = trees.pop()
    while trees:
        merged = _merge(merged, trees.pop())
    return merged


# ----------------------------------------------------------------------------- nodes to data


def _to_data(node: Node, path: FieldPath, source: SourceMap) -> Any:
    """Plain Python data from checked nodes, recording where each field was written."""
    if isinstance(node, ScalarNode):
        source.values[path] = location(node)
        return construct(node)
    if isinstance(node, SequenceNode):
        source.values.setdefault(path, location(node))
        return [_to_data(item, (*path, i), source) for i, item in enumerate(node.value)]
    assert isinstance(node, MappingNode)
    source.values.setdefault(path, location(node))
    data = {}
    for key, value in node.value:
        sub = (*path, key.value)
        source.keys[sub] = location(key)
        if not isinstance(value, ScalarNode) and not value.flow_style:
            source.values[sub] = location(key)
        data[key.value] = _to_data(value, sub, source)
    return data


# ----------------------------------------------------------------------------- validation errors


def _data_path(loc: tuple[int | str, ...], data: Any) -> FieldPath:
    """A pydantic error location without the union tags pydantic adds (``size.int``)."""
    path: list[str | int] = []
    current = data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and isinstance(part, str) and (part in current or i == len(loc) - 1):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            continue
        path.append(part)
    return tuple(path)


_MODELS: dict[str, type[BaseModel]] = {
    "input": InputSpec,
    "stem": ImagenetStem,
    "blocks": BlockSpec,
    "activation": ActivationSpec,
    "norm": NormSpec,
    "head": HeadSpec,
}
_RANGES = {
    "compression": "0 < compression <= 1",
    "dropout": "0 <= dropout < 1",
    "num_classes": "an integer >= 0 (0: no classifier)",
    "eps": "0 < eps < 1",
    "momentum": "0 < momentum <= 1",
    "alpha": "alpha > 0",
}


def _model_of(parent: FieldPath) -> type[BaseModel]:
    """The schema model of the mapping at ``parent``."""
    return _MODELS.get(str(parent[0]), Spec) if parent else Spec


def _range_hint(path: FieldPath) -> str:
    leaf = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
    return _RANGES.get(leaf, "an integer >= 1")


def _message(error: ErrorDetails, path: FieldPath) -> str:
    kind, got, ctx = error["type"], error["input"], error.get("ctx", {})
    shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
    if kind == "missing":
        return f"missing required key '{path[-1]}'"
    if kind == "extra_forbidden":
        fields = list(_model_of(path[:-1]).model_fields)
        hint = _did_you_mean(str(path[-1]), fields) or f"; allowed keys: {', '.join(fields)}"
        return f"unknown key '{path[-1]}'{hint}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        hint = _did_you_mean(str(got), choices) if isinstance(got, str) else ""
        return f"must be one of {', '.join(repr(c) for c in choices)}, not {shown}{hint}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{shown} is out of range: must be {_range_hint(path)}"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"must be an integer >= 1, not {shown}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number ({_range_hint(path)}), not {shown}"
    if kind == "string_type":
        return f"must be a string, not {shown}"
    if kind == "string_pattern_mismatch":
        return f"{shown} is not a valid name: use lower-case letters, digits, '.', '_' and '-'"
    if kind in ("too_short", "too_long") and path[-1:] == ("size",):
        return (
            "must be one integer, or 1 to 3 numbers ([length], [height, width] or [depth, height, width]), "
            f"not {ctx.get('actual_length')} items"
        )
    if kind == "too_short" and path[-1:] == ("blocks",):
        return "needs at least one block, e.g. [6, 12, 24, 16]"
    if kind == "stem_kind":
        return _stem_message(got)
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of keys, not {shown}"
    if kind == "list_type":
        return f"must be a list, not {shown}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']} (got {shown})"


def _stem_message(got: Any) -> str:
    """Why a stem is not one: a kind that does not exist (with a guess), or a value of another type."""
    kinds = ", ".join(repr(k) for k in STEM_KINDS)
    if isinstance(got, dict):
        return f"must be one of {kinds}, not {got.get('kind')!r}{_did_you_mean(str(got.get('kind')), list(STEM_KINDS))}"
    if isinstance(got, str):
        return f"must be one of {kinds} (or a mapping such as {{kind: cifar, channels: 32}}), not {got!r}" + (
            _did_you_mean(got, list(STEM_KINDS))
        )
    return f"must be one of {kinds}, or a mapping such as {{kind: cifar, channels: 32}}, not {got!r}"


def validation_problems(exc: ValidationError, data: Any, source: SourceMap) -> list[Problem]:
    """One located, readable problem per pydantic error."""
    problems = []
    for error in exc.errors():
        path = _data_path(error["loc"], data)
        if error["type"] == "stem_kind" and isinstance(error["input"], dict) and "kind" in error["input"]:
            path = (*path, "kind")
        located = source.locate(path, key=error["type"] in ("extra_forbidden", "missing"))
        problems.append(Problem(located, format_path(path), _message(error, path)))
    return sorted(problems, key=_reading_order)


def _reading_order(problem: Problem) -> tuple[str, int, int]:
    where = problem.location
    return (where.file, where.line or 0, where.column or 0) if where else ("", 0, 0)


def spec_from_data(data: dict[str, Any], source: SourceMap | None = None) -> Spec:
    """Validate plain data (already merged along ``extends``) into a Spec."""
    source = source or SourceMap()
    try:
        spec = Spec.model_validate(data, context={"extends_resolved": bool(source.values)})
    except ValidationError as exc:
        raise SpecError(validation_problems(exc, data, source)) from None
    spec._source = source
    return spec


def load_spec(source: str | os.PathLike[str]) -> Spec:
    """Load a spec from a YAML file or a preset name; raises SpecError with every problem found."""
    path = resolve_source(source)
    tree = _load_tree(path)
    where = SourceMap()
    data = _to_data(tree, (), where)
    return spec_from_data(data, where)
