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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Location, Problem, SpecError
from .schema import (
    RANGES,
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
from .yaml_nodes import TAG, construct, location, node_problem, read_tree, text_in_yaml11

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
    if not text:  # Path("") is the working directory: "not a regular file" would name no file
        raise SpecError([Problem(None, "", "an empty path: give a spec file (.yaml) or a preset name")])
    try:
        if path.is_file():
            return path
        preset = preset_dir() / f"{text}.yaml"
        if "/" not in text and "\0" not in text and preset.is_file():
            return preset
        exists = path.exists()
    except OSError as exc:  # a name too long for the file system, ...
        raise SpecError([Problem(Location(text[:200]), "", f"cannot open: {exc.strerror or exc}")]) from None
    if exists:
        raise SpecError([Problem(Location(text), "", "not a regular file (a folder, a FIFO or a device?)")])
    message = f"no such file or preset{_preset_hint(text)} (`densenet-spec presets` lists the presets)"
    raise SpecError([Problem(Location(text), "", message)])


def _preset_hint(text: str) -> str:
    """A guess at the preset meant: ``densenet121.yaml`` is the preset ``densenet121`` written as a file."""
    stem = text.removesuffix(".yaml").removesuffix(".yml")
    if stem != text and stem in preset_names():
        return f"; the preset is '{stem}', without .yaml"
    return _did_you_mean(text, preset_names())


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
    """The file ``extends`` names: a path ending in .yaml or .yml (relative to ``child``), else a preset.

    A path must name a spec file by its suffix, as the preset message says: without the rule,
    ``extends: /etc/passwd`` or ``/dev/zero`` would be opened and read as YAML.
    """
    is_file = target.endswith((".yaml", ".yml"))
    if not is_file and ("/" in target or os.sep in target):
        message = (
            f"{_quoted(target)} is not a spec file: a path in extends must end in .yaml or .yml "
            "(or name a preset: `densenet-spec presets` lists them)"
        )
        raise SpecError([node_problem(node, message, "extends")])
    if is_file:
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
        return _scalar(node, path, source)
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


_TEXT_FIELDS = frozenset({("name",), ("description",)})


def _scalar(node: ScalarNode, path: FieldPath, source: SourceMap) -> Any:
    """A scalar's value; for a text field, its text where YAML 1.1 read it as text (``name: 1e5``)."""
    if path in _TEXT_FIELDS and text_in_yaml11(node):
        return node.value
    if node.style is None and node.tag != TAG + "str":
        source.texts[path] = node.value
    return construct(node)


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


def _model_of(parent: FieldPath) -> type[BaseModel]:
    """The schema model of the mapping at ``parent``."""
    return _MODELS.get(str(parent[0]), Spec) if parent else Spec


@dataclass(frozen=True)
class _Error:
    """One pydantic error, with what its message needs.

    ``text`` is how the value was written when YAML read an unquoted scalar as something else
    than a string (``yes``, ``2024-01-01``); None otherwise.
    """

    kind: str
    path: FieldPath
    got: Any
    ctx: dict[str, Any]
    msg: str
    text: str | None = None

    @property
    def leaf(self) -> str:
        """The field's name: ``size`` for ``input.size[1]``, ``blocks`` for ``blocks[2]``."""
        return next((str(p) for p in reversed(self.path) if isinstance(p, str)), "")

    @property
    def range(self) -> str:
        """What the field accepts, in its own words (``0 < compression <= 1``)."""
        return RANGES.get(self.leaf, "a valid value")

    @property
    def shown(self) -> str:
        return _shown(self.got)


def _shown(value: Any) -> str:
    """A value as the user wrote it in YAML: ``true``, ``null``, ``2024-01-01``, ``'text'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and len(value) > 200:  # a message is one readable line
        return f"{value[:200]!r}..."
    return repr(value)


def _missing(e: _Error) -> str:
    return f"missing required key '{e.path[-1]}'"


def _unknown_key(e: _Error) -> str:
    fields = list(_model_of(e.path[:-1]).model_fields)
    hint = _did_you_mean(str(e.path[-1]), fields) or f"; allowed keys: {', '.join(fields)}"
    return f"unknown key '{e.path[-1]}'{hint}"


def _not_a_choice(e: _Error) -> str:
    choices = re.findall(r"'([^']*)'", str(e.ctx.get("expected", "")))
    hint = _did_you_mean(str(e.got), choices) if isinstance(e.got, str) else ""
    return f"must be one of {', '.join(repr(c) for c in choices)}, not {e.shown}{hint}"


def _out_of_range(e: _Error) -> str:
    return f"{e.shown} is out of range: must be {e.range}"


def _not_an_integer(e: _Error) -> str:
    return f"must be {e.range}, not {e.shown}{_unquote_hint(e.got)}{_integral_hint(e.got)}"


def _not_a_number(e: _Error) -> str:
    return f"must be a number ({e.range}), not {e.shown}{_unquote_hint(e.got)}"


def _integral_hint(value: Any) -> str:
    """``1e3`` for an integer field is 1000.0, a float: say how to write the integer."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return f" (write {int(value)}, without a decimal point or exponent)"
    return ""


def _unquote_hint(value: Any) -> str:
    """``'0.5'`` in quotes is a string in YAML: say so, as the value looks right."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (a number in quotes is text: remove the quotes)"


_YAML_READS: tuple[tuple[type, str], ...] = (
    (bool, "unquoted yes/no/on/off/true/false as booleans"),
    (date, "an unquoted date as a date"),
    (int, "an unquoted number as a number"),
    (float, "an unquoted number as a number"),
)
"""What YAML 1.1 makes of unquoted scalars that people mean as text."""


def _not_a_string(e: _Error) -> str:
    reads = next((what for kind, what in _YAML_READS if isinstance(e.got, kind)), None)
    hint = f' (YAML reads {reads}: write "{e.text or e.shown}")' if reads else ""
    return f"must be a string, not {e.shown}{hint}"


def _not_a_bool(e: _Error) -> str:
    if isinstance(e.got, str):
        return f"must be true or false (unquoted), not the string {e.got!r}"
    return f"must be true or false, not {e.shown}"


def _bad_name(e: _Error) -> str:
    # The rule for the first character is said only when it is what breaks ('Tiny Net' is about case).
    start = "" if re.match(r"[a-zA-Z0-9]", str(e.got)) else ", starting with a letter or digit"
    return f"{e.shown} is not a valid name: use lower-case letters, digits, '.', '_' and '-'{start}"


def _text_length(e: _Error) -> str:
    if e.kind == "string_too_short":
        return "is empty: write a name of lower-case letters, digits, '.', '_' and '-'"
    return f"is {len(str(e.got)):,} characters long; a name has at most {e.ctx.get('max_length')}: shorten it"


_LENGTHS = {
    "size": "must be one integer, or 1 to 3 numbers ([length], [height, width] or [depth, height, width]), "
    "not {n} items",
    "blocks": "needs at least one block, e.g. [6, 12, 24, 16]",
    "mid_channels": "needs exactly 2 widths (one per 3x3 conv before the last), e.g. [32, 32]; got {n}",
}


def _list_length(e: _Error) -> str:
    n = e.ctx.get("actual_length")
    template = _LENGTHS.get(e.leaf, "has {n} items; it takes {bounds}")
    bounds = f"at least {e.ctx['min_length']}" if "min_length" in e.ctx else f"at most {e.ctx.get('max_length')}"
    return template.format(n=n, bounds=bounds)


def _stem_kind(e: _Error) -> str:
    """Why a stem is not one: a kind that does not exist (with a guess), or a value of another type."""
    got = e.got
    kinds = ", ".join(repr(k) for k in STEM_KINDS)
    if isinstance(got, dict):
        return f"must be one of {kinds}, not {got.get('kind')!r}{_did_you_mean(str(got.get('kind')), list(STEM_KINDS))}"
    if isinstance(got, str):
        return f"must be one of {kinds} (or a mapping such as {{kind: cifar, channels: 32}}), not {got!r}" + (
            _did_you_mean(got, list(STEM_KINDS))
        )
    return f"must be one of {kinds}, or a mapping such as {{kind: cifar, channels: 32}}, not {e.shown}"


def _not_a_mapping(e: _Error) -> str:
    return f"must be a mapping of keys, not {e.shown}"


def _not_a_list(e: _Error) -> str:
    return f"must be a list, not {e.shown}"


def _checked(e: _Error) -> str:
    """A schema validator's own message (``field_error``, ``value_error``): already in our words."""
    return str(e.ctx.get("message") or e.ctx.get("error") or e.msg)


_MESSAGES: dict[str, Callable[[_Error], str]] = {
    "missing": _missing,
    "extra_forbidden": _unknown_key,
    "literal_error": _not_a_choice,
    **dict.fromkeys(("greater_than", "greater_than_equal", "less_than", "less_than_equal"), _out_of_range),
    "finite_number": _out_of_range,
    **dict.fromkeys(("int_type", "int_from_float", "int_parsing"), _not_an_integer),
    **dict.fromkeys(("float_type", "float_parsing"), _not_a_number),
    "string_type": _not_a_string,
    **dict.fromkeys(("bool_type", "bool_parsing"), _not_a_bool),
    "string_pattern_mismatch": _bad_name,
    **dict.fromkeys(("string_too_short", "string_too_long"), _text_length),
    **dict.fromkeys(("too_short", "too_long"), _list_length),
    "stem_kind": _stem_kind,
    **dict.fromkeys(("model_type", "dict_type", "model_attributes_type"), _not_a_mapping),
    "list_type": _not_a_list,
    **dict.fromkeys(("value_error", "field_error"), _checked),
}
"""pydantic's error types, each to the message that says what the field needs and how to fix it."""


def _message(e: _Error) -> str:
    handler = _MESSAGES.get(e.kind)
    return handler(e) if handler else f"{e.msg} (got {e.shown})"


def _error_path(error: ErrorDetails, data: Any) -> FieldPath:
    """The field an error is about: its location in ``data``, plus the field a validator names."""
    path = _data_path(error["loc"], data)
    ctx = error.get("ctx", {})
    if error["type"] == "field_error":
        return (*path, *ctx["path"])
    if error["type"] == "stem_kind" and isinstance(error["input"], dict) and "kind" in error["input"]:
        return (*path, "kind")
    return path


def validation_problems(exc: ValidationError, data: Any, source: SourceMap) -> list[Problem]:
    """One located, readable problem per pydantic error."""
    problems = []
    for error in exc.errors():
        path = _error_path(error, data)
        e = _Error(error["type"], path, error["input"], error.get("ctx", {}), error["msg"], source.texts.get(path))
        located = source.locate(path, key=e.kind in ("extra_forbidden", "missing"))
        problems.append(Problem(located, format_path(path), _message(e)))
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
