"""Diagrams: what is drawn, determinism (golden DOT), rendering and its absence."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from densenet_spec import as_ir, compile_spec, emit, load_spec
from densenet_spec.backends.graphviz import render, to_dot
from densenet_spec.cli import app
from densenet_spec.errors import ToolError

from .conftest import TESTS

GOLDEN = TESTS / "golden"
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[(.*)\]$')
IDENT = re.compile(r'id="([^"]+) -> ([^"]+)"')
HAS_DOT = shutil.which("dot") is not None


def _edges(dot: str) -> list[tuple[str, str, str]]:
    """The drawn IR connections ``(source, target, attributes)``, by the ``id`` each edge carries."""
    out = []
    for line in dot.splitlines():
        if (m := EDGE.match(line)) and (ident := IDENT.search(m.group(3))):
            out.append((ident.group(1), ident.group(2), m.group(3)))
    return out


def test_layer_detail_draws_every_ir_edge_with_one_colour_per_source() -> None:
    ir = compile_spec(load_spec("densenet-bc-100-k12"))
    dot = to_dot(ir, detail="layers")
    edges = _edges(dot)
    assert len(edges) == ir.graph.number_of_edges()
    assert {(a, b) for a, b, _ in edges} == set(ir.graph.edges)
    colours: dict[str, set[str]] = {}
    for source, _, attrs in edges:
        colours.setdefault(source, set()).add(re.search(r'color="([^"]+)"', attrs).group(1))  # type: ignore[union-attr]
    assert all(len(c) == 1 for c in colours.values())
    for number in (1, 2, 3):
        assert f"denseblock{number}: 16 layers, k=12" in dot
    assert 'label="L3\\n132"' in dot
    assert 'label="features.denseblock2.denselayer3\\n132"' in to_dot(ir, detail="layers", labels="full")
    assert "features.conv0" in dot and "features.transition1" in dot and "classifier" in dot


def test_blocks_option_limits_the_layer_view() -> None:
    ir = compile_spec(load_spec("densenet-bc-100-k12"))
    dot = to_dot(ir, detail="layers", blocks=[2])
    edges = _edges(dot)
    # 16 layers: 136 dense connections into them, 17 into transition2.
    assert len(edges) == 16 * 17 // 2 + 17
    assert "denseblock1.denselayer1" not in dot and "denseblock3" not in dot
    assert "features.transition1" in dot and "features.transition2" in dot


def test_block_detail_has_one_node_per_stage() -> None:
    ir = compile_spec(load_spec("densenet121"))
    dot = to_dot(ir, detail="blocks", rankdir="LR")
    for stage in ("input", "stem", "transition1", "transition2", "transition3", "head", "prediction"):
        assert f'\t"{stage}" [' in dot
    assert dot.count('subgraph "cluster_denseblock') == 4
    assert 'label="B3\\n24 layers, k=32\\n1024 ch, 14x14"' in dot


@pytest.mark.parametrize(
    ("name", "detail"), [("densenet121", "blocks"), ("densenet-bc-100-k12", "layers")], ids=["blocks", "layers"]
)
def test_dot_matches_golden(name: str, detail: str) -> None:
    dot = to_dot(compile_spec(load_spec(name)), detail=detail)
    assert dot == to_dot(compile_spec(load_spec(name)), detail=detail)
    golden = GOLDEN / f"{name}.{detail}.dot"
    if os.environ.get("DENSENET_SPEC_UPDATE_GOLDEN"):
        golden.write_text(dot)
    assert dot == golden.read_text(), "regenerate with DENSENET_SPEC_UPDATE_GOLDEN=1"


@pytest.mark.skipif(not HAS_DOT, reason="needs Graphviz's dot (apt-get install graphviz)")
@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
def test_cli_renders(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"d.{fmt}"
    result = CliRunner().invoke(
        app, ["build", "densenet-40-k12", "--to", fmt, "--detail", "layers", "--blocks", "1", "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    magic = {"svg": b"<?xml", "png": b"\x89PNG", "pdf": b"%PDF"}[fmt]
    assert out.read_bytes().startswith(magic)


def test_without_dot_only_dot_output_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    runner = CliRunner()
    out = tmp_path / "d.png"
    result = runner.invoke(app, ["build", "densenet-40-k12", "--to", "png", "-o", str(out)])
    assert result.exit_code == 1
    assert "apt-get install graphviz" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert runner.invoke(app, ["build", "densenet-40-k12", "--to", "dot", "-o", str(tmp_path / "d.dot")]).exit_code == 0


def test_bad_blocks_option_is_usage_error() -> None:
    result = CliRunner().invoke(app, ["build", "densenet121", "--to", "dot", "--detail", "layers", "--blocks", "1,9"])
    assert result.exit_code == 2
    assert "1..4" in result.stderr


@pytest.mark.skipif(not HAS_DOT, reason="needs Graphviz's dot (apt-get install graphviz)")
def test_render_returns_svg_text() -> None:
    svg = render(to_dot(compile_spec(load_spec("densenet121"))), "svg")
    assert b"denseblock4" in svg


def test_blocks_without_layer_detail_is_usage_error() -> None:
    result = CliRunner().invoke(app, ["build", "densenet121", "--to", "dot", "--blocks", "1"])
    assert result.exit_code == 2
    assert "--detail layers" in result.stderr


@pytest.mark.skipif(not HAS_DOT, reason="needs Graphviz's dot (apt-get install graphviz)")
def test_graphviz_failure_is_one_tool_error() -> None:
    with pytest.raises(ToolError, match=r"^Graphviz could not render the svg: .*syntax error"):
        render("digraph { a -> }", "svg")


@pytest.mark.skipif(not HAS_DOT, reason="needs Graphviz's dot (apt-get install graphviz)")
def test_png_scaled_down_is_reported_in_our_words() -> None:
    notes: list[str] = []
    data = emit(as_ir("densenet-40-k12"), "png", {"dpi": 2400}, on_report=notes.append)
    assert data.startswith(b"\x89PNG")  # type: ignore[union-attr]
    width = int.from_bytes(data[16:20], "big")  # type: ignore[arg-type]
    assert width == 32767
    assert len(notes) == 1
    assert re.fullmatch(r"note: the png was scaled down to \d+% to fit Graphviz's bitmap limit .*svg or pdf", notes[0])


@pytest.mark.parametrize("title", ["x" * 301, "ctl\x01\x1b[31mred", "two\nlines"])
def test_unusable_titles_refused(title: str) -> None:
    with pytest.raises(ValueError, match="the title"):
        emit(as_ir("densenet-40-k12"), "dot", {"title": title})
    with pytest.raises(ValueError, match="the title"):
        to_dot(as_ir("densenet-40-k12"), title=title)


def test_longest_title_drawn() -> None:
    assert "x" * 300 in str(emit(as_ir("densenet-40-k12"), "dot", {"title": "x" * 300}))


def test_an_ampersand_in_a_title_is_drawn_as_written() -> None:
    """Graphviz reads entities in quoted labels: "a &lt; b" drew "a < b"."""
    from densenet_spec import emit

    dot = str(emit("densenet-40-k12", "dot", {"title": "a &lt; b & c"}))
    assert '"a &amp;lt; b &amp; c"' in dot
