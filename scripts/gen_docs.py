"""Generate docs/ from the code: ``python scripts/gen_docs.py docs`` (or ``make docs``).

A development tool, not part of the installed package.

Every page and diagram under docs/ comes from here, so that the spec reference follows the
schema, the presets page follows the presets, the CLI reference follows the commands, and every
diagram is drawn by the tool itself. ``tests/docs_test.py`` fails when docs/ is out of date.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from densenet_spec import __version__, schema
from densenet_spec.backends.graphviz import render, to_dot
from densenet_spec.compiler import compile_spec
from densenet_spec.errors import SpecError
from densenet_spec.loader import load_spec, preset_names
from densenet_spec.schema import Spec, json_schema
from densenet_spec.summary import format_count, format_gmacs, presets_markdown, summary_markdown

TUTORIAL_SPEC = """\
# A wider DenseNet-121: growth rate 48 instead of 32, and a 100-class head.
name: densenet121-k48-c100
description: DenseNet-121 with k=48 for a 100-class task
extends: densenet121
growth_rate: 48
num_classes: 100
"""

INDEX = """\
# densenet-spec

A compiler for DenseNet-family networks. Write a short YAML spec; densenet-spec validates it,
checks the channel and spatial arithmetic, lowers it to a graph of layers and dense connections,
and emits a runnable `torch.nn.Module`, standalone PyTorch source, an ONNX model, Graphviz
diagrams and a cost summary. Version {version}.

