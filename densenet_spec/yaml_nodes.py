"""YAML text to a checked tree of PyYAML nodes: the part of loading that untrusted bytes reach first.

A spec file is read within a size limit, refused if it holds control characters, composed with
PyYAML's safe loader (nothing is constructed), then checked node by node within a budget: tags,
duplicate keys, merge keys (resolved here, so that PyYAML's exponential flattening never runs),
integer literals too long to convert, aliases that loop. Every refusal is a :class:`SpecError`
located at ``FILE:LINE:COL``. Kept apart from :mod:`densenet_spec.loader`, which deals in files,
``extends`` chains and pydantic, so that the defences can be read and fuzzed on their own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Location, Problem, SpecError
from .schema import FieldPath, format_path

MAX_BYTES = 1 << 20
MAX_NODES = 10_000
MAX_DEPTH = 32
MAX_INT_DIGITS = 100  # far below Python's int-to-str limit (4,300 digits), far above any real spec

_SAFE_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag and tag.startswith("tag:yaml.org,2002:"))

# YAML 1.2's floats with an exponent and no dot (``1e-5``, ``5e-1``, ``1E3``, ``-2.5e+3``), which
# YAML 1.1 (and so PyYAML) reads as strings; PyTorch users write eps as ``1e-5``.
YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


Aliases = dict[tuple[int, int, bool], tuple[str, Location]]
"""Where each alias was written, by the place it fills: (id of the collection, index, is a key)
to (anchor name, place of the ``*name``)."""


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading YAML 1.2's exponent floats (``1e-5``) as floats.

    Only composing and resolving are used (nothing is constructed through it); the subclass keeps
    the change off ``yaml.SafeLoader`` itself, which other code in the same process may use.
    It also records where each alias is written (:data:`Aliases`): the composed tree holds the
    anchored node itself in its place, whose marks are those of the anchor.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases: Aliases = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        alias = self.peek_event() if self.check_event(yaml.AliasEvent) else None  # type: ignore[no-untyped-call]
        position = len(parent.value) if isinstance(parent, MappingNode | SequenceNode) else 0
        node = super().compose_node(parent, index)
        if isinstance(alias, yaml.AliasEvent) and alias.start_mark is not None and parent is not None:
            # A mapping composes each key with index None, then its value with the key as index.
            is_key = isinstance(parent, MappingNode) and index is None
            mark = alias.start_mark
            self.aliases[(id(parent), position, is_key)] = (
                str(alias.anchor),
                Location(mark.name, mark.line + 1, mark.column + 1),
            )
        return node


SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+0123456789."))


def location(node: Node) -> Location:
    mark = node.start_mark
    return Location(mark.name, mark.line + 1, mark.column + 1)


def node_problem(node: Node, message: str, field: str = "") -> Problem:
    return Problem(location(node), field, message)


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
    wide = _wide_encoding(raw)
    if wide:
        message = f"not UTF-8 text: it looks like {wide}; save it as UTF-8"
        raise SpecError([Problem(here, "", message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The place from the text before the bad byte (which decodes: it is valid UTF-8).
        before = raw[: exc.start].decode("utf-8")
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        guess = "; Latin-1 or Windows-1252 text?" if raw[exc.start] >= 0xA0 else ""
        message = (
            f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}: {exc.reason}{guess}); "
            "save the file as UTF-8"
        )
        raise SpecError([Problem(Location(name, line, column), "", message)]) from None
    bad = NON_PRINTABLE.search(text)
    if bad:
        pos = bad.start()
        line, column = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        message = f"{describe_char(bad.group())} in the file: a spec is plain text; remove it"
        raise SpecError([Problem(Location(name, line, column), "", message)])
    return text


def _wide_encoding(raw: bytes) -> str:
    """UTF-16 or UTF-32 by its byte-order mark, or UTF-16 by NUL bytes (every other byte of ASCII
    text is NUL in UTF-16, which is valid UTF-8); '' for anything else."""
    if raw.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32 (it starts with a UTF-32 byte-order mark)"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 (it starts with a UTF-16 byte-order mark)"
    nuls = raw.count(0)
    if len(raw) >= 4 and 3 * nuls >= len(raw) and 4 * nuls <= 3 * len(raw):  # 1/3 to 3/4 of the bytes
        return "UTF-16 (a NUL byte before or after most characters)"
    return ""


NON_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def describe_char(char: str) -> str:
    """A character YAML does not allow, named so that a reader can find it."""
    code = f"U+{ord(char):04X}"
    if char == "\0":
        return f"a NUL byte ({code})"
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate ({code}, half of a UTF-16 pair, not a character)"
    return f"the control character {code}"


def _compose(text: str, name: str) -> tuple[Node | None, Aliases]:
    """PyYAML's node tree of ``text`` (safe loader: nothing is constructed) and where its aliases are
    written, or SpecError with the place."""
    loader = SpecLoader(text)
    loader.name = name
    try:
        return loader.get_single_node(), loader.aliases
    except yaml.MarkedYAMLError as exc:
        mark, message = _yaml_problem(exc, text)
        where = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        raise SpecError([Problem(where, "", f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(Location(name), "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        where = _too_deep(text, name)
        raise SpecError([Problem(where, "", f"invalid YAML: nested more than {MAX_DEPTH} levels")]) from None
    finally:
        loader.dispose()


def _too_deep(text: str, name: str) -> Location:
    """Where collections first nest deeper than MAX_DEPTH, from YAML's tokens (its scanner does
    not recurse, and skips comments and strings); the file alone if the scan fails."""
    opening = (
        yaml.FlowSequenceStartToken,
        yaml.FlowMappingStartToken,
        yaml.BlockSequenceStartToken,
        yaml.BlockMappingStartToken,
    )
    closing = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, opening):
                depth += 1
            elif isinstance(token, closing):
                depth -= 1
            if depth > MAX_DEPTH + 1:  # the top-level mapping is not a level of nesting
                mark = token.start_mark
                return Location(name, mark.line + 1, mark.column + 1)
    except yaml.YAMLError:
        pass
    return Location(name)


def _tab_advice(mark: yaml.Mark | None) -> str:
    """A tab at the start of a line indents (YAML forbids it); after text it separates (``key:<TAB>1``)."""
    buffer = getattr(mark, "buffer", None)
    if mark is None or not isinstance(buffer, str):
        return "YAML indents with spaces, not tabs"
    start = buffer.rfind("\n", 0, mark.pointer) + 1
    if buffer[start : mark.pointer].strip(" \t"):
        return "replace the tab with a space (YAML separates a key and its value with spaces)"
    return "YAML indents with spaces, not tabs"


def _yaml_problem(exc: yaml.MarkedYAMLError, text: str) -> tuple[yaml.Mark | None, str]:
    """PyYAML's error as the place to fix and what to do there.

    PyYAML reports where it gave up (``problem_mark``), which for a '[', '{' or quote left open is
    the end of the file or a later line; it also says what it was reading (``context``, at
    ``context_mark``): that opening is then the place to show.
    """
    context, opened, problem = exc.context or "", exc.context_mark, exc.problem_mark
    if opened is not None and problem is not None:
        if context in ("while parsing a flow sequence", "while parsing a flow mapping"):
            return _unclosed_flow(exc, opened, problem)
        if context == "while scanning a quoted scalar":
            quote = '"\'"' if _char_at(opened) == "'" else "'\"'"
            end = f"the '---' on line {problem.line + 1}" if "separator" in str(exc.problem) else "the end of the file"
            return opened, f"the {quote} opened here is never closed (YAML read on to {end}): add the closing {quote}"
        if context == "while scanning a simple key":
            return opened, (
                "a line that is neither 'key: value' nor '- item': is the ':' after the key missing, "
                "or the space after it?"
            )
    if exc.problem == "mapping values are not allowed here" and problem is not None:
        glued = _glued_key(text, problem)
        if glued is not None:
            return glued
    return problem or opened, _yaml_hint(exc)


def _glued_key(text: str, problem: yaml.Mark) -> tuple[yaml.Mark, str] | None:
    """``name:x`` with no space after the ':' is one plain value, which runs on into the next line's
    key, where PyYAML reports "mapping values are not allowed here": the line to fix is the first."""
    last = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            last = token
    except yaml.YAMLError:
        pass
    if not isinstance(last, yaml.ScalarToken) or last.style is not None or last.start_mark.line >= problem.line:
        return None
    if not _starts_its_line(last.start_mark):  # a value after its key (`description: a:b`): not a key
        return None
    first_line = last.value.split(" ", 1)[0]
    key, colon, value = first_line.partition(":")
    if not (key and colon and value):
        return None
    return last.start_mark, (
        f"'{key}:{value}' reads as one value, not a key and its value: put a space after the ':' ({key}: {value})"
    )


_TOKENS = {
    "'<scalar>'": "a value",
    "'<stream end>'": "the end of the file",
    "'<alias>'": "an alias",
    "'<anchor>'": "an anchor",
    "'<tag>'": "a tag",
    "'<block mapping start>'": "a key",
    "'<block sequence start>'": "a '-' item",
}
"""PyYAML's token names, as a message says them (``but got '<scalar>'``)."""


