"""pydantic's validation errors in the project's words, each located where the spec file wrote it.

Every pydantic error type maps to one small function (:data:`_MESSAGES`) that says what the field
needs and how to fix it; the range a field accepts is the schema's (:data:`~.schema.RANGES`), and
how YAML read an unquoted scalar (``yes``, ``2024-01-01``) is kept so that the message can say to
quote it.
"""

from __future__ import annotations

import copy
import difflib
import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .errors import Location, Problem
from .schema import (
    KIND_NAMES,
    RANGES,
    STEM_KEYS,
    STEM_KINDS,
    STEM_MODELS,
    STEM_PARAMS,
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
    other_kind_message,
)
from .yaml_nodes import SpecLoader


def did_you_mean(word: str, choices: list[str]) -> str:
    close = _closest(word, choices)
    return f"; did you mean '{close}'?" if close else ""


def _closest(word: str, choices: list[str]) -> str | None:
    """The choice nearest ``word``, ignoring case: ``BLOCKS`` is as near ``blocks`` as ``blocks`` is
    (difflib alone finds no letter in common)."""
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


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


def _model_of(parent: FieldPath, data: Any = None) -> type[BaseModel]:
    """The schema model of the mapping at ``parent``; for the stem, its kind's model (in ``data``)."""
    if parent == ("stem",) and isinstance(data, dict) and isinstance(data.get("stem"), dict):
        kind = data["stem"].get("kind", "imagenet")
        return _STEM_MODEL_OF.get(kind if isinstance(kind, str) else None, ImagenetStem)
    return _MODELS.get(str(parent[0]), Spec) if parent else Spec


_STEM_MODEL_OF: dict[str | None, type[BaseModel]] = dict(zip(STEM_KINDS, STEM_MODELS, strict=True))


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
    quoted: bool = False
    owner: type[BaseModel] = Spec
    """The model of the mapping that holds the field (a stem: its kind's)."""

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
    key = str(e.path[-1])
    kind = next((k for k, model in _STEM_MODEL_OF.items() if model is e.owner), None)
    if kind is not None and key in STEM_KEYS:  # `mid_channels` under a cifar stem: the deep stem's key
        return other_kind_message(key, kind, STEM_PARAMS, " stems")
    fields = list(e.owner.model_fields)
    hint = did_you_mean(key, fields) or f"; allowed keys: {', '.join(fields)}"
    return f"unknown key '{key}'{hint}"


_SYNONYMS = {
    "swish": "silu",
    "hard_swish": "hardswish",
    "leakyrelu": "leaky_relu",
    "lrelu": "leaky_relu",
    "bn": "batch",
    "batchnorm": "batch",
    "gn": "group",
    "groupnorm": "group",
    "instancenorm": "instance",
}
"""Other libraries' names for a choice, so that the message names ours (timm's ``swish`` is ``silu``)."""


def _not_a_choice(e: _Error) -> str:
    choices = re.findall(r"'([^']*)'", str(e.ctx.get("expected", "")))
    if isinstance(e.got, bool) or e.got is None:  # `anti_alias: yes`, `pool: off`, `kind: ~`
        names = ", ".join(_yaml_text(c) for c in choices)
        return f"must be one of {names}, not {e.shown}{_yaml_reading(e, choices)}"
    hint = ""
    if isinstance(e.got, str):
        ours = _SYNONYMS.get(re.sub(r"[123]d$", "", e.got.lower().replace("-", "_")))  # BatchNorm2d
        hint = f"; {e.got!r} is called {ours!r} here" if ours in choices else did_you_mean(e.got, choices)
    return f"must be one of {', '.join(repr(c) for c in choices)}, not {e.shown}{hint}"


def _out_of_range(e: _Error) -> str:
    return f"{e.shown} is out of range: must be {e.range}"


def _not_an_integer(e: _Error) -> str:
    return f"must be {e.range}, not {e.shown}{_unquote_hint(e)}{_integral_hint(e.got)}"