- [Spec reference](spec-reference.md): every field, its type, default and range.
- [Presets](presets.md): the shipped specs with their parameters, MACs and diagrams.
- [Write your own variant](tutorial.md): a new DenseNet in five lines with `extends`.
- [Command line](cli.md): every command and option.
- [Drawing DenseNets](drawing.md): the paper's figures, every diagram option, Mermaid, heat maps.
- [Warnings and `--strict`](strict.md): the valid-but-suspicious specs that `--strict` refuses.
- [Examples](#examples): spec files to copy and start from.

## Install

```bash
git clone <this repository> && cd densenet-spec
make demo        # creates .venv (CPU torch, the package, Graphviz), builds densenet121
make test        # ruff, mypy and every test
```

Or into an environment of your own: `pip install torch` (the CPU or CUDA build you want), then
`pip install .`; for svg/png/pdf diagrams, Graphviz's `dot` (`apt-get install graphviz`).

## Quickstart

```bash
densenet-spec summary densenet121                  # channels, sizes, params, MACs per stage
densenet-spec build densenet121 --to torch         # ./densenet121.py, standalone PyTorch source
densenet-spec build densenet121 --to onnx          # ./densenet121.onnx
densenet-spec build densenet-bc-100-k12 --to svg --detail layers --blocks 1
```

```python
from densenet_spec import build_model
model = build_model("densenet121", memory_efficient=True)   # torchvision's module names
```

A block of DenseNet-BC (k=12, 100 layers), every dense connection drawn:

![densenet-bc-100-k12, block 1](diagrams/densenet-bc-100-k12.block1.svg)

## Examples

Spec files in [`examples/`](examples/), each valid under `--strict`:

{examples}
"""

EXAMPLES = {
    "densenet121-k48-c100.yaml": "the tutorial's variant: densenet121 with k=48 and a 100-class head, by `extends`",
    "ct-densenet121.yaml": "a 3-D DenseNet-121 for 1-channel CT volumes: group norm, leaky ReLU, a dropout head",
}
"""The files under docs/examples/ and what each shows (their text is generated with the pages)."""

TUTORIAL = """\
# Write your own variant

A spec that `extends` another names only what changes. Start from a preset (or from a spec
file of your own, by a path relative to the child):

```yaml
{spec}```

Save it as `densenet121-k48-c100.yaml` and check it:

```console
$ densenet-spec validate densenet121-k48-c100.yaml
densenet121-k48-c100.yaml: ok (densenet121-k48-c100: {params} params, {gmacs} GMACs)
```

Mappings merge key by key (`input: {{size: 160}}` keeps the parent's `channels`) and lists
replace (`blocks: [6, 12, 24]` is three blocks, not seven). Then look at what it costs
(`densenet-spec summary densenet121-k48-c100.yaml --format markdown`; without `--format`, a table
for the terminal):

{summary}
Draw it (`densenet-spec build densenet121-k48-c100.yaml --to svg`):

![densenet121-k48-c100](diagrams/densenet121-k48-c100.blocks.svg)

Build it for training (`densenet-spec build densenet121-k48-c100.yaml --to torch` writes
standalone source; `build_model("densenet121-k48-c100.yaml")` gives the module in process), or
export it (`--to onnx`). When something is wrong, the problems with the spec's fields (unknown
keys, wrong types, values out of range) are reported together, each with its place and a fix;
the channel and size checks (group norm's groups, maps that shrink to nothing) run once the fields
are valid, and YAML that does not parse, or an `extends` parent that cannot be read, stops the
rest. For this `broken.yaml`:

```yaml
{broken}```

```console
$ densenet-spec validate broken.yaml
{messages}
```
"""

MEDICAL_SPEC = """\
# A 3-D DenseNet-121 for CT volumes: MONAI's network, group norm, leaky ReLU, a dropout head.
name: ct-densenet121
description: DenseNet-121 for 1-channel CT volumes, group norm, 2 classes
extends: densenet121-3d
input: {channels: 1, size: [128, 128, 64]}
norm: {kind: group, groups: 8}
activation: {kind: leaky_relu, negative_slope: 0.1}
head: {dropout: 0.2}
"""

TUTORIAL_3D = """
## A 3-D variant, and the rest of the design space

The same five lines reach everything timm and MONAI let you change: the input's rank (1, 2 or 3
numbers in `input.size`), the activation, the norm, the stem (`imagenet`, `cifar`, `deep`), blur
pooling (`anti_alias`), the head's pooling and dropout, and per-block settings. This
`ct-densenet121.yaml` starts from the MONAI-equivalent preset:

```yaml
{spec}```

```console
$ densenet-spec validate ct-densenet121.yaml
ct-densenet121.yaml: ok (ct-densenet121: {params} params, {gmacs} GMACs)
```

{summary}
Train it with `build_model("ct-densenet121.yaml", memory_efficient=True)`: each dense block writes
its layers' outputs into one shared buffer instead of concatenating them, and each layer's
norm-activation outputs are recomputed in the backward pass, which MONAI's DenseNet121 cannot do.
The compiler checks what only 3-D reveals: a group count that does not
divide every width, or an input too small for four stages (it names the smallest that works).
"""

BROKEN_SPEC = """\
name: Tiny Net
extends: densenet121
growth_rat: 24
compression: 1.5
"""


DRAWING = """\
# Drawing DenseNets

`densenet-spec build SPEC --to svg|png|pdf|dot` draws a network as the DenseNet paper does. The
tool computes every position itself and Graphviz only draws them (`neato -n2`; a `--to dot`
file says so in its first line), so a block of 48 layers is as orderly as one of 6.

## The block view (the paper's Figure 2)

`densenet-spec build densenet121 --to svg` writes `densenet121.blocks.svg`: stages left to right,
each dense block a frame holding the dense-connection motif, transitions between, and channels and
sizes under each stage.

![densenet121 blocks](diagrams/densenet121.blocks.svg)

## The layer view (the paper's Figure 1)

`densenet-spec build densenet121 --to svg --detail layers --blocks 3` writes
`densenet121.layers.block3.svg`. A block is one row of layers in execution order, from the layer
that feeds it to the layer it feeds. Each dense connection is an arc from the top of its source to
the top of its target, longer spans higher, coloured by its source: the colours never repeat within
a block (up to 11 sources distinct hues, beyond that stops of a blue-green-orange-red ramp, the
block input first). A box's height grows with the channels the layer reads, the number in it.

![densenet121 block 3](diagrams/densenet121.layers.block3.svg)

Without `--blocks`, every block is a row (`densenet121.layers.svg`), the stem before the first and
the head after the last; the layer that ends a row starts the next again, dashed.

## Options

| option | effect | default |
|---|---|---|
| `--detail blocks\\|layers` | one node per stage, or per layer | `blocks` |
| `--blocks 1,3` | the layer view of these blocks only | all |
| `--labels short\\|full\\|none` | `L3`, `T1` with a legend; module paths; none on layers (captions stay) | `short` |
| `--legend/--no-legend` | the legend under the drawing (beside the title with `--rankdir TB`) | `--legend` |
| `--title TEXT` | the title; `--title ''` for none | name and what is shown |
| `--dpi N` | resolution of `png` output (kept in `.dot`; svg and pdf refuse it) | Graphviz's 96 |
| `--rankdir LR\\|TB` | rows left to right, or top to bottom with arcs to the right | `LR` |

Default file names say what is drawn: `NAME.blocks.svg`, `NAME.layers.svg`,
`NAME.layers.block3.svg`, `NAME.layers.blocks1_3.svg`, and `.tb` before the suffix with `--rankdir TB`.

`--labels full --rankdir TB` (`densenet-spec build densenet121 --to svg --detail layers --blocks 1,2
--labels full --rankdir TB`):

![densenet121 blocks 1 and 2, top to bottom, full labels](diagrams/densenet121.layers.blocks1_2.tb.svg)

`--labels none --no-legend --title "DenseNet (L=40, k=12), block 1"`, for a figure whose caption says the rest:

![densenet-40-k12 block 1 without labels](diagrams/densenet-40-k12.layers.block1.bare.svg)

## Connection strengths (the paper's Figure 5)

`densenet-spec build SPEC --to heatmap --weights CHECKPOINT -o FILE.svg` (or `.png`, `.pdf`,
`.dot`) draws, for each block, the mean absolute weight of each layer's first convolution over the
input channels that come from each earlier source: the block input, then layers 1..l-1, in the
order the layer concatenates them. The last column is the transition after the block, or the
classifier after the last one. Colours are viridis, scaled to each block's largest value (under it);
each cell's tooltip in the SVG holds the number. Here for the initial weights of
densenet-bc-100-k12 (seed 0), which only shows the layout: the initial weights shrink with a
layer's fan-in, which is why later columns are darker. A trained checkpoint shows what the paper
discusses.

![densenet-bc-100-k12 heat map, initial weights](diagrams/densenet-bc-100-k12.heatmap.svg)

## Mermaid

`densenet-spec build SPEC --to mermaid` writes a Mermaid flowchart (`NAME.blocks.mmd`) that GitHub,
GitLab and MkDocs draw inside a Markdown ` ```mermaid ` block, with no build step. The block view
is always available; a layer view (`--detail layers --blocks 1`) is written when it has at most
{max_edges} connections, and refused with a message otherwise (densenet121's whole layer view has
597; Mermaid itself stops at 500). `densenet-spec build densenet121 --to mermaid`:

```mermaid
{mermaid_blocks}```

`densenet-spec build densenet-40-k12 --to mermaid --detail layers --blocks 1 --title ""`:

```mermaid
{mermaid_layers}```
"""


def drawing_page() -> str:
    """The "Drawing DenseNets" page, with the Mermaid charts written by the tool itself."""
    from densenet_spec.backends.mermaid import MAX_EDGES, blocks_flowchart, layers_flowchart

    blocks = blocks_flowchart(compile_spec(load_spec("densenet121")), "short", "LR", None)
    layers = layers_flowchart(compile_spec(load_spec("densenet-40-k12")), [1], "short", "LR", "")
    return DRAWING.format(max_edges=MAX_EDGES, mermaid_blocks=blocks, mermaid_layers=layers)


def _type_of(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"mapping ({prop['$ref'].rsplit('/', 1)[-1]})"
    if "anyOf" in prop or "oneOf" in prop:
        return " or ".join(_type_of(p, defs) for p in prop.get("anyOf", prop.get("oneOf", [])))
    if prop.get("type") == "array":
        items = prop.get("items", {})
        count = f"{prop['minItems']} " if prop.get("minItems") == prop.get("maxItems") and "minItems" in prop else ""
        return f"list of {count}{_type_of(items, defs) if items else 'items'}"
    if "const" in prop:
        return f"'{prop['const']}'"
    return str(prop.get("type", "any"))


def _range_of(prop: dict[str, Any]) -> str:
    parts = []
    for p in [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]:
        if "minimum" in p:
            parts.append(f">= {p['minimum']}")
        if "exclusiveMinimum" in p:
            parts.append(f"> {p['exclusiveMinimum']}")
        if "maximum" in p:
            parts.append(f"<= {p['maximum']}")
        if "exclusiveMaximum" in p:
            parts.append(f"< {p['exclusiveMaximum']}")
        if "pattern" in p:
            parts.append(f"matches `{p['pattern']}`")
    return ", ".join(dict.fromkeys(parts))


COMPUTED_DEFAULTS = {("Spec", "stem"): "with 2 x growth_rate channels"}
"""Words for the part of a default that depends on other fields (the schema can only say null)."""


def _field_rows(
    title: str, schema_: dict[str, Any], defs: dict[str, Any], required: list[str], model: type[BaseModel] | None
) -> list[str]:
    rows = [f"### {title}", "", schema_.get("description", ""), ""]
    rows += ["| field | type | default | range | description |", "|---|---|---|---|---|"]
    for name, prop in schema_["properties"].items():
        if prop.get("type") == "null":  # another stem kind's key, null only: the page says so once
            continue
        default = _default_text(model, name, prop, required)
        kind = _type_of(prop, defs)
        rows.append(f"| `{name}` | {kind} | {default} | {_range_of(prop)} | {prop.get('description', '')} |")
    return [*rows, ""]


def _default_text(model: type[BaseModel] | None, name: str, prop: dict[str, Any], required: list[str]) -> str:
    """A field's default as a spec would write it.

    Taken from the pydantic model rather than the JSON Schema, which has no default for a field
    whose default is built by a factory (``input``, ``stem``) and renders an empty string as nothing.
    """
    if name in required:
        return "required"
    value: Any = prop.get("default", PydanticUndefined)
    if model is not None and name in model.model_fields:
        value = model.model_fields[name].get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "computed"
    note = COMPUTED_DEFAULTS.get((model.__name__ if model else "", name))
    return f"`{_yaml(value)}`" + (f" {note}" if note else "")


def _yaml(value: Any) -> str:
    """``value`` in YAML flow style, as one would write it in a spec (fields left at null omitted)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    return str(value)


def spec_reference() -> str:
    spec_schema = json_schema()
    defs = spec_schema.get("$defs", {})
    lines = [
        "# Spec reference (format v1)",
        "",
        "Generated from the schema (`densenet-spec schema` prints it as JSON Schema). Unknown keys are",
        "errors; integers must be integers; `name`, `growth_rate` and `blocks` are required unless the",
        "spec `extends` another. Stem channels default to 2 x growth_rate. `stem`, `activation` and `norm`",
        "also take a kind's name (`norm: instance` is `{kind: instance}`, in a parent too: a child's",
        "`norm: {eps: 0.001}` keeps the kind; a child's kind name, like any scalar, replaces the parent's",
        "mapping, other keys back at their defaults). A stem takes `null` for another stem kind's key, which is",
        "how a spec that extends one with a deep stem drops `mid_channels` when it changes the kind.",
        "",
        "Where a command (or `load_spec`) takes a spec, a preset's name (`densenet121`) always means the",
        "preset, even if a file or folder of that name is in the working directory; write `./densenet121`",
        "for such a file. Anything else is a path, whatever its suffix (`extends` takes a path only if it",
        "ends in .yaml or .yml).",
        "",
    ]
    lines += _field_rows("Top level", spec_schema, defs, ["name", "growth_rate", "blocks"], Spec)
    for name, sub in defs.items():
        model = getattr(schema, name, None)
        lines += _field_rows(name, sub, defs, sub.get("required", []), model if isinstance(model, type) else None)
    return "\n".join(lines)


STRICT = """\
# Warnings and `--strict`

Some specs are valid but most likely not what their author meant. densenet-spec builds them, and
prints one line per doubt on stderr, `FILE:LINE:COL: field: warning: message`, with exit status 0.
With `--strict` (`validate`, `summary`, `build` and `bench` take it) every warning is an error
instead: the same line without `warning:`, exit status 1, nothing written. Use `--strict` in CI
and in scripts.

| warning | field | why | what to do |
|---|---|---|---|
{rows}

{examples}"""

WARNINGS: list[dict[str, str]] = [
    {
        "title": "a transition keeps a non-integer number of maps",
        "field": "`compression`",
        "why": "theta x m, the maps a transition keeps of its m inputs, is not a whole number; floor(theta x m) "
        "are kept, so the network is not quite the one the compression suggests",
        "fix": "a compression that gives whole numbers (0.5 with an even m), or accept the floor",
        "file": "odd-compression.yaml",
        "example": "name: odd-compression\ngrowth_rate: 12\nblocks: [5, 5]\ncompression: 0.3\n"
        "input: {size: 32}\nstem: cifar\n",
    },
    {
        "title": "input smaller than 64 with the imagenet (or deep) stem",
        "field": "`input.size`",
        "why": "the imagenet stem (conv 7x7/2, max pool 3x3/2) and the deep stem divide the input by 4 before "
        "the first dense block: a 32x32 image reaches it as 8x8",
        "fix": "`stem: cifar` (one conv 3x3/1, full resolution), as the paper's CIFAR networks",
        "file": "cifar-imagenet-stem.yaml",
        "example": "name: cifar-imagenet-stem\ngrowth_rate: 12\nblocks: [16, 16, 16]\ninput: {size: 32}\n"
        "num_classes: 10\n",
    },
]
"""Every warning the compiler gives; an entry with an ``example`` shows the tool's own output for it."""


def strict_page() -> str:
    """The "Warnings and --strict" page, its console examples run through the command line itself."""
    rows = [f"| {w['title']} | {w['field']} | {w['why']} | {w['fix']} |" for w in WARNINGS]
    examples = [_warning_example(w) for w in WARNINGS if "example" in w]
    return STRICT.format(rows="\n".join(rows), examples="\n".join(examples))


def _warning_example(warning: dict[str, str]) -> str:
    """A spec that gets ``warning``, and what validate prints for it with and without --strict."""
    from typer.testing import CliRunner

    from densenet_spec.cli import app

    name, text = warning["file"], warning["example"]
    with tempfile.TemporaryDirectory() as tmp, _chdir(Path(tmp)):
        Path(name).write_text(text)
        relaxed = CliRunner().invoke(app, ["validate", name])
        strict = CliRunner().invoke(app, ["validate", "--strict", name])
    if relaxed.exit_code != 0 or "warning:" not in relaxed.stderr or strict.exit_code != 1:
        raise AssertionError(f"the example of {warning['title']!r} does not get its warning")
    return (
        f"## {warning['title'].capitalize()}\n\n`{name}`:\n\n```yaml\n{text}```\n\n```console\n"
        f"$ densenet-spec validate {name}\n{relaxed.stderr}{relaxed.stdout}"
        f"$ densenet-spec validate --strict {name}\n{strict.stderr}$ echo $?\n1\n```\n"
    )


