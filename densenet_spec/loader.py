"""YAML to :class:`~densenet_spec.schema.Spec`: safe parsing, source locations, ``extends``, presets.

The YAML is composed into nodes (which carry their file, line and column) and checked (tags,
duplicate keys, merge keys, size) by :mod:`densenet_spec.yaml_nodes`, merged here along the
``extends`` chain node by node, and only then turned into plain data for pydantic. Every
validation error is mapped back to the node it came from (by :mod:`densenet_spec.spec_messages`),
so that each problem reads ``FILE:LINE:COL: field.path: message``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Location, Problem, SpecError
from .schema import KIND_NAMES, FieldPath, SourceMap, Spec, format_path
from .spec_messages import did_you_mean, inherited_note, reading_order, validation_problems
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
    """A spec argument as a file: a preset's name (a string without a path separator) is that preset,
    whatever the working directory holds; anything else is a path.

    A file or folder named like a preset (``./densenet121``, no suffix) does not replace the preset
    for ``densenet121``, which would then mean one network here and another elsewhere; ``./densenet121``
    names the file.
    """
    path = Path(source)
    text = str(source)
    if not text:  # Path("") is the working directory: "not a regular file" would name no file
        raise SpecError([Problem(None, "", "an empty path: give a spec file (.yaml) or a preset name")])
    try:
        if _bare_name(text):
            preset = preset_dir() / f"{text}.yaml"
            if preset.is_file():
                return preset
        if path.is_file():
            return path
        exists = path.exists()
    except OSError as exc:  # a name too long for the file system, ...
        raise SpecError([Problem(Location(text[:200]), "", f"cannot open: {exc.strerror or exc}")]) from None
    if exists:
        raise SpecError([Problem(Location(text), "", "not a regular file (a folder, a FIFO or a device?)")])
    message = f"no such file or preset{_preset_hint(text)} (`densenet-spec presets` lists the presets)"
    raise SpecError([Problem(Location(text), "", message)])


def _bare_name(text: str) -> bool:
    """Whether ``text`` could be a preset's name: no path separator, no NUL."""
    return not any(sep in text for sep in ("/", os.sep, os.altsep or "/", "\0"))


def _preset_hint(text: str) -> str:
    """A guess at the preset meant: ``densenet121.yaml`` is the preset ``densenet121`` written as a file."""
    stem = text.removesuffix(".yaml").removesuffix(".yml")
    if stem != text and stem in preset_names():
        return f"; the preset is '{stem}', without .yaml"
    return did_you_mean(text, preset_names())