def _not_a_number(e: _Error) -> str:
    return f"must be a number ({e.range}), not {e.shown}{_unquote_hint(e)}"


def _integral_hint(value: Any) -> str:
    """``1e3`` for an integer field is 1000.0, a float: say how to write the integer."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return f" (write {int(value)}, without a decimal point or exponent)"
    return ""


def _yaml_text(value: Any) -> str:
    """``value`` as it would be written in a spec: plain where YAML reads it back as that value, else quoted."""
    if isinstance(value, bool) or value is None:
        return _shown(value)
    if isinstance(value, list):
        return f"[{', '.join(_yaml_text(item) for item in value)}]"
    if isinstance(value, str):
        try:
            plain = yaml.load(value, Loader=SpecLoader) == value and "\n" not in value
        except yaml.YAMLError:
            plain = False
        return value if plain else "'" + value.replace("'", "''") + "'"
    return repr(value)


def _unquote_hint(e: _Error) -> str:
    """``'0.5'`` in quotes is a string in YAML: say so, as the value looks right."""
    if not e.quoted or not isinstance(e.got, str):
        return ""
    try:
        number = float(e.got)
    except ValueError:
        return ""
    return " (a number in quotes is text: remove the quotes)" if math.isfinite(number) else ""


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


def _yaml_reading(e: _Error, names: tuple[str, ...] | list[str]) -> str:
    """For a name field given true, false or null: how YAML read it (``off`` is the boolean false),
    and ``none`` where that is a name (what ``off`` or ``null`` most likely meant); '' otherwise."""
    if not (isinstance(e.got, bool) or e.got is None):
        return ""
    written = e.text if e.text is not None else e.shown
    if e.got is not None:
        reading = f"YAML reads {written} as the boolean {e.shown}, not as a name"
    elif written == "":
        reading = "an empty value is null in YAML"
    elif written.lower() == "null":
        reading = "null is YAML's null, not a name"
    else:
        reading = f"YAML reads {written} as null, not as a name"
    advice = f": write {e.leaf}: none" if e.got is not True and "none" in names else ""
    return f" ({reading}){advice}"


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
        return f"must be one of {kinds}, not {got.get('kind')!r}{did_you_mean(str(got.get('kind')), list(STEM_KINDS))}"
    if isinstance(got, str):
        return f"must be one of {kinds} (or a mapping such as {_MAPPING_EXAMPLES['stem']}), not {got!r}" + (
            did_you_mean(got, list(STEM_KINDS))
        )
    return (
        f"must be one of {kinds}, or a mapping such as {_MAPPING_EXAMPLES['stem']}, not {e.shown}"
        f"{_yaml_reading(e, STEM_KINDS)}{_as_a_key(e, ImagenetStem)}"
    )


_MAPPING_EXAMPLES = {
    "stem": "{kind: cifar, channels: 32}",
    "activation": "{kind: leaky_relu, negative_slope: 0.1}",
    "norm": "{kind: group, groups: 8}",
}
"""A mapping of each field that also takes a kind's name (:data:`~.schema.KIND_NAMES`), for messages."""


def _not_a_mapping(e: _Error) -> str:
    if len(e.path) == 1 and e.leaf in KIND_NAMES:
        # `norm: off`: these fields take a name too, and YAML read the name as something else
        names = KIND_NAMES[e.leaf]
        return (
            f"takes a name ({', '.join(_yaml_text(n) for n in names)}) or a mapping such as "
            f"{_MAPPING_EXAMPLES[e.leaf]}, not {e.shown}{_yaml_reading(e, names)}{_as_a_key(e, _model_of(e.path))}"
        )
    # `head: avg` for `head: {pool: avg}`: a top-level field's mapping of one key
    hint = _as_a_key(e, _MODELS[e.leaf]) if len(e.path) == 1 and e.leaf in _MODELS else ""
    return f"must be a mapping of keys, not {e.shown}{hint}"


