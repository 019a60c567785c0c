"""The drawings as Graphviz lays them out (``neato -n2 -Tjson``): one edge per connection, no
overlaps, no covered labels, bounded size, distinct colours per source; the heat map's numbers;
Mermaid; the drawing options on the command line."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from densenet_spec import as_ir, build_model
from densenet_spec.backends.colours import source_colours
from densenet_spec.backends.graphviz import to_dot
from densenet_spec.backends.graphviz_layout import bezier_points
from densenet_spec.backends.heatmap import strengths
from densenet_spec.backends.mermaid import MAX_EDGES, ViewTooLargeError, layers_flowchart
from densenet_spec.cli import app
from densenet_spec.ir import IR

HAS_NEATO = shutil.which("neato") is not None
needs_neato = pytest.mark.skipif(not HAS_NEATO, reason="needs Graphviz's neato (apt-get install graphviz)")
RUNNER = CliRunner()
Rect = tuple[float, float, float, float]

# A block of n layers: (spec, block number). The 48-layer block is a one-block CIFAR network.
BLOCKS = {
    6: ("densenet121", 1),
    16: ("densenet-bc-100-k12", 1),
    24: ("densenet121", 3),
    48: ("name: wide48\ngrowth_rate: 12\nblocks: [48]\nstem: {kind: cifar}\ninput: {size: 32}\nnum_classes: 10\n", 1),
}


def _ir(spec: str, tmp_path: Path) -> IR:
    if "\n" in spec:
        path = tmp_path / "spec.yaml"
        path.write_text(spec)
        return as_ir(path)
    return as_ir(spec)


def _layout(dot: str) -> dict[str, Any]:
    out = subprocess.run(["neato", "-n2", "-Tjson"], input=dot, capture_output=True, text=True, check=True)
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def _nodes(layout: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in layout.get("objects", []) if "pos" in o and not o["name"].startswith("cluster_")]


def _box(node: dict[str, Any]) -> Rect:
    x, y = map(float, node["pos"].split(","))
    w, h = float(node["width"]) * 72, float(node["height"]) * 72
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2


def _overlap(a: Rect, b: Rect, slack: float = 0.5) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


def _texts(obj: dict[str, Any]) -> list[Rect]:
    """The bounding box of each text an object draws (node or edge label)."""
    out = []
    size = 14.0
    for op in obj.get("_ldraw_", []):
        if op["op"] == "F":
            size = op["size"]
        elif op["op"] == "T":
            x, y = op["pt"]
            w = op["width"]
            left = {"c": x - w / 2, "l": x, "r": x - w}[op["align"]]
            out.append((left, y - 0.25 * size, left + w, y + 0.8 * size))
    return out


def _check_geometry(layout: dict[str, Any]) -> None:
    nodes = _nodes(layout)
    boxes = {n["name"]: _box(n) for n in nodes}
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not _overlap(boxes[a], boxes[b]), f"{a} and {b} overlap"
    labelled = [(n["name"], t) for n in nodes for t in _texts(n)]
    labelled += [(f"edge {e.get('id')}", t) for e in layout.get("edges", []) for t in _texts(e)]
    for owner, text in labelled:
        for name, box in boxes.items():
            if name != owner:
                assert not _overlap(text, box), f"the label of {owner} is covered by {name}"


def _bound(layout: dict[str, Any]) -> tuple[float, float]:
    x0, y0, x1, y1 = map(float, layout["bb"].split(","))
    return x1 - x0, y1 - y0


@needs_neato
@pytest.mark.parametrize("layers", sorted(BLOCKS))
def test_layer_view_of_a_block_is_readable(layers: int, tmp_path: Path) -> None:
    spec, number = BLOCKS[layers]
    ir = _ir(spec, tmp_path)
    members = ir.blocks()[number - 1]
    assert len(members) == layers
    layout = _layout(to_dot(ir, detail="layers", blocks=[number]))
    edges = layout["edges"]
    drawn = [e["id"] for e in edges if " -> " in e.get("id", "")]
    # every dense connection of the block (into its layers and into the layer it feeds) is one edge
    output = next(iter(ir.graph.successors(members[-1].name)))
    expected = {f"{a} -> {b}" for m in [*members, ir.layer(output)] for a, b in ir.graph.in_edges(m.name)}
    assert sorted(drawn) == sorted(expected)
    assert len(drawn) == (layers + 1) * (layers + 2) // 2
    _check_geometry(layout)
    # a stated bound at the default scale: at most 45 pt a layer (+ 2 ends + margins) wide, and
    # at most 0.35 x that + 260 pt high (the arcs of the longest span, caption, legend, title)
    width, height = _bound(layout)
    assert width <= 45 * (layers + 2) + 120, width
    assert height <= 0.35 * width + 260, height
    # sources in a block have distinct colours, and each source one colour
    colour_of: dict[str, set[str]] = {}
    for e in edges:
        if " -> " in e.get("id", ""):
            colour_of.setdefault(e["id"].split(" -> ")[0], set()).add(e["color"])
    assert all(len(c) == 1 for c in colour_of.values())
    assert len({next(iter(c)) for c in colour_of.values()}) == len(colour_of) == layers + 1


ONE_LAYER_BLOCKS = "name: one\ngrowth_rate: 12\nblocks: [1, 1, 1]\nstem: cifar\ninput: {size: 32}\n"
BLUR_ALL = "name: b\nextends: densenetblur121d\nanti_alias: all\n"
SMALL_BLOCKS = "name: small\ngrowth_rate: 32\nblocks: [6, 2, 1]\n"

# (spec, blocks, options): every arc, chain edge and row-to-row connector keeps out of every box and
# caption but its own two ends. Full labels top to bottom make boxes as wide as their text
# (transition1 narrower than denselayer6); a one-layer row is narrower than its caption.
CLEAR_OF_BOXES = {
    "block3": ("densenet121", [3], {}),
    "tb-full": ("densenet121", [1, 2], {"labels": "full", "rankdir": "TB"}),
    "tb-short": ("densenet121", [1, 2], {"rankdir": "TB"}),
    "lr-full": ("densenet121", [1, 2], {"labels": "full"}),
    "one-layer-rows": (ONE_LAYER_BLOCKS, None, {}),
    "one-layer-rows-tb-full": (ONE_LAYER_BLOCKS, None, {"labels": "full", "rankdir": "TB"}),
    "blur-all": (BLUR_ALL, None, {}),
    "wide-input-tb-full": (SMALL_BLOCKS, [2, 3], {"labels": "full", "rankdir": "TB"}),
}


def _crossings(layout: dict[str, Any]) -> list[str]:
    """Each edge that passes through the inside of a node (box, caption, legend) other than its ends."""
    boxes = {n["name"]: _box(n) for n in _nodes(layout)}
    index = {n["_gvid"]: n["name"] for n in layout["objects"] if "_gvid" in n}
    found = []
    for edge in layout["edges"]:
        spline = [tuple(map(float, p.split(","))) for p in edge["pos"].split() if not p.startswith("e,")]
        ends = {index[edge["tail"]], index[edge["head"]]}
        crossed = {
            name
            for x, y in bezier_points(spline, 12)  # type: ignore[arg-type]
            for name, (x0, y0, x1, y1) in boxes.items()
            if name not in ends and x0 + 1 < x < x1 - 1 and y0 + 1 < y < y1 - 1
        }
        found += [f"{edge.get('id')} crosses {name}" for name in sorted(crossed)]
    return found


@needs_neato
@pytest.mark.parametrize("case", sorted(CLEAR_OF_BOXES))
def test_arcs_stay_out_of_the_boxes_they_pass(case: str, tmp_path: Path) -> None:
    spec, blocks, options = CLEAR_OF_BOXES[case]
    layout = _layout(to_dot(_ir(spec, tmp_path), detail="layers", blocks=blocks, **options))
    assert _crossings(layout) == []


@needs_neato
@pytest.mark.parametrize("spec", ["densenet121", "densenet264", "densenet-bc-100-k12"])
def test_block_view_is_readable(spec: str) -> None:
    layout = _layout(to_dot(as_ir(spec)))
    _check_geometry(layout)
    width, height = _bound(layout)
    assert width <= 1600 and height <= 320, (width, height)
    clusters = [o for o in layout["objects"] if o["name"].startswith("cluster_")]
    assert len(clusters) == len(as_ir(spec).blocks())


def test_block_view_motif_has_as_many_layers_as_a_small_block(tmp_path: Path) -> None:
    # the motif shows three layers after the block's input; a block of fewer shows only those, with
    # every connection among them, and is captioned "1 layer", not "1 layers"
    dot = to_dot(_ir(SMALL_BLOCKS, tmp_path))
    motif = {b: len(re.findall(rf'^\t"denseblock{b}~\d" \[', dot, flags=re.M)) for b in (1, 2, 3)}
    assert motif == {1: 4, 2: 3, 3: 2}
    arcs = {b: len(re.findall(rf'^\t"denseblock{b}~\d" -> "denseblock{b}~', dot, flags=re.M)) for b in (1, 2, 3)}
    assert arcs == {1: 6, 2: 3, 3: 1}
    assert "B3\\n1 layer, k=32\\n" in dot and "B2\\n2 layers, k=32" in dot and "1 layers" not in dot


def test_ranges_of_one_collapse_to_one_name(tmp_path: Path) -> None:
    one = _ir("name: one\ngrowth_rate: 32\nblocks: [1]\n", tmp_path)
    blocks = to_dot(one)
    assert "B1..B1" not in blocks and "denseblock1..1" not in blocks
    assert '<B>B1</B></TD><TD ALIGN="LEFT">dense block: features.denseblock1<' in blocks
    two = to_dot(_ir("name: two\ngrowth_rate: 32\nblocks: [2, 1]\n", tmp_path))
    assert "T1..T1" not in two and "transition: features.transition1<" in two
    layers = to_dot(_ir(SMALL_BLOCKS, tmp_path), detail="layers", blocks=[3])
    assert "L1..L1" not in layers and "denselayer1..1" not in layers
    assert '<B>L1</B></TD><TD ALIGN="LEFT">features.denseblock3.denselayer1<' in layers
    assert "denseblock3: 1 layer, k=32" in layers


@needs_neato
@pytest.mark.parametrize("options", [{}, {"labels": "full"}, {"rankdir": "TB"}])
def test_block_view_of_small_blocks_is_readable(options: dict[str, Any], tmp_path: Path) -> None:
    ir = _ir(SMALL_BLOCKS, tmp_path)
    layout = _layout(to_dot(ir, **options))
    _check_geometry(layout)
    assert _crossings(layout) == []


@needs_neato
@pytest.mark.parametrize("options", [{"rankdir": "TB"}, {"labels": "full"}, {"labels": "none", "legend": False}])
def test_options_keep_the_layer_view_readable(options: dict[str, Any]) -> None:
    _check_geometry(_layout(to_dot(as_ir("densenet121"), detail="layers", blocks=[1, 2], **options)))
    _check_geometry(_layout(to_dot(as_ir("densenet121"), **options)))


@needs_neato
def test_whole_network_layer_view_continues_each_row() -> None:
    ir = as_ir("densenet-40-k12")
    layout = _layout(to_dot(ir, detail="layers"))
    ids = [e.get("id", "") for e in layout["edges"]]
    assert sorted(i for i in ids if " -> " in i) == sorted(f"{a} -> {b}" for a, b in ir.graph.edges)
    assert sum(i.startswith("continues:") for i in ids) == 2
    _check_geometry(layout)


def test_source_colours_never_repeat() -> None:
    for count in (1, 7, 11, 12, 25, 49, 65, 200):
        assert len(set(source_colours(count))) == count


NODE = re.compile(r'^\t"([^"]+)" \[pos="[^"]+" width="([^"]+)" height="([^"]+)" label="([^"]*)"')


def _layer_boxes(dot: str, across: str = "height") -> list[tuple[str, float, str]]:
    """``(IR layer, extent across its row in points, label)`` of each layer's box in a layer view."""
    out = []
    for line in dot.splitlines():
        if (m := NODE.match(line)) and not m.group(1).startswith(("caption~", "legend")):
            extent = float(m.group(3) if across == "height" else m.group(2)) * 72
            out.append((m.group(1).split("~")[0], extent, m.group(4)))
    return out