def _unclosed_flow(exc: yaml.MarkedYAMLError, opened: yaml.Mark, problem: yaml.Mark) -> tuple[yaml.Mark, str]:
    """A flow collection (``[...]``, ``{...}``) where PyYAML expected a ',' or its end and found something else.

    If the file ended inside it, or it stops on its own line without a ',' that carries it on to
    the next, the opening is the place to fix: the closing bracket is missing. Otherwise (a
    collection written over several lines, a problem on its own line), the problem's place is.
    """
    bracket = "[" if exc.context == "while parsing a flow sequence" else "{"
    closer = "]" if bracket == "[" else "}"
    got = str(exc.problem).rpartition("but got ")[2]
    found = _TOKENS.get(got, got)
    if got == "'<stream end>'":
        return opened, (
            f"the '{bracket}' opened here is never closed (expected ',' or '{closer}' by the end of the file, "
            f"line {problem.line + 1}): add the '{closer}'"
        )
    if problem.line != opened.line and not _carried_on(opened):
        return opened, (
            f"the '{bracket}' opened here is not closed on its line (YAML read on to line {problem.line + 1}, "
            f"column {problem.column + 1}, and found {found} where it expected ',' or '{closer}'): add the '{closer}'"
        )
    where = f"column {opened.column + 1}" if problem.line == opened.line else f"line {opened.line + 1}"
    other = "}" if closer == "]" else "]"
    if got == f"'{other}'":
        advice = f"the '{bracket}' opened at {where} is closed with '{other}': write '{closer}'"
    else:
        advice = (
            f"in the '{bracket}' opened at {where}: a ',' or '{closer}' missing before it, "
            "or a ': ' in a value that needs quotes?"
        )
    return problem, f"expected ',' or '{closer}' here, but found {found} ({advice})"