def _as_a_key(e: _Error, model: type[BaseModel]) -> str:
    """``head: avg`` for ``head: {pool: avg}``: the mappings of one key that take the value written,
    as a question; '' if none does (or the value is true, false or null, which YAML may have misread)."""
    if isinstance(e.got, bool | dict) or e.got is None:
        return ""
    fits = []
    for key in model.model_fields:
        try:
            model.model_validate({key: e.got})
        except ValidationError:
            continue
        fits.append(key)
    if not fits:
        return ""
    value = e.text if e.text is not None and not isinstance(e.got, list) else _yaml_text(e.got)
    return f"; did you mean {' or '.join(f'{e.leaf}: {{{key}: {value}}}' for key in fits)}?"


def _not_a_list(e: _Error) -> str:
    return f"must be a list, not {e.shown}{_as_a_list(e)}"


def _as_a_list(e: _Error) -> str:
    """``: write [6]`` for ``blocks: 6`` (and ``[6, 12]`` for ``blocks: 6, 12``, which YAML reads as
    text); '' for a value that is no whole number or numbers. ``mid_channels`` takes two widths."""
    got = e.got
    if isinstance(got, int) and not isinstance(got, bool):
        items = [str(got)]
    elif isinstance(got, str) and re.fullmatch(r"\s*\d+(?:\s*[,\s]\s*\d+)*\s*", got):
        items = re.findall(r"\d+", got)
    else:
        return ""
    if e.leaf == "mid_channels" and len(items) == 1:
        items *= 2
    return f": write [{', '.join(items)}]"


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
    """One located, readable problem per pydantic error; a missing key that an unknown key's
    did-you-mean names is left to that key's line (``Growth_Rate: 12`` is one mistake, not two)."""
    problems = []
    errors = _one_per_field(exc.errors())
    meant = _meant_keys(errors, data)
    adopted = _unindented(data, source)
    strays = {(key,) for keys in adopted.values() for key in keys}
    for error in errors:
        path = _error_path(error, data)
        if (error["type"] == "missing" and path in meant) or (error["type"] == "extra_forbidden" and path in strays):
            continue
        e = _Error(
            error["type"],
            path,
            error["input"],
            error.get("ctx", {}),
            error["msg"],
            source.texts.get(path),
            path in source.quoted,
            _model_of(path[:-1], data),
        )
        located = source.locate(path, key=e.kind in ("extra_forbidden", "missing"))
        inherited = _inherited(located, source, e.kind, functools.partial(_null_clears, data, path))
        message = _unindented_message(path, adopted) or _message(e)
        problems.append(Problem(located, format_path(path), message + inherited))
    return sorted(problems, key=reading_order)