@pytest.mark.parametrize(
    ("spec", "blocks", "options"),
    [
        ("densenet121", None, {}),
        ("densenet121", [3], {}),
        ("densenetblur121d", None, {}),
        ("densenet-bc-100-k12", [2, 3], {}),
        ("densenet121", None, {"labels": "full", "rankdir": "TB"}),
    ],
)
def test_every_number_in_the_layer_view_is_what_the_layer_reads(
    spec: str, blocks: list[int] | None, options: dict[str, str]
) -> None:
    # the legend says a box's number is the channels its layer reads, and its size across the row
    # grows with them: so for the stem (conv0 reads 3), a block's input (T2 reads 512 with --blocks
    # 3) and a transition drawn twice (ending one row, dashed starting the next), not their output;
    # with full labels top to bottom too, where the text makes the boxes wider
    ir = as_ir(spec)
    dot = to_dot(ir, detail="layers", blocks=blocks, **options)
    side = "width" if options.get("rankdir") == "TB" else "height"
    assert f"channels the layer reads (box {side} grows with them)" in dot
    drawn = _layer_boxes(dot, side)
    assert drawn
    for name, _, label in drawn:
        assert label.split("\\n")[-1] == str(ir.layer(name).in_channels), (name, label)
    by_channels: dict[int, set[float]] = {}
    for name, extent, _ in drawn:
        by_channels.setdefault(ir.layer(name).in_channels, set()).add(extent)
    assert all(len(extents) == 1 for extents in by_channels.values())  # same channels, same size
    extents = [min(by_channels[c]) for c in sorted(by_channels)]
    assert extents == sorted(extents)  # more channels read, never a smaller box