def _char_at(mark: yaml.Mark) -> str:
    buffer = getattr(mark, "buffer", None)
    return buffer[mark.pointer] if isinstance(buffer, str) and mark.pointer < len(buffer) else ""


def _carried_on(opened: yaml.Mark) -> bool:
    """Whether the line of an opening '[' or '{' ends so that the collection goes on to the next line
    (with the opening itself or a ','), as a collection written over several lines does."""
    buffer = getattr(opened, "buffer", None)
    if not isinstance(buffer, str):
        return True  # no text to look at: the problem's own place
    end = buffer.find("\n", opened.pointer)
    rest = buffer[opened.pointer : end if end >= 0 else len(buffer)]
    rest = re.sub(r"\s#.*", "", rest).rstrip()  # a comment (a '#' after a space) is not part of it
    return rest.endswith((",", "[", "{"))


def _yaml_hint(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's message, with what a person should do when it is about indentation, tabs or documents."""
    problem = str(exc.problem or exc.context)
    if problem.startswith("expected <block end>"):
        found = problem.rpartition("but found ")[2]
        if found in ("']'", "'}'"):
            opening = "[" if found == "']'" else "{"
            problem = f"a {found} that closes no '{opening}': remove it"
        elif not _starts_its_line(exc.problem_mark):
            problem = (
                f"{_TOKENS.get(found, found)} after a complete value on the same line: remove it, or put the "
                "whole value in quotes"
            )
        else:
            problem = (
                "bad indentation: this line does not line up with the lines above it; the keys of one "
                "mapping, and the '-' items of one list, must start in the same column"
            )
    elif "'\\t'" in problem:
        problem = f"{problem}: {_tab_advice(exc.problem_mark)}"
    elif problem == "mapping values are not allowed here":
        problem = f"{problem} (a key indented further than the one above it, or a ': ' in a value that needs quotes)"
    elif problem == "but found another document":
        problem = (
            "a second YAML document starts here ('---'): a spec file holds one document; "
            "put each spec in its own file, or delete this line and what follows"
        )
    return problem


def _starts_its_line(mark: yaml.Mark | None) -> bool:
    """Whether only spaces come before ``mark`` on its line (True when that cannot be told)."""
    buffer = getattr(mark, "buffer", None)
    if mark is None or not isinstance(buffer, str):
        return True
    start = buffer.rfind("\n", 0, mark.pointer) + 1
    return not buffer[start : mark.pointer].strip(" \t")


def read_tree(path: Path, name: str) -> MappingNode:
    """One file's YAML as a checked node tree, merge keys resolved; raises SpecError naming the file and line.

    ``name`` is how messages call the file (the loader shortens paths relative to the working directory).
    """
    text = _read_text(path, name)
    if path.suffix.lower() == ".json":
        text = json_tabs_as_spaces(text)
    node, aliases = _compose(text, name)
    if node is None:
        raise SpecError(
            [Problem(Location(name), "", "the file is empty; a spec needs at least name, growth_rate and blocks")]
        )
    if not isinstance(node, MappingNode):
        kind = "a list" if isinstance(node, SequenceNode) else "a single value"
        raise SpecError(
            [node_problem(node, f"the top level must be a mapping (name: ..., growth_rate: ...), not {kind}")]
        )
    made_by = _output_of(node)
    if made_by is not None:  # before the checker: an IR holds thousands of values, over its budget
        message = (
            f"this is what {made_by} writes from a spec, not a spec: give the spec it was made from "
            "(a .yaml file or a preset name)"
        )
        raise SpecError([node_problem(node, message)])
    checker = _Checker(node, aliases)
    tree = checker.mapping(node, (), 0)
    if checker.problems:
        raise SpecError(dict.fromkeys(checker.problems))  # an alias reports a problem once, not per use
    return tree


_JSON_STRING_OR_TAB = re.compile(r'"(?:[^"\\\n]|\\.)*"|\t')


def json_tabs_as_spaces(text: str) -> str:
    """A JSON file's text with each tab outside its strings read as a space.

    Specs are read as YAML, of which JSON is nearly a subset; tabs are the exception: JSON takes
    them as whitespace anywhere between tokens (``json.dump(d, f, indent="\t")``), YAML refuses
    them in indentation. One space per tab keeps every line and column of the file, and a tab
    inside a string (which JSON does not allow unescaped) is left for the string's own check.
    """
    return _JSON_STRING_OR_TAB.sub(lambda m: " " if m.group() == "\t" else m.group(), text)


_OUTPUT_KEYS = frozenset({"passes", "params", "macs", "flops"})
"""The top-level keys of the JSON that ``build --to json`` and ``summary --format json`` write
(the IR's totals), none of which a spec has."""


def _output_of(node: MappingNode) -> str | None:
    """The command whose JSON output ``node`` is, fed back as a spec by mistake; None for anything else."""
    keys = {key.value for key, _ in node.value if isinstance(key, ScalarNode)}
    if not _OUTPUT_KEYS.issubset(keys):
        return None
    return "`densenet-spec build --to json`" if "layers" in keys else "`densenet-spec summary --format json`"


TAG = "tag:yaml.org,2002:"
_TAGS_OF: dict[type[Node], frozenset[str]] = {
    ScalarNode: frozenset(TAG + t for t in ("null", "bool", "int", "float", "str", "binary", "timestamp")),
    SequenceNode: frozenset(TAG + t for t in ("seq", "omap", "pairs")),
    MappingNode: frozenset(TAG + t for t in ("map", "set")),
}
_MERGE = TAG + "merge"
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

    def __init__(self, root: Node, aliases: Aliases | None = None) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.spent = 0
        self.open: set[int] = set()
        self.aliases = aliases or {}
        self.via: list[tuple[str, Location]] = []  # the aliases being expanded, outermost first

    def _enter(self, parent: Node, index: int, key: bool = False) -> bool:
        """Note the alias that fills ``parent``'s place ``index``, if one does; call _leave after."""
        alias = self.aliases.get((id(parent), index, key))
        if alias is not None:
            self.via.append(alias)
        return alias is not None

    def _leave(self, entered: bool) -> None:
        if entered:
            self.via.pop()

    def _spend(self, node: Node, depth: int) -> None:
        self.spent += 1
        if depth > MAX_DEPTH:
            message = f"nested more than {MAX_DEPTH} levels deep here; a spec is a small mapping"
            raise SpecError([node_problem(node, message)])
        if self.spent > MAX_NODES:
            raise SpecError([self._too_many(node)])
        if id(node) in self.open:
            message = "this node holds an alias to itself (`*name` inside `&name`); a spec is a tree"
            raise SpecError([node_problem(node, message)])

    def _too_many(self, node: Node) -> Problem:
        """The budget is spent: located at the alias written in the document that is being expanded
        (the outermost), as the anchored node's own place is where a small value was defined."""
        where, alias = location(node), ""
        if self.via:
            anchor, where = self.via[0]
            alias = f", in what the alias *{anchor} repeats"
        message = (
            f"the document holds more than {MAX_NODES:,} values by here{alias} (counting what YAML aliases "
            "and merge keys repeat); a spec is a small mapping"
        )
        return Problem(where, "", message)

    def node(self, node: Node, path: FieldPath, depth: int) -> Node:
        """The checked copy of ``node`` (at ``path``, ``depth`` levels down)."""
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        self._spend(node, depth)
        if not self._tag_fits(node, path):
            return node
        if isinstance(node, SequenceNode):
            self.open.add(id(node))
            items = []
            for i, item in enumerate(node.value):
                entered = self._enter(node, i)
                items.append(self.node(item, (*path, i), depth + 1))
                self._leave(entered)
            self.open.discard(id(node))
            return SequenceNode(TAG + "seq", items, node.start_mark, node.end_mark, node.flow_style)
        assert isinstance(node, ScalarNode)
        self._scalar(node, path)
        return node

    def _tag_fits(self, node: Node, path: FieldPath) -> bool:
        if node.tag in _TAGS_OF[type(node)]:
            return True
        tag = node.tag.replace(TAG, "!!")
        if node.tag == _MERGE:
            message = "'<<' is YAML's merge key, a key only (`<<: *defaults`); quote it ('<<') for the text"
            self.problems.append(node_problem(node, message, format_path(path)))
        elif node.tag in _SAFE_TAGS:
            self.problems.append(node_problem(node, f"the YAML tag '{tag}' does not fit this value", format_path(path)))
        else:
            message = f"the YAML tag '{tag}' is not allowed: a spec holds plain data only"
            self.problems.append(node_problem(node, message, format_path(path)))
        return False

    def _scalar(self, node: ScalarNode, path: FieldPath) -> None:
        """Refuse what would break later: huge integers, control characters, values the tag cannot read."""
        field = format_path(path)
        text = node.value
        if node.tag == TAG + "int" and len(text) > MAX_INT_DIGITS:
            message = f"an integer of {len(text):,} digits is far too large; at most {MAX_INT_DIGITS} are read"
            self.problems.append(node_problem(node, message, field))
            return
        bad = NON_PRINTABLE.search(text)
        if bad:
            message = f"{describe_char(bad.group())} in the text; write printable characters only"
            self.problems.append(node_problem(node, message, field))
            return
        try:
            construct(node)
        except Exception:  # PyYAML raises ValueError, KeyError, ... for `!!int abc`, `!!bool maybe`
            tag = node.tag.replace(TAG, "!!")
            self.problems.append(node_problem(node, f"{text[:40]!r} is not a valid {tag} value", field))

    def mapping(self, node: MappingNode, path: FieldPath, depth: int) -> MappingNode:
        """The checked copy of a mapping, its merge keys resolved."""
        self._spend(node, depth)
        if not self._tag_fits(node, path):
            return MappingNode(TAG + "map", [], node.start_mark, node.end_mark, node.flow_style)
        self.open.add(id(node))
        own: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        seen: dict[str, Node] = {}
        for i, (key, value) in enumerate(node.value):
            if key.tag == _MERGE and isinstance(key, ScalarNode):
                entered = self._enter(node, i)
                merged.extend(self._merged(value, path, depth))
                self._leave(entered)
                continue
            entered = self._enter(node, i, key=True)
            key_ok = self._key_ok(key, seen, path, depth)
            self._leave(entered)
            if key_ok:
                entered = self._enter(node, i)
                own.append((key, self.node(value, (*path, key.value), depth + 1)))
                self._leave(entered)
        self.open.discard(id(node))
        entries = own
        for key, value in merged:
            if key.value not in seen:
                seen[key.value] = key
                entries.append((key, value))
        return MappingNode(TAG + "map", entries, node.start_mark, node.end_mark, node.flow_style)

    def _key_ok(self, key: Node, seen: dict[str, Node], path: FieldPath, depth: int) -> bool:
        """Whether ``key`` is a plain, printable string not written before in its mapping."""
        self._spend(key, depth + 1)
        field = format_path(path)
        if not (isinstance(key, ScalarNode) and key.tag == TAG + "str"):
            self.problems.append(node_problem(key, "keys must be plain strings", field))
            return False
        bad = NON_PRINTABLE.search(key.value)
        if bad:
            self.problems.append(node_problem(key, f"{describe_char(bad.group())} in a key", field))
            return False
        if key.value in seen:
            first = seen[key.value].start_mark.line + 1
            self.problems.append(
                node_problem(key, f"duplicate key '{key.value}' (first written on line {first})", field)
            )
            return False
        seen[key.value] = key
        return True

    def _merged(self, value: Node, path: FieldPath, depth: int) -> list[tuple[Node, Node]]:
        """The entries a merge key brings in, earlier mappings first; non-mappings are problems."""
        sources = [value]
        if isinstance(value, SequenceNode) and value.tag == TAG + "seq":
            self._spend(value, depth + 1)
            sources = value.value
        entries: list[tuple[Node, Node]] = []
        for j, source in enumerate(sources):
            if isinstance(source, MappingNode):
                entered = source is not value and self._enter(value, j)
                entries.extend(self.mapping(source, path, depth).value)
                self._leave(entered)
            else:
                message = f"{_MERGE_HELP}, not {_kind_of(source)}"
                self.problems.append(node_problem(source, message, format_path((*path, "<<"))))
        return entries


def _kind_of(node: Node) -> str:
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == TAG + "null":
        return "null"
    return f"the single value {node.value!r}"


_SCALAR_CONSTRUCTORS = yaml.SafeLoader.yaml_constructors
_CONSTRUCTOR = yaml.SafeLoader("")


def construct(node: ScalarNode) -> Any:
    """The Python value of a checked scalar, by its tag's constructor (no cache, unlike construct_object)."""
    return _SCALAR_CONSTRUCTORS[node.tag](_CONSTRUCTOR, node)


def text_in_yaml11(node: ScalarNode) -> bool:
    """Whether ``node`` is a plain scalar that YAML 1.1 read as a string and :class:`SpecLoader` does not.

    ``name: 1e5`` was the string '1e5' before the loader read YAML 1.2's floats; a text field
    keeps such a value as its text, so that no spec that was valid changes meaning.
    """
    if node.style is not None or node.tag != TAG + "float":
        return False
    resolved: str = _CONSTRUCTOR.resolve(ScalarNode, node.value, (True, False))  # type: ignore[no-untyped-call]
    return resolved == TAG + "str"