def _one_per_field(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """pydantic's errors, a ``field_error`` about several fields (:func:`~.schema.field_error`'s
    ``more``) split into one error per field."""
    out = []
    for error in errors:
        out.append(error)
        ctx = error.get("ctx", {})
        if error["type"] == "field_error":
            out += [ErrorDetails(**{**error, "ctx": {**ctx, "message": m, "path": p}}) for p, m in ctx.get("more", ())]
    return out


def _unindented(data: Any, source: SourceMap) -> dict[str, list[str]]:
    """The keys written without indentation under an empty mapping key, by that key.

    ``input:`` followed by ``channels: 1`` at the same column is an empty ``input`` and a
    top-level ``channels``; the keys on the next lines of the same file that are the mapping's and
    not the top level's (stopping at the first other one) are what the user meant to indent.
    """
    if not isinstance(data, dict):
        return {}
    top = sorted((where.line or 0, path[0]) for path, where in source.keys.items() if len(path) == 1)
    adopted: dict[str, list[str]] = {}
    for key, value in data.items():
        opened = source.keys.get((key,))
        if value is not None or key not in _MODELS or opened is None:
            continue
        own = STEM_KEYS if key == "stem" else _MODELS[key].model_fields.keys()
        keys = []
        for line, name in top:
            if line <= (opened.line or 0) or source.keys[(name,)].file != opened.file:
                continue
            if name in Spec.model_fields or name not in own:
                break
            keys.append(str(name))
        if keys:
            adopted[key] = keys
    return adopted


def _unindented_message(path: FieldPath, adopted: dict[str, list[str]]) -> str:
    """For an empty mapping key whose keys follow it unindented, what to do (instead of the type
    error's own advice, such as ``write norm: none``); '' for any other field."""
    keys = adopted.get(str(path[0])) if len(path) == 1 else None
    if not keys:
        return ""
    return (
        f"is empty, and the lines below hold its keys ({', '.join(keys)}) at the top level: "
        f"indent them under '{path[0]}:'"
    )


def _meant_keys(errors: list[ErrorDetails], data: Any) -> set[FieldPath]:
    """The keys that the unknown keys' did-you-mean suggestions name, each at its mapping's path."""
    meant = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            path = _error_path(error, data)
            close = _closest(str(path[-1]), list(_model_of(path[:-1], data).model_fields))
            if close is not None:
                meant.add((*path[:-1], close))
    return meant


def _inheritor(located: Location | None, source: SourceMap) -> str | None:
    """The spec's own file when ``located`` lies in another (a parent, through ``extends``); else None."""
    root = source.values.get(())
    if located is None or root is None or located.file == root.file:
        return None
    return root.file


def inherited_note(located: Location | None, source: SourceMap) -> str:
    """`` (inherited by CHILD: override it there)`` for a problem located in a parent file, '' otherwise.

    A problem in a parent's file is often caused by the spec that extends it (its growth rate
    makes the parent's groups fail), and the user may not own the parent (a preset): the message
    names the spec being read, where the fix belongs. Used for every problem found after the
    files are merged: the loader's, the schema's and the compiler's.
    """
    child = _inheritor(located, source)
    return f" (inherited by {child}: override it there)" if child is not None else ""


def _inherited(located: Location | None, source: SourceMap, kind: str, null_clears: Callable[[], bool]) -> str:
    """Where a value came from a parent file (``extends``), say so: the user may not own that file,
    and the fix then belongs in the spec that extends it. ``null`` is offered only where it
    clears the error (tried on the merged data)."""
    child = _inheritor(located, source)
    if child is None:
        return ""
    if kind == "extra_forbidden":  # a key of the parent's stem kind, say, under the child's kind
        if null_clears():
            return f" (inherited by {child}: set it to null there to drop it)"
        return f" (inherited by {child}, which cannot remove a key: fix it in this file)"
    if null_clears():
        return f" (inherited by {child}: override it there, or set it to null for its default)"
    return inherited_note(located, source)


def _null_clears(data: Any, path: FieldPath) -> bool:
    """Whether ``null`` at ``path`` in ``data`` (a merged spec) leaves no error at that field.
    Never inside a list: a child replaces a list whole, so it cannot null one entry's key."""
    if any(isinstance(part, int) for part in path):
        return False
    trial = copy.deepcopy(data)
    node = trial
    try:
        for part in path[:-1]:
            node = node[part]
    except (KeyError, IndexError, TypeError):
        return False
    if not isinstance(node, dict) or not path or path[-1] not in node:
        return False
    node[path[-1]] = None
    try:
        Spec.model_validate(trial, context={"extends_resolved": True})
    except ValidationError as exc:
        return all(_error_path(error, trial)[: len(path)] != path for error in exc.errors())
    return True


def reading_order(problem: Problem) -> tuple[str, int, int]:
    """A key to sort problems as a reader meets them: by file, line and column."""
    where = problem.location
    return (where.file, where.line or 0, where.column or 0) if where else ("", 0, 0)