def presets_page() -> str:
    lines = [
        "# Presets",
        "",
        "Loadable by name wherever a spec file is accepted. MACs count the convolutions and the",
        "linear layer at each preset's input size (FLOPs = 2 x MACs).",
        "",
        presets_markdown([compile_spec(load_spec(name)) for name in preset_names()]),
        "",
    ]
    for name in preset_names():
        lines += [f"## {name}", "", f"![{name}](diagrams/{name}.blocks.svg)", ""]
    return "\n".join(lines)


def cli_reference() -> str:
    import typer

    try:
        from typer._click import Context  # typer >= 0.22 carries its own click
    except ImportError:  # pragma: no cover - older typer
        from click import Context  # type: ignore[no-redef,import-not-found,unused-ignore]

    from densenet_spec.cli import app

    group = typer.main.get_command(app)
    root = Context(group, info_name="densenet-spec", terminal_width=100, max_content_width=100)
    sections = ["# Command line", "", "```", group.get_help(root), "```", ""]
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        ctx = Context(command, info_name=name, parent=root, terminal_width=100, max_content_width=100)
        sections += [f"## {name}", "", "```", command.get_help(ctx), "```", ""]
    return "\n".join(sections)


def pages() -> dict[str, str]:
    """Every generated text file under docs/, by relative path."""
    child = compile_spec(_tutorial_spec())
    summary = summary_markdown(child).split("\n", 4)[4]  # without the title and description
    tutorial = (
        TUTORIAL.format(
            spec=TUTORIAL_SPEC,
            params=format_count(child.params),
            gmacs=format_gmacs(child.macs),
            summary=summary,
            broken=BROKEN_SPEC,
            messages=_broken_messages(),
        )
        + _tutorial_3d()
    )
    out = {
        "index.md": INDEX.format(version=__version__, examples=_example_list()),
        "spec-reference.md": spec_reference(),
        "presets.md": presets_page(),
        "tutorial.md": tutorial,
        "cli.md": cli_reference(),
        "drawing.md": drawing_page(),
        "strict.md": strict_page(),
        "examples/densenet121-k48-c100.yaml": TUTORIAL_SPEC,
        "examples/ct-densenet121.yaml": MEDICAL_SPEC,
    }
    assert {f"examples/{name}" for name in EXAMPLES} == {path for path in out if path.startswith("examples/")}
    for name, dot in diagrams().items():
        out[f"diagrams/{name}.dot"] = dot
    return out


