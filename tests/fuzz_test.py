"""Fuzzing the loader and compiler: every spec text compiles or is refused with a located SpecError, fast.

The generator starts from small valid specs and mutates their text: YAML traps (merge keys,
anchors and aliases, tags, deep nesting, bombs, control characters, surrogates, tabs, broken
indentation), wrong types and out-of-range values, structural edits (lines deleted, duplicated,
moved, re-indented) and ``extends`` to presets, sibling files, itself and places that do not exist.

It draws through a :class:`Chooser`, so that the same generator runs under hypothesis here (a few
hundred cases in the normal test run, derandomized so that the run is repeatable) and under a plain
seeded ``random.Random`` in ``scripts/fuzz.py`` for long runs over the CLI as well.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densenet_spec import SpecError, compile_spec, load_spec

T = TypeVar("T")

CASE_SECONDS = 2.0  # the bound of the issue: no spec may take longer to load and compile
# Problems about a file as a whole: they name the file but have no line to point at.
FILE_LEVEL = (
    "the file is empty",
    "not UTF-8 text",
    "is over",
    "cannot read the file",
    "no such file or preset",
    "not a regular file",
    "cannot open",
)


class Chooser(Protocol):
    """The random decisions the generator makes; hypothesis or random.Random behind it."""

    def choice(self, options: Sequence[T]) -> T: ...

    def integer(self, low: int, high: int) -> int: ...


# ----------------------------------------------------------------------------- the generator

BASES = (
    "name: tiny\ngrowth_rate: 4\nblocks: [2, 2]\ninput: {channels: 3, size: 32}\nstem: {kind: cifar}\n"
    "num_classes: 10\n",
    "name: tiny-b\ndescription: a small net\ngrowth_rate: 6\nblocks:\n  - 2\n  - {layers: 1, growth_rate: 4}\n"
    "bottleneck_width: 2\ncompression: 0.5\ndropout: 0.1\ninput:\n  channels: 1\n  size: [32, 40]\n"
    "stem:\n  kind: imagenet\n  channels: 8\nnum_classes: 3\n",
    "name: child\nextends: densenet-40-k12\ngrowth_rate: 4\nblocks: [2, 2]\n",
    "name: merged\ngrowth_rate: 4\ninput: &d {channels: 1, size: 32}\nstem: {<<: {kind: cifar}, channels: 6}\n"
    "blocks: &b [1, 1]\n",
    "name: stem-short\ngrowth_rate: 4\nblocks: [2]\ninput: {<<: {channels: 1, size: 64}, size: 32}\nstem: cifar\n",
    "name: plain\ngrowth_rate: 3\nblocks: [3]\nbottleneck_width: null\ncompression: 1.0\ninput: {size: 16}\n"
    "stem: {kind: cifar, channels: 5}\nnum_classes: 2\n",
)
KEYS = (
    "name", "description", "extends", "input", "stem", "growth_rate", "blocks", "bottleneck_width",
    "compression", "dropout", "num_classes", "channels", "size", "kind", "layers",
    "growth_rat", "chanels", "<<", '"<<"', "'name'", "1", "~", "? [a]", "!!str x", "*undefined", "x\t",
)  # fmt: skip
EXTENDS = (
    "densenet-40-k12", "densenet121", "densenet12", "other.yaml", "spec.yaml", "./other.yaml", "missing.yaml",
    "../nowhere/x.yaml", "sub/", '"a\\0b.yaml"', "a" * 300 + ".yaml", "/dev/zero", "'densenet-bc-100-k12'",
    "[other.yaml]", "{a: 1}", "null", "42", "''",
)  # fmt: skip
CHARACTERS = (
    "\0", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\t", "\r", "\u2028", "\ufeff", "\ud800", "\udfff", "é", "☃",
    ":", ": ", "-", "- ", "[", "]", "{", "}", "&", "*", "!", "'", '"', "#", "|", ">", "%", "@", "`", ",", "?", " ",
    "\n", "\\",
)  # fmt: skip


def _huge_int(ch: Chooser) -> str:
    return ch.choice("123456789") + "0" * ch.integer(20, 5000)


def _nesting(ch: Chooser) -> str:
    depth = ch.integer(1, 400)
    if ch.choice((True, False)):
        return "[" * depth + "1" + "]" * depth
    return "{a: " * depth + "1" + "}" * depth


def _value(ch: Chooser) -> str:
    """A YAML value: usually of a plausible kind, often of the wrong type, range or syntax."""
    kind = ch.integer(0, 9)
    if kind <= 2:
        return str(ch.choice((0, -1, 1, 2, 3, 4, 7, 12, 32, 64, 224, 10**6, 10**12, 2**63, -(2**63))))
    if kind == 3:
        return ch.choice(("0.5", "1.0", "0.0", "4.5", "1e-300", "1e300", ".nan", ".inf", "-.inf", "0.99", "-0.1"))
    if kind == 4:
        return ch.choice(
            (
                "cifar", "imagenet", "deep", "cifra", '"12"', '"x\\ud800y"', '"a\\0b"', '"\\x01"', "~", "null",
                "yes", "no", "on", "2001-12-14", "2001-13-45", "0x1F", "0o17", "1_000", "190:20:30", "'<<'", "<<",
                '"' + "x" * 300 + '"', "|\n  text\n", ">-\n  folded\n", "DenseNet 121", "densenet-40-k12",
            )
        )  # fmt: skip
    if kind == 5:
        return ch.choice(
            (
                "!!binary aGVsbG8=", '!!python/object/apply:os.system ["true"]', "!mine x", "!!int abc", "!!float x",
                "!!bool maybe", "!!timestamp nope", "!!set {a, b}", "!!omap [a: 1]", "!!str", "!!seq 2", "!!map x",
                "!!null 3", "!!merge x", "!<tag:yaml.org,2002:int> 5", "&a 4", "*a", "*undefined",
            )
        )  # fmt: skip
    if kind == 6:
        return ch.choice(
            (
                "[1, 2]", "[]", "{}", "[2, {layers: 2, growth_rate: 3}]", "{layers: 2}", "{kind: cifar}",
                "{channels: 1, size: [32, 32]}", "{<<: 5}", "{<<: [1, 2]}", "{<<: null}",
                "{<<: {channels: 1}, channels: 2}",
                "{<<: [{size: 32}, {size: 64}], channels: 1}", "[32, 32, 32]", "[0, 32]", "{kind: resnet}", "[1, 2",
                "{a: 1", "[*a, *a]", "&l [1, 2]", "{<<: *d}",
            )
        )  # fmt: skip
    if kind == 7:
        return _huge_int(ch) if ch.choice((True, False)) else "9" * ch.integer(90, 110)
    if kind == 8:
        return _nesting(ch)
    return ch.choice(("", " ", "'", '"', "&", "*", "!", "|", ">", "-", "?", ":", "@", "`", "%"))


def _merge_bomb(ch: Chooser) -> str:
    width, levels = ch.integer(2, 9), ch.integer(2, 8)
    lines = ["m0: &m0 {" + ", ".join(f"k{i}: {i}" for i in range(width)) + "}"]
    for n in range(1, levels + 1):
        refs = ", ".join([f"*m{n - 1}"] * width)
        lines.append(f"m{n}: &m{n} {{<<: [{refs}], z{n}: 1}}")
    return "\n".join(lines)


def _alias_bomb(ch: Chooser) -> str:
    width, levels = ch.integer(2, 9), ch.integer(2, 8)
    lines = ["b0: &b0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"b{n}: &b{n} [{', '.join([f'*b{n - 1}'] * width)}]" for n in range(1, levels + 1)]
    return "\n".join(lines)


def _trap_line(ch: Chooser) -> str:
    """A line (or a few) to insert anywhere: merge keys, anchors, directives, bombs, extends."""
    kind = ch.integer(0, 7)
    if kind == 0:
        return f"{ch.choice(KEYS)}: {_value(ch)}"
    if kind == 1:
        return f"extends: {ch.choice(EXTENDS)}"
    if kind == 2:
        return ch.choice(("<<: *d", "<<: 5", "<<: [1, 2]", "<<: null", "<<: {growth_rate: 8}", "<<: [*d, *d]", "<<:"))
    if kind == 3:
        return ch.choice(("d: &d {channels: 1}", "a: &a 3", "l: &l [1]", "e: &e", "x: *d", "y: &y {<<: *y}"))
    if kind == 4:
        return _merge_bomb(ch) if ch.choice((True, False)) else _alias_bomb(ch)
    if kind == 5:
        return ch.choice(("---", "...", "%YAML 1.1\n---", "%TAG ! tag:x,2000:", "- item", "? complex", "#", "&", "*"))
    if kind == 6:
        return f"blocks: [{', '.join(str(ch.integer(0, 4)) for _ in range(ch.integer(0, 40)))}]"
    return f"input:\n  channels: {_value(ch)}\n  size: {_value(ch)}"


def _lines_edit(text: str, ch: Chooser) -> str:
    lines = text.split("\n")
    at = ch.integer(0, len(lines) - 1)
    kind = ch.integer(0, 7)
    if kind == 0:  # a value replaced
        key, sep, _ = lines[at].partition(":")
        lines[at] = f"{key}: {_value(ch)}" if sep else _value(ch)
    elif kind == 1:  # a trap inserted, at some indentation
        lines.insert(at, " " * ch.choice((0, 0, 1, 2, 4)) + _trap_line(ch))
    elif kind == 2:
        del lines[at]
    elif kind == 3:
        lines.insert(at, lines[ch.integer(0, len(lines) - 1)])
    elif kind == 4:
        other = ch.integer(0, len(lines) - 1)
        lines[at], lines[other] = lines[other], lines[at]
    elif kind == 5:  # indentation broken
        lines[at] = " " * ch.choice((1, 2, 3, 4)) + lines[at] if ch.choice((True, False)) else lines[at].lstrip()
    elif kind == 6:  # a character inserted
        pos = ch.integer(0, len(lines[at]))
        lines[at] = lines[at][:pos] + ch.choice(CHARACTERS) + lines[at][pos:]
    else:  # a key renamed
        _, sep, rest = lines[at].partition(":")
        if sep:
            lines[at] = f"{ch.choice(KEYS)}:{rest}"
    return "\n".join(lines)


FIELDS = (
    ("name",), ("description",), ("extends",), ("input",), ("input", "channels"), ("input", "size"), ("stem",),
    ("stem", "kind"), ("stem", "channels"), ("growth_rate",), ("blocks",), ("blocks", 0), ("blocks", -1),
    ("bottleneck_width",), ("compression",), ("dropout",), ("num_classes",), ("head",), ("input", "sizes"),
)  # fmt: skip


def _data_value(ch: Chooser, long_lists: bool) -> object:
    """A Python value for a field: extreme numbers (up to the loader's 100 digits), wrong types, structures."""
    kind = ch.integer(0, 7)
    if kind <= 2:
        return ch.choice((0, 1, 2, 3, 7, 16, 32, 33, 224, 2**31, 2**63, -1, *(10**k for k in (3, 4, 6, 9, 12, 30, 99))))
    if kind == 3:
        return ch.choice((0.0, 0.5, 1.0, 1e-300, 1e300, float("nan"), float("inf"), 4.5, True, None))
    if kind == 4:
        return ch.choice(("cifar", "imagenet", "deep", "densenet121", "other.yaml", "x" * 200, "", "DenseNet"))
    if kind == 5:
        size = ch.choice((1, 2, 3, 40) + ((500, 3000) if long_lists else ()))
        if ch.integer(0, 1):  # valid and uniform: the case where only the block count is extreme
            return [ch.choice((1, 2))] * size
        return [ch.choice((1, 2, 0, 10**99, {"layers": 1, "growth_rate": ch.choice((1, 10**6))})) for _ in range(size)]
    if kind == 6:
        return ch.choice(
            (
                {"kind": "cifar"}, {"kind": "imagenet", "channels": ch.choice((1, 10**6, 10**99))},
                {"channels": ch.choice((1, 3, 10**5)), "size": ch.choice((1, 8, 32, [9, 10**6], [10**99, 10**99]))},
                {"layers": 3, "growth_rate": 2}, {}, [],
            )
        )  # fmt: skip
    return ch.choice((10**99 - 1, 2**64, 10**18, [10**12, 10**12], [1, 10**99]))


def _structured(ch: Chooser, long_lists: bool) -> str:
    """A base spec with 1-3 fields set to generated values, dumped as YAML (block or flow style)."""
    data = yaml.safe_load(ch.choice(BASES[:2] + BASES[4:]))
    for _ in range(ch.integer(1, 3)):
        path = ch.choice(FIELDS)
        parent: object = data
        for part in path[:-1]:
            parent = parent.setdefault(part, {}) if isinstance(parent, dict) else None
        last = path[-1]
        if isinstance(parent, dict) or (isinstance(parent, list) and parent and isinstance(last, int)):
            parent[last] = _data_value(ch, long_lists)  # a list: blocks[0] or blocks[-1]
    return yaml.safe_dump(data, default_flow_style=ch.choice((False, None)), sort_keys=False, width=10**6)


@dataclass
class Case:
    """A generated spec and the sibling file it may extend; ``spec.yaml`` is the one loaded."""

    files: dict[str, str] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        for name, text in self.files.items():
            # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, as a broken editor writes them.
            (folder / name).write_bytes(text.encode("utf-8", "surrogatepass"))
        return folder / "spec.yaml"


def generate(ch: Chooser, *, long_lists: bool = False) -> Case:
    """A spec text (and a sibling ``other.yaml``) after 0-4 text mutations of a valid or field-edited base.

    ``long_lists`` allows blocks lists of 500 and 3,000 items (a known slow path of the compiler
    when this was written): on in scripts/fuzz.py, off in the test run.
    """
    case = Case()
    for name in ("spec.yaml", "other.yaml"):
        text = ch.choice(BASES) if ch.integer(0, 1) else _structured(ch, long_lists)
        for _ in range(ch.integer(0, 4)):
            text = _lines_edit(text, ch)
        case.files[name] = text
    return case


# ----------------------------------------------------------------------------- the property


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    """Turn a hang into a failure (POSIX main thread only)."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check_problem(exc: SpecError) -> None:
    """A refusal as the contract says: the first problem names a file, and a line unless file-level."""
    first = exc.problems[0]
    assert first.location is not None and first.location.file, f"no file: {first}"
    if not any(fragment in first.message for fragment in FILE_LEVEL):
        assert first.location.line is not None, f"no line for a spec problem: {first}"
    for problem in exc.problems:
        assert "\n" not in str(problem), f"a problem must be one line: {problem!r}"


def run_case(spec: Path, compile_: Callable[[Path], object] | None = None) -> tuple[str, float]:
    """Load and compile ``spec``: ("ok" or "refused", seconds); anything else raises."""
    start = time.perf_counter()
    with alarm(30):
        try:
            (compile_ or (lambda path: compile_spec(load_spec(path))))(spec)
            outcome = "ok"
        except SpecError as exc:
            check_problem(exc)
            outcome = "refused"
    return outcome, time.perf_counter() - start


class _HypothesisChooser:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))


FUZZ_EXAMPLES = int(os.environ.get("DENSENET_SPEC_FUZZ_EXAMPLES", "500"))


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # the bound is checked below, on load + compile only
    derandomize=os.environ.get("DENSENET_SPEC_FUZZ_RANDOM") is None,  # repeatable in `make test`
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)
@given(st.data())
def test_every_spec_compiles_or_is_refused_with_a_location(data: st.DataObject) -> None:
    case = generate(_HypothesisChooser(data))
    with tempfile.TemporaryDirectory() as folder:
        outcome, seconds = run_case(case.write(Path(folder)))
    assert seconds < CASE_SECONDS, f"{outcome} after {seconds:.1f} s"


class RandomChooser:
    """The generator's choices from a seeded random.Random: what scripts/fuzz.py uses."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choice(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


def test_the_generator_reaches_both_outcomes() -> None:
    # A fuzzer that only ever produced refusals (or only valid specs) would prove little.
    chooser = RandomChooser(random.Random(1))
    outcomes = []
    for _ in range(200):
        with tempfile.TemporaryDirectory() as folder:
            outcomes.append(run_case(generate(chooser).write(Path(folder)))[0])
    assert 0.05 < outcomes.count("ok") / len(outcomes) < 0.9
