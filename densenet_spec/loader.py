"""YAML to :class:`~densenet_spec.schema.Spec`: safe parsing, source locations, ``extends``, presets.

The YAML is composed into nodes (which carry their file, line and column) with PyYAML's safe
loader, checked (tags, duplicate keys, size), merged along the ``extends`` chain node by node, and
only then turned into plain data for pydantic. Every validation error is mapped back to the node
it came from, so that each problem reads ``FILE:LINE:COL: field.path: message``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Location, Problem, SpecError
from .schema import BlockSpec, FieldPath, ImagenetStem, InputSpec, SourceMap, Spec, format_path

MAX_BYTES = 1 << 20
MAX_NODES = 10_000
MAX_DEPTH = 32

_SAFE_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag and tag.startswith("tag:yaml.org,2002:"))


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
    if path.is_file():
        return path
    text = str(source)
    preset = preset_dir() / f"{text}.yaml"
    if "/" not in text and preset.is_file():
        return preset
    hint = _did_you_mean(text, preset_names())
    if path.exists():
        raise SpecError([Problem(Location(text), "", "not a file")])
    raise SpecError(
        [Problem(Location(text), "", f"no such file or preset{hint}; `densenet-spec presets` lists the presets")]
    )


def _display(path: Path) -> str:
    """A short name for messages: relative to the working directory where possible."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# ----------------------------------------------------------------------------- YAML nodes


def _location(node: Node) -> Location:
    mark = node.start_mark
    return Location(mark.name, mark.line + 1, mark.column + 1)


def _problem(node: Node, message: str, field: str = "") -> Problem:
    return Problem(_location(node), field, message)


def _read_tree(path: Path) -> MappingNode:
    """One file's YAML as a checked node tree; raises SpecError naming the file and line."""
    name = _display(path)
    here = Location(name)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SpecError([Problem(here, "", f"file is {size:,} bytes; a spec may be at most {MAX_BYTES:,} (1 MiB)")])
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(here, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    loader = yaml.SafeLoader(text)
    loader.name = name
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(name, mark.line + 1, mark.column + 1) if mark else here
        raise SpecError([Problem(where, "", f"invalid YAML: {exc.problem or exc.context}")]) from None
    except RecursionError:
        raise SpecError([Problem(here, "", "invalid YAML: nested too deeply")]) from None
    finally:
        loader.dispose()
    if node is None:
        raise SpecError([Problem(here, "", "the file is empty; a spec needs at least name, growth_rate and blocks")])
    if not isinstance(node, MappingNode):
        kind = "a list" if isinstance(node, SequenceNode) else "a single value"
        raise SpecError([_problem(node, f"the top level must be a mapping (name: ..., growth_rate: ...), not {kind}")])
    problems = list(_check_nodes(node))
    if problems:
        raise SpecError(problems)
    return node


def _check_nodes(root: Node) -> Iterator[Problem]:
    """Tags, keys and size of a composed document, before anything is constructed."""
    visited = 0
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES or depth > MAX_DEPTH:
            yield _problem(
                root,
                f"the document expands to more than {MAX_NODES:,} values or {MAX_DEPTH} levels "
                "(YAML aliases?); a spec is a small mapping",
            )
            return
        if node.tag not in _SAFE_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            yield _problem(node, f"the YAML tag '{tag}' is not allowed: a spec holds plain data only")
            continue
        if isinstance(node, MappingNode):
            yaml.SafeLoader.flatten_mapping(_FLATTENER, node)
            seen: dict[str, Node] = {}
            for key, value in node.value:
                if not (isinstance(key, ScalarNode) and key.tag == "tag:yaml.org,2002:str"):
                    yield _problem(key, "keys must be plain strings")
                    continue
                if key.value in seen:
                    first = seen[key.value].start_mark.line + 1
                    yield _problem(key, f"duplicate key '{key.value}' (first written on line {first})")
                seen[key.value] = key
                stack.append((value, depth + 1))
        elif isinstance(node, SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)


# flatten_mapping (YAML merge keys, `<<: *base`) needs a loader instance but no state.
_FLATTENER = yaml.SafeLoader("")


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
            if isinstance(value, ScalarNode) and value.tag == "tag:yaml.org,2002:null":
                return None
            if not (isinstance(value, ScalarNode) and value.tag == "tag:yaml.org,2002:str"):
                raise SpecError([_problem(value, "must be a preset name or a path to a spec file", "extends")])
            return value, value.value
    return None


def _resolve_extends(node: Node, target: str, child: Path) -> Path:
    if target.endswith((".yaml", ".yml")) or "/" in target or os.sep in target:
        path = (child.parent / target).resolve()
        if path.is_file():
            return path
        raise SpecError([_problem(node, f"no spec file '{target}' (looked for {_display(path)})", "extends")])
    path = preset_dir() / f"{target}.yaml"
    if path.is_file():
        return path.resolve()
    hint = _did_you_mean(target, preset_names())
    raise SpecError(
        [_problem(node, f"no preset named '{target}'{hint} (a file path must end in .yaml or .yml)", "extends")]
    )


def _load_tree(path: Path, chain: tuple[Path, ...] = ()) -> MappingNode:
    """A file's node tree with its ``extends`` chain merged in."""
    node = _read_tree(path)
    found = _extends_of(node)
    if found is None:
        return node
    where, target = found
    parent_path = _resolve_extends(where, target, path)
    here = (*chain, path.resolve())
    if parent_path in here:
        names = " -> ".join(_display(p) for p in (*here, parent_path))
        raise SpecError([_problem(where, f"extends cycle: {names}", "extends")])
    return _merge(_load_tree(parent_path, here), node)


# ----------------------------------------------------------------------------- nodes to data


_CONSTRUCTOR = yaml.SafeLoader("")


def _to_data(node: Node, path: FieldPath, source: SourceMap) -> Any:
    """Plain Python data from checked nodes, recording where each field was written."""
    if isinstance(node, ScalarNode):
        source.values[path] = _location(node)
        return _CONSTRUCTOR.construct_object(node)
    if isinstance(node, SequenceNode):
        source.values.setdefault(path, _location(node))
        return [_to_data(item, (*path, i), source) for i, item in enumerate(node.value)]
    assert isinstance(node, MappingNode)
    source.values.setdefault(path, _location(node))
    data = {}
    for key, value in node.value:
        sub = (*path, key.value)
        source.keys[sub] = _location(key)
        if not isinstance(value, ScalarNode) and not value.flow_style:
            source.values[sub] = _location(key)
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


_MODELS: dict[str, type[BaseModel]] = {"input": InputSpec, "stem": ImagenetStem, "blocks": BlockSpec}
_RANGES = {"compression": "0 < compression <= 1", "dropout": "0 <= dropout < 1"}


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
        return f"must be one integer or [height, width], not {ctx.get('actual_length')} items"
    if kind == "too_short" and path[-1:] == ("blocks",):
        return "needs at least one block, e.g. [6, 12, 24, 16]"
    if kind == "stem_kind":
        kind_value = got.get("kind") if isinstance(got, dict) else got
        return f"must be one of 'imagenet', 'cifar', not {kind_value!r}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of keys, not {shown}"
    if kind == "list_type":
        return f"must be a list, not {shown}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']} (got {shown})"


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