def _tutorial_3d() -> str:
    ir = compile_spec(_load_text(MEDICAL_SPEC, "ct-densenet121.yaml"))
    summary = summary_markdown(ir).split("\n", 4)[4]
    params, gmacs = format_count(ir.params), format_gmacs(ir.macs)
    return TUTORIAL_3D.format(spec=MEDICAL_SPEC, params=params, gmacs=gmacs, summary=summary)


def _example_list() -> str:
    return "\n".join(f"- [{name}](examples/{name}): {what}" for name, what in EXAMPLES.items())


def _load_text(text: str, name: str) -> Spec:
    """Load a spec written in these docs, as a user would from a file of that name."""
    with tempfile.TemporaryDirectory() as tmp, _chdir(Path(tmp)):
        Path(name).write_text(text)
        return load_spec(name)


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:  # contextlib.chdir is Python 3.11+
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@functools.cache
def _tutorial_spec() -> Spec:
    return _load_text(TUTORIAL_SPEC, "densenet121-k48-c100.yaml")


def _broken_messages() -> str:
    try:
        compile_spec(_load_text(BROKEN_SPEC, "broken.yaml"))
    except SpecError as exc:
        return "\n".join(str(p) for p in exc.problems)
    raise AssertionError("the broken example in the tutorial is valid")