def test_a_transition_drawn_twice_reads_the_same_both_times() -> None:
    dot = to_dot(as_ir("densenet121"), detail="layers")
    labels = [label for name, _, label in _layer_boxes(dot) if name == "features.transition1"]
    assert labels == ["T1\\n256", "T1\\n256"]
    assert 'label="conv0\\n3"' in dot


def test_labels_legend_and_title() -> None:
    ir = as_ir("densenet-bc-100-k12")
    short = to_dot(ir, detail="layers", blocks=[1])
    assert 'label="L3\\n48"' in short and "features.denseblock1.denselayer1..16" in short
    full = to_dot(ir, detail="layers", blocks=[1], labels="full", legend=False, title="Figure 1")
    assert 'label="features.denseblock1.denselayer3\\n48"' in full and 'label="Figure 1"' in full
    assert "legend" not in full
    none = to_dot(ir, detail="layers", blocks=[1], labels="none", title="")
    assert 'label="L3' not in none and "labelloc" not in none
    assert 'dpi="200"' in to_dot(ir, dpi=200)


# ----------------------------------------------------------------------------- heat map

TINY = "name: tiny\ngrowth_rate: 4\nblocks: [3, 2]\nstem: {kind: cifar, channels: 6}\ninput: {size: 8}\nbottleneck_width: 2\nnum_classes: 3\n"  # noqa: E501


