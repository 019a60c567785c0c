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
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Location, Problem, SpecError
from .schema import STEM_KINDS, BlockSpec, FieldPath, ImagenetStem, InputSpec, SourceMap, Spec, format_path

MAX_BYTES = 1 << 20
MAX_NODES = 10_000
MAX_DEPTH = 32
MAX_INT_DIGITS = 100  # far below Python's int-to-str limit (4,300 digits), far above any real spec
MAX_EXTENDS = 64  # files in one extends chain

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


# ----------------------------------------------------------------------------- YAML nodes


def _location(node: Node) -> Location:
    mark = node.start_mark
    return Location(mark.name, mark.line + 1, mark.column + 1)


def _problem(node: Node, message: str, field: str = "") -> Problem:
    return Problem(_location(node), field, message)


def _read_text(path: Path, name: str) -> str:
    """A spec file's text, at most MAX_BYTES of UTF-8 without control characters; SpecError otherwise.

    The size is checked on what is read, not on ``stat`` (a file may grow, ``/proc`` files report 0),
    and control characters are refused here with their line and column, before PyYAML reports them
    with an offset into "<unicode string>".
    """
    here = Location(name)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError([Problem(here, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_BYTES:
        raise SpecError([Problem(here, "", f"file is over {MAX_BYTES:,} bytes; a spec may be at most 1 MiB")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError([Problem(here, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]) from None
    bad = _NON_PRINTABLE.search(text)
    if bad:
        pos = bad.start()
        line, column = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        message = f"{_describe_char(bad.group())} in the file: a spec is plain text; remove it"
        raise SpecError([Problem(Location(name, line, column), "", message)])
    return text


_NON_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _describe_char(char: str) -> str:
    """A character YAML does not allow, named so that a reader can find it."""
    code = f"U+{ord(char):04X}"
    if char == "\0":
        return f"a NUL byte ({code})"
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate ({code}, half of a UTF-16 pair, not a character)"
    return f"the control character {code}"


def _compose(text: str, name: str) -> Node | None:
    """PyYAML's node tree of ``text`` (safe loader: nothing is constructed), or SpecError with the place."""
    loader = yaml.SafeLoader(text)
    loader.name = name
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        raise SpecError([Problem(where, "", f"invalid YAML: {_yaml_hint(exc)}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(Location(name), "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise SpecError([Problem(Location(name), "", f"invalid YAML: nested more than {MAX_DEPTH} levels")]) from None
    finally:
        loader.dispose()


def _yaml_hint(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's message, with what a person should do when it is about indentation or tabs."""
    problem = str(exc.problem or exc.context)
    if problem.startswith("expected <block end>"):
        return (
            "bad indentation: this line does not line up with the lines above it; the keys of one "
            "mapping, and the '-' items of one list, must start in the same column"
        )
    if "'\\t'" in problem:
        return f"{problem}: YAML indents with spaces, not tabs"
    if problem == "mapping values are not allowed here":
        return f"{problem} (a key indented further than the one above it, or a ': ' in a value that needs quotes)"
    return problem


def _read_tree(path: Path) -> MappingNode:
    """One file's YAML as a checked node tree, merge keys resolved; raises SpecError naming the file and line."""
    name = _display(path)
    node = _compose(_read_text(path, name), name)
    if node is None:
        raise SpecError(
            [Problem(Location(name), "", "the file is empty; a spec needs at least name, growth_rate and blocks")]
        )
    if not isinstance(node, MappingNode):
        kind = "a list" if isinstance(node, SequenceNode) else "a single value"
        raise SpecError([_problem(node, f"the top level must be a mapping (name: ..., growth_rate: ...), not {kind}")])
    checker = _Checker(node)
    tree = checker.mapping(node, (), 0)
    if checker.problems:
        raise SpecError(dict.fromkeys(checker.problems))  # an alias reports a problem once, not per use
    return tree


_TAG = "tag:yaml.org,2002:"
_TAGS_OF: dict[type[Node], frozenset[str]] = {
    ScalarNode: frozenset(_TAG + t for t in ("null", "bool", "int", "float", "str", "binary", "timestamp")),
    SequenceNode: frozenset(_TAG + t for t in ("seq", "omap", "pairs")),
    MappingNode: frozenset(_TAG + t for t in ("map", "set")),
}
_MERGE = _TAG + "merge"
_MERGE_HELP = "a merge key '<<' takes a mapping or a list of mappings (e.g. `<<: *defaults`)"


class _Checker:
    """Checks a composed document and resolves its merge keys, within a budget of values.

    Aliases make a document a graph: a few hundred bytes can stand for billions of values, and
    PyYAML's own merge-key flattening is exponential in the nesting of merges. The checker builds
    a fresh tree, spending one unit of ``MAX_NODES`` per value it visits (an alias costs what it
    expands to), so its work is bounded whatever the input; it stops at the first value over the
    budget or the depth limit, and at an alias inside the node it names.

    Merge keys follow the YAML 1.1 merge spec: the mapping's own keys win over merged ones, and
    of several merged mappings (``<<: [*a, *b]``) the earlier wins. Only the mapping's own keys can
    be duplicates.
    """

    def __init__(self, root: Node) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.spent = 0
        self.open: set[int] = set()

    def _spend(self, node: Node, depth: int) -> None:
        self.spent += 1
        if self.spent > MAX_NODES or depth > MAX_DEPTH:
            message = (
                f"the document expands to more than {MAX_NODES:,} values or {MAX_DEPTH} levels "
                "(YAML aliases or merge keys?); a spec is a small mapping"
            )
            raise SpecError([_problem(self.root, message)])
        if id(node) in self.open:
            message = "this node holds an alias to itself (`*name` inside `&name`); a spec is a tree"
            raise SpecError([_problem(node, message)])

    def node(self, node: Node, path: FieldPath, depth: int) -> Node:
        """The checked copy of ``node`` (at ``path``, ``depth`` levels down)."""
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        self._spend(node, depth)
        if not self._tag_fits(node, path):
            return node
        if isinstance(node, SequenceNode):
            self.open.add(id(node))
            items = [self.node(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
            self.open.discard(id(node))
            return SequenceNode(_TAG + "seq", items, node.start_mark, node.end_mark, node.flow_style)
        assert isinstance(node, ScalarNode)
        self._scalar(node, path)
        return node

    def _tag_fits(self, node: Node, path: FieldPath) -> bool:
        if node.tag in _TAGS_OF[type(node)]:
            return True
        tag = node.tag.replace(_TAG, "!!")
        if node.tag == _MERGE:
            message = "'<<' is YAML's merge key, a key only (`<<: *defaults`); quote it ('<<') for the text"
            self.problems.append(_problem(node, message, format_path(path)))
        elif node.tag in _SAFE_TAGS:
            self.problems.append(_problem(node, f"the YAML tag '{tag}' does not fit this value", format_path(path)))
        else:
            message = f"the YAML tag '{tag}' is not allowed: a spec holds plain data only"
            self.problems.append(_problem(node, message, format_path(path)))
        return False

    def _scalar(self, node: ScalarNode, path: FieldPath) -> None:
        """Refuse what would break later: huge integers, control characters, values the tag cannot read."""
        field = format_path(path)
        text = node.value
        if node.tag == _TAG + "int" and len(text) > MAX_INT_DIGITS:
            message = f"an integer of {len(text):,} digits is far too large; at most {MAX_INT_DIGITS} are read"
            self.problems.append(_problem(node, message, field))
            return
        bad = _NON_PRINTABLE.search(text)
        if bad:
            message = f"{_describe_char(bad.group())} in the text; write printable characters only"
            self.problems.append(_problem(node, message, field))
            return
        try:
            _construct(node)
        except Exception:  # PyYAML raises ValueError, KeyError, ... for `!!int abc`, `!!bool maybe`
            tag = node.tag.replace(_TAG, "!!")
            self.problems.append(_problem(node, f"{text[:40]!r} is not a valid {tag} value", field))

    def mapping(self, node: MappingNode, path: FieldPath, depth: int) -> MappingNode:
        """The checked copy of a mapping, its merge keys resolved."""
        self._spend(node, depth)
        if not self._tag_fits(node, path):
            return MappingNode(_TAG + "map", [], node.start_mark, node.end_mark, node.flow_style)
        self.open.add(id(node))
        own: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        seen: dict[str, Node] = {}
        for key, value in node.value:
            if key.tag == _MERGE and isinstance(key, ScalarNode):
                merged.extend(self._merged(value, path, depth))
            elif self._key_ok(key, seen, path, depth):
                own.append((key, self.node(value, (*path, key.value), depth + 1)))
        self.open.discard(id(node))
        entries = own
        for key, value in merged:
            if key.value not in seen:
                seen[key.value] = key
                entries.append((key, value))
        return MappingNode(_TAG + "map", entries, node.start_mark, node.end_mark, node.flow_style)

    def _key_ok(self, key: Node, seen: dict[str, Node], path: FieldPath, depth: int) -> bool:
        """Whether ``key`` is a plain, printable string not written before in its mapping."""
        self._spend(key, depth + 1)
        field = format_path(path)
        if not (isinstance(key, ScalarNode) and key.tag == _TAG + "str"):
            self.problems.append(_problem(key, "keys must be plain strings", field))
            return False
        bad = _NON_PRINTABLE.search(key.value)
        if bad:
            self.problems.append(_problem(key, f"{_describe_char(bad.group())} in a key", field))
            return False
        if key.value in seen:
            first = seen[key.value].start_mark.line + 1
            self.problems.append(_problem(key, f"duplicate key '{key.value}' (first written on line {first})", field))
            return False
        seen[key.value] = key
        return True

    def _merged(self, value: Node, path: FieldPath, depth: int) -> list[tuple[Node, Node]]:
        """The entries a merge key brings in, earlier mappings first; non-mappings are problems."""
        sources = [value]
        if isinstance(value, SequenceNode) and value.tag == _TAG + "seq":
            self._spend(value, depth + 1)
            sources = value.value
        entries: list[tuple[Node, Node]] = []
        for source in sources:
            if isinstance(source, MappingNode):
                entries.extend(self.mapping(source, path, depth).value)
            else:
                message = f"{_MERGE_HELP}, not {_kind_of(source)}"
                self.problems.append(_problem(source, message, format_path((*path, "<<"))))
        return entries


def _kind_of(node: Node) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _TAG + "null":
        return "null"
    return f"the single value {node.value!r}"


_SCALAR_CONSTRUCTORS = yaml.SafeLoader.yaml_constructors
_CONSTRUCTOR = yaml.SafeLoader("")


def _construct(node: ScalarNode) -> Any:
    """The Python value of a checked scalar, by its tag's constructor (no cache, unlike construct_object)."""
    return _SCALAR_CONSTRUCTORS[node.tag](_CONSTRUCTOR, node)


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
            if isinstance(value, ScalarNode) and value.tag == _TAG + "null":
                return None
            if not (isinstance(value, ScalarNode) and value.tag == _TAG + "str"):
                raise SpecError([_problem(value, "must be a preset name or a path to a spec file", "extends")])
            return value, value.value
    return None


def _resolve_extends(node: Node, target: str, child: Path) -> Path:
    try:
        return _find_parent(node, target, child)
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a symlink loop, ...
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SpecError([_problem(node, f"cannot open '{target[:200]}': {reason}", "extends")]) from None


def _find_parent(node: Node, target: str, child: Path) -> Path:
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


def _load_tree(path: Path) -> MappingNode:
    """A file's node tree with its ``extends`` chain merged in, parents first.

    The chain is followed in a loop, not by recursion, and is capped at MAX_EXTENDS files, so that
    a long chain gets a message naming it instead of Python's recursion limit.
    """
    trees: list[MappingNode] = []
    chain: list[Path] = []
    current = path
    while True:
        tree = _read_tree(current)
        trees.append(tree)
        chain.append(current.resolve())
        found = _extends_of(tree)
        if found is None:
            break
        where, target = found
        parent = _resolve_extends(where, target, current)
        if parent in chain:
            names = " -> ".join(_display(p) for p in (*chain, parent))
            raise SpecError([_problem(where, f"extends cycle: {names}", "extends")])
        if len(chain) >= MAX_EXTENDS:
            message = (
                f"the extends chain is longer than {MAX_EXTENDS} files ({_display(chain[0])} -> "
                f"{_display(chain[1])} -> ... -> {_display(parent)}); flatten some of its specs"
            )
            raise SpecError([_problem(where, message, "extends")])
        current = parent
    merged = trees.pop()
    while trees:
        merged = _merge(merged, trees.pop())
    return merged


# ----------------------------------------------------------------------------- nodes to data


def _to_data(node: Node, path: FieldPath, source: SourceMap) -> Any:
    """Plain Python data from checked nodes, recording where each field was written."""
    if isinstance(node, ScalarNode):
        source.values[path] = _location(node)
        return _construct(node)
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