def diagrams() -> dict[str, str]:
    """DOT of every diagram in docs/, by name (rendered to SVG beside it)."""
    out = {f"{name}.blocks": to_dot(compile_spec(load_spec(name))) for name in preset_names()}
    out["densenet-bc-100-k12.block1"] = to_dot(
        compile_spec(load_spec("densenet-bc-100-k12")), detail="layers", blocks=[1]
    )
    out["densenet121-k48-c100.blocks"] = to_dot(compile_spec(_tutorial_spec()))
    d121 = compile_spec(load_spec("densenet121"))
    out["densenet121.layers.block3"] = to_dot(d121, detail="layers", blocks=[3])
    out["densenet121.layers.blocks1_2.tb"] = to_dot(d121, detail="layers", blocks=[1, 2], labels="full", rankdir="TB")
    bare = {"labels": "none", "legend": False, "title": "DenseNet (L=40, k=12), block 1"}
    out["densenet-40-k12.layers.block1.bare"] = to_dot(
        compile_spec(load_spec("densenet-40-k12")), detail="layers", blocks=[1], **bare
    )
    out["densenet-bc-100-k12.heatmap"] = _heatmap_dot()
    return out


def _heatmap_dot() -> str:
    """The heat map of densenet-bc-100-k12's initial weights (seed 0): deterministic, no checkpoint."""
    from densenet_spec import build_model
    from densenet_spec.backends.heatmap import to_dot as heatmap_dot

    ir = compile_spec(load_spec("densenet-bc-100-k12"))
    return heatmap_dot(ir, build_model(ir, seed=0).state_dict())


def generate(root: Path) -> list[Path]:
    """Write docs/ under ``root``; returns the files written."""
    written = []
    for relative, text in pages().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") else text + "\n")
        written.append(path)
        if relative.endswith(".dot"):
            svg = path.with_suffix(".svg")
            svg.write_bytes(render(text, "svg"))
            written.append(svg)
    return written


def main(argv: list[str]) -> None:
    root = Path(argv[0] if argv else "docs")
    if (root / "diagrams").exists():
        shutil.rmtree(root / "diagrams")
    files = generate(root)
    print(f"wrote {len(files)} files under {root}/")


if __name__ == "__main__":
    main(sys.argv[1:])