def test_heatmap_numbers_match_a_hand_computation(tmp_path: Path) -> None:
    ir = _ir(TINY, tmp_path)
    state = build_model(ir, seed=0).state_dict()
    generator = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v.shape, generator=generator) if v.is_floating_point() else v for k, v in state.items()}
    found = strengths(ir, state)

    def mean_abs(key: str, lo: int, hi: int) -> float:
        return float(state[key][:, lo:hi].abs().double().mean())

    # block 1: input 6 channels (the stem), then 4 per layer; transition1 keeps floor(0.5 * 18) = 9
    # block 2: input 9 channels, then 4 per layer; the classifier reads 9 + 8 = 17 (after norm5, pool)
    for block, (c0, layers, last) in enumerate([(6, 3, "features.transition1.conv"), (9, 2, "classifier")]):
        expected = []
        for layer in range(1, layers + 2):
            key = f"features.denseblock{block + 1}.denselayer{layer}.conv1" if layer <= layers else last
            cuts = [0, c0, *(c0 + 4 * s for s in range(1, layer))]
            row = [mean_abs(f"{key}.weight", a, b) for a, b in itertools.pairwise(cuts)]
            expected.append(row + [None] * (layers + 1 - len(row)))
        got = found[block]
        assert got.targets[-1] == last.removesuffix(".conv")
        for row_got, row_want in zip(got.values, expected, strict=True):
            assert [v is None for v in row_got] == [v is None for v in row_want]
            numbers = [v for v in row_got if v is not None]
            assert numbers == pytest.approx([v for v in row_want if v is not None], rel=1e-9)


@needs_neato
def test_heatmap_cli_needs_weights_and_picks_the_format(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["build", "densenet-40-k12", "--to", "heatmap", "-o", str(tmp_path / "h.svg")])
    assert result.exit_code == 2 and "--weights" in result.stderr
    weights = tmp_path / "w.pt"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    torch.save(build_model(spec, seed=0).state_dict(), weights)
    for suffix, magic in (("png", b"\x89PNG"), ("svg", b"<?xml"), ("dot", b"digraph")):
        out = tmp_path / f"h.{suffix}"
        result = RUNNER.invoke(app, ["build", str(spec), "--to", "heatmap", "--weights", str(weights), "-o", str(out)])
        assert result.exit_code == 0, result.stderr
        assert out.read_bytes().startswith(magic)
    bad = RUNNER.invoke(app, ["build", str(spec), "--to", "heatmap", "--weights", str(weights), "-o", "h.gif"])
    assert bad.exit_code == 2 and ".svg" in bad.stderr