def _display(path: Path, relative: bool = True) -> str:
    """How messages name a file the user did not type (a parent found through ``extends``, a preset
    named by its name): relative to the working directory when it lies under it, else absolute.

    The spec file the user names is shown as typed (:func:`_given_name`); its parents follow its
    style: all absolute (``relative=False``) when it was typed absolute, so that a command run
    from ``/`` never shows ``tmp/x/parent.yaml`` next to ``/tmp/x/child.yaml``.
    """
    if not relative:
        with suppress(OSError, RuntimeError):
            return str(path.resolve())
        return str(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # elsewhere; a deleted working directory; a symlink loop
        return str(path)


def _given_name(source: str | os.PathLike[str], path: Path) -> str:
    """How messages name the spec file the user gave: as typed (``/tmp/x/b.yaml`` stays absolute,
    ``../b.yaml`` relative), so that the name is the one in the user's command; a preset named by
    its name is shown as a file found for them is (:func:`_display`)."""
    return os.fspath(source) if Path(source) == path else _display(path)


def _merge(parent: MappingNode, child: MappingNode, top: bool = True) -> MappingNode:
    """``child`` over ``parent``: mappings merge key by key, everything else replaces.

    A parent's kind name counts as its mapping (``norm: instance`` under a child's
    ``norm: {eps: 0.001}`` is an instance norm with that eps, not a batch norm).
    """
    entries: dict[str, tuple[Node, Node]] = {key.value: (key, value) for key, value in parent.value}
    for key, value in child.value:
        old = entries.get(key.value)
        if old is not None and isinstance(value, MappingNode):
            before = old[1]
            if top and key.value in KIND_NAMES and isinstance(before, ScalarNode) and before.tag == TAG + "str":
                kind = ScalarNode(TAG + "str", "kind", before.start_mark, before.end_mark)
                before = MappingNode(TAG + "map", [(kind, before)], before.start_mark, before.end_mark, True)
            if isinstance(before, MappingNode):
                value = _merge(before, value, top=False)
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


def _resolve_extends(node: Node, target: str, child: Path, relative: bool) -> Path:
    try:
        return _find_parent(node, target, child, relative)
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a symlink loop, ...
        reason = getattr(exc, "strerror", None) or str(exc)
        message = f"cannot open {_quoted(target)}: {_one_line(reason)}"
        raise SpecError([node_problem(node, message, "extends")]) from None


def _find_parent(node: Node, target: str, child: Path, relative: bool) -> Path:
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
        message = f"no spec file {_quoted(target)} (looked for {_one_line(_display(path, relative))})"
        if path.exists():
            message = f"{_quoted(target)} is not a regular file (a folder, a FIFO or a device?)"
        stem = target.removesuffix(".yaml").removesuffix(".yml")
        if stem in preset_names():
            message += f"; the preset is written without .yaml: extends: {stem}"
        raise SpecError([node_problem(node, message, "extends")])
    path = preset_dir() / f"{target}.yaml"
    if path.is_file():
        return path.resolve()
    hint = did_you_mean(target, preset_names())
    raise SpecError(
        [
            node_problem(
                node, f"no preset named {_quoted(target)}{hint} (a file path must end in .yaml or .yml)", "extends"
            )
        ]
    )


def _load_tree(path: Path, name: str, problems: list[Problem]) -> MappingNode:
    """A file's node tree with its ``extends`` chain merged in, parents first.

    The chain is followed in a loop, not by recursion, and is capped at MAX_EXTENDS files, so that
    a long chain gets a message naming it instead of Python's recursion limit. Problems of a
    merge (a child that changes its parent's rank by mistake) go to ``problems``, so that the
    schema's own problems are reported with them. ``name`` is how messages call ``path``.
    """
    trees: list[MappingNode] = []
    targets: list[str] = []  # what each tree's extends names, for messages about its parent
    chain: list[Path] = []
    names: list[str] = []  # how messages call each file of the chain
    relative = not Path(name).is_absolute()
    current = path
    while True:
        shown = _display(current, relative) if chain else name
        tree = _read_parent(current, shown, names[-1]) if chain else read_tree(current, shown)
        trees.append(tree)
        chain.append(current.resolve())
        names.append(shown)
        found = _extends_of(tree)
        if found is None:
            break
        where, target = found
        targets.append(target)
        parent = _resolve_extends(where, target, current, relative)
        if parent in chain:
            cycle = " -> ".join((*names, _display(parent, relative)))
            raise SpecError([node_problem(where, f"extends cycle: {cycle}", "extends")])
        if len(chain) >= MAX_EXTENDS:
            message = (
                f"the extends chain is longer than {MAX_EXTENDS} files ({names[0]} -> "
                f"{names[1]} -> ... -> {_display(parent, relative)}); flatten some of its specs"
            )
            raise SpecError([node_problem(where, message, "extends")])
        current = parent
    merged = trees.pop()
    slips: dict[int, Problem] = {}  # by the id of the size node at fault
    while trees:
        child = trees.pop()
        slips.update(_rank_change(merged, child, targets.pop()))
        merged = _merge(merged, child)
    final = _entry(_entry(merged, "input"), "size")
    problems.extend(problem for at, problem in slips.items() if at == id(final))  # not if overridden below
    return merged


def _entry(node: Node | None, key: str) -> Node | None:
    """The value of ``key`` in a mapping node; None if ``node`` is no mapping or lacks the key."""
    if not isinstance(node, MappingNode):
        return None
    return next((value for k, value in node.value if k.value == key), None)


def _rank_change(parent: MappingNode, child: MappingNode, target: str) -> dict[int, Problem]:
    """A child's single-number ``input.size`` over a 1-D or 3-D parent: refused, at the child's size.

    One number means a square image, so ``size: 2048`` under ``densenet121-1d`` would silently
    build a 2-D network: almost always a slip for ``[2048]``. A list of another length is a
    deliberate change of rank and stays allowed. The problem comes keyed by the id of the size
    node, which a spec further down the chain may override.
    """
    size = _entry(_entry(child, "input"), "size")
    before = _entry(_entry(parent, "input"), "size")
    if not (isinstance(size, ScalarNode) and size.tag == TAG + "int" and isinstance(before, SequenceNode)):
        return {}
    rank = len(before.value)
    if rank not in (1, 3) or not all(isinstance(item, ScalarNode) for item in before.value):
        return {}
    shown = ", ".join(str(item.value) for item in before.value)
    keep = ", ".join([size.value] * rank)
    message = (
        f"{_one_line(target[:200])} is {rank}-D ([{shown}]); write [{keep}] to keep it {rank}-D "
        "(or a list of 2 sizes for a 2-D network)"
    )
    return {id(size): node_problem(size, message, "input.size")}


def _read_parent(path: Path, shown: str, child: str) -> MappingNode:
    """A parent's tree (``shown`` is how messages call it); its problems (empty, binary, bad YAML)
    also say which spec (``child``, as messages call it) extends it."""
    try:
        return read_tree(path, shown)
    except SpecError as exc:
        by = f" (extended by {child})"
        raise SpecError(replace(p, message=p.message + by) for p in exc.problems) from None


# ----------------------------------------------------------------------------- nodes to data


def _to_data(node: Node, path: FieldPath, source: SourceMap, found: list[Problem]) -> Any:
    """Plain Python data from checked nodes, recording where each field was written; a value
    refused on its text (an octal-looking number) goes to ``found`` and is kept as YAML read it,
    so that the schema still checks the rest."""
    if isinstance(node, ScalarNode):
        source.values[path] = location(node)
        return _scalar(node, path, source, found)
    if isinstance(node, SequenceNode):
        source.values.setdefault(path, location(node))
        return [_to_data(item, (*path, i), source, found) for i, item in enumerate(node.value)]
    assert isinstance(node, MappingNode)
    source.values.setdefault(path, location(node))
    data = {}
    for key, value in node.value:
        sub = (*path, key.value)
        source.keys[sub] = location(key)
        if not isinstance(value, ScalarNode) and not value.flow_style:
            source.values[sub] = location(key)
        data[key.value] = _to_data(value, sub, source, found)
    return data


_TEXT_FIELDS = frozenset({("name",), ("description",)})


# YAML 1.1 numbers whose value is not what they show: a leading 0 is octal (010 is 8), n:m is
# base 60 (1:30 is 90). YAML 1.2 dropped both; a spec refuses them rather than change a width.
_SURPRISING_NUMBER = re.compile(r"[-+]?0[0-7_]+|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")


def _scalar(node: ScalarNode, path: FieldPath, source: SourceMap, found: list[Problem]) -> Any:
    """A scalar's value; for a text field, its text where YAML 1.1 read it as text (``name: 1e5``)."""
    if path in _TEXT_FIELDS and text_in_yaml11(node):
        return node.value
    if node.style is None and node.tag != TAG + "str":
        source.texts[path] = node.value
    if node.style in ("'", '"'):
        source.quoted.add(path)
    value = construct(node)
    numeric = node.tag in (TAG + "int", TAG + "float") and path not in _TEXT_FIELDS  # those say to quote
    if numeric and _SURPRISING_NUMBER.fullmatch(node.value):
        kind = "a leading 0 as octal" if ":" not in node.value else "n:m as base 60"
        message = f"{node.value} reads as {value} (YAML 1.1 reads {kind}); write the number you mean without it"
        found.append(node_problem(node, message, format_path(path)))
    return value


def spec_from_data(data: dict[str, Any], source: SourceMap | None = None, found: Sequence[Problem] = ()) -> Spec:
    """Validate plain data (already merged along ``extends``) into a Spec.

    ``found`` holds the problems the loader met before validation (in the file's nodes, or in
    merging them); they are reported together with the schema's, so that one problem never hides
    the others. A schema problem of a field already in ``found`` is left out: it is the same one.
    """
    source = source or SourceMap()
    earlier = [replace(p, message=p.message + inherited_note(p.location, source)) for p in found]
    try:
        spec = Spec.model_validate(data, context={"extends_resolved": bool(source.values)})
    except ValidationError as exc:
        fields = {p.field for p in earlier}
        schema = [p for p in validation_problems(exc, data, source) if p.field not in fields]
        raise SpecError(sorted([*earlier, *schema], key=reading_order)) from None
    if earlier:
        raise SpecError(sorted(earlier, key=reading_order))
    spec._source = source
    return spec


def load_spec(source: str | os.PathLike[str]) -> Spec:
    """Load a spec from a YAML file or a preset name; raises SpecError with every problem found."""
    if not isinstance(source, str | os.PathLike):
        hint = ": as_ir() and build_model() take a mapping of fields" if isinstance(source, Mapping) else ""
        raise TypeError(f"load_spec takes a spec file or a preset name, not {type(source).__name__}{hint}")
    path = resolve_source(source)
    found: list[Problem] = []
    tree = _load_tree(path, _given_name(source, path), found)
    where = SourceMap()
    data = _to_data(tree, (), where, found)
    return spec_from_data(data, where, found)