# ----------------------------------------------------------------------------- mermaid and the CLI


def test_mermaid_block_view_and_small_layer_view() -> None:
    result = RUNNER.invoke(app, ["build", "densenet121", "--to", "mermaid", "-o", "-"])
    assert result.exit_code == 0
    text = result.stdout
    assert "flowchart LR" in text and 'title: "densenet121: 7,978,856 params, 2.834 GMACs"' in text
    assert text.count(" --> ") == 10  # input, stem, 4 blocks, 3 transitions, head, prediction
    layers = RUNNER.invoke(
        app, ["build", "densenet121", "--to", "mermaid", "--detail", "layers", "--blocks", "1", "-o", "-"]
    )
    ir = as_ir("densenet121")
    members = ir.blocks()[0]
    arrows = re.findall(r"^    (\w+) --> (\w+)$", layers.stdout, flags=re.M)
    # 6 layers read 1..6 sources (21 connections), transition1 reads 7
    assert len(arrows) == 21 + 7 == sum(len(ir.inputs(m.name)) for m in members) + 7
    assert 'subgraph denseblock1["denseblock1"]' in layers.stdout
    assert layers.stdout.count("linkStyle") == 7  # one colour per source


def test_mermaid_refuses_a_huge_layer_view(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["build", "densenet121", "--to", "mermaid", "--detail", "layers", "-o", "-"])
    assert result.exit_code == 2  # the spec is valid; the options asked for too much: wrong usage
    assert f"at most {MAX_EDGES}" in result.stderr and "--blocks" in result.stderr
    assert "Traceback" not in result.stderr
    # one usage-error line, then what it is about: the preset's name, or the spec file
    assert result.stderr.startswith("error: densenet121: the layer view has 597 connections")
    assert result.stderr.count("\n") == 1
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\nextends: densenet121\n")
    with pytest.raises(ViewTooLargeError, match=rf"^{re.escape(str(spec))}: the layer view"):
        layers_flowchart(as_ir(spec), None, "short", "LR", None)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--to", "svg"], "densenet121.blocks.svg"),
        (["--to", "dot", "--detail", "layers", "--blocks", "3"], "densenet121.layers.block3.dot"),
        (["--to", "dot", "--detail", "layers", "--blocks", "1,3"], "densenet121.layers.blocks1_3.dot"),
        (["--to", "dot", "--detail", "layers"], "densenet121.layers.dot"),
        (["--to", "mermaid"], "densenet121.blocks.mmd"),
    ],
)
def test_default_file_names_say_what_is_drawn(
    args: list[str], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if args[1] == "svg" and not HAS_NEATO:
        pytest.skip("needs Graphviz")
    monkeypatch.chdir(tmp_path)
    result = RUNNER.invoke(app, ["build", "densenet121", *args])
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_drawing_options_reach_the_dot(tmp_path: Path) -> None:
    out = tmp_path / "d.dot"
    args = ["--labels", "full", "--no-legend", "--title", "Fig. 2", "--dpi", "150", "--rankdir", "TB"]
    result = RUNNER.invoke(app, ["build", "densenet121", "--to", "dot", *args, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    dot = out.read_text()
    assert 'label="Fig. 2"' in dot and 'dpi="150"' in dot and "features.denseblock1" in dot
    assert '"legend"' not in dot


@needs_neato
def test_heatmap_cells_are_evenly_spaced() -> None:
    """Each block's grid keeps one step between its columns: the caption and colour bar, wider
    than the grid, spread its columns unevenly (gaps of 57.5, 38.5, 32 for 18-point cells)."""
    from densenet_spec import Spec, emit

    spec = Spec.model_validate(
        {"name": "s", "growth_rate": 6, "blocks": [3, 4, 2], "input": {"size": 32}, "stem": "cifar"}
    )
    svg = emit(spec, "heatmap", {"weights": build_model(spec, seed=0).state_dict()})
    text = svg.decode() if isinstance(svg, bytes) else svg
    cells = re.findall(r'<polygon fill="(#[0-9a-f]{6})" stroke="transparent" points="([-0-9.]+),([-0-9.]+)', text)
    rows: dict[float, list[float]] = {}
    for colour, x, y in cells:
        if colour != "#ffffff":
            rows.setdefault(round(float(y), 1), []).append(float(x))
    steps = {round(b - a, 1) for xs in rows.values() for a, b in itertools.pairwise(sorted(xs)) if b - a < 40}
    assert max(steps) - min(steps) <= 1, steps  # Graphviz rounds to whole points
