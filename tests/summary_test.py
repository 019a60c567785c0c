"""The summary views: numbers readable at any size, per-block growth rates, JSON that only grows."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from densenet_spec import cli
from densenet_spec.cli import app
from densenet_spec.compiler import compile_spec
from densenet_spec.ir import IR
from densenet_spec.loader import load_spec
from densenet_spec.schema import Spec
from densenet_spec.summary import (
    format_count,
    format_dims,
    format_gmacs,
    presets_markdown,
    stage_rows,
    summary_json,
    summary_markdown,
)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (7_978_856, "7,978,856"),
        (10**30 - 1, "999,999,999,999,999,999,999,999,999,999"),
        (10**30, "about 1.0e30"),
        (12 * 10**159, "about 1.2e160"),
        (996 * 10**40, "about 1.0e43"),  # 9.96 rounds to the next power of ten, not "10.0e42"
        (-5 * 10**50, "about -5.0e50"),
        (3 * 10**5000, "about 3.0e5000"),  # past Python's 4,300-digit int-to-str limit
    ],
    ids=lambda value: value if isinstance(value, str) else "",  # pytest would str() the 5,000-digit int
)
def test_format_count(n: int, text: str) -> None:
    assert format_count(n) == text


def test_format_gmacs_and_dims() -> None:
    assert format_gmacs(2_834_161_664) == "2.834"
    assert format_gmacs(1234 * 10**9) == "1,234.000"
    assert format_gmacs(76 * 10**320) == "about 7.6e312"
    assert format_dims((224, 224)) == "224x224"
    assert format_dims((3, 10**160)) == "3x~1.0e160"


def _huge_ir() -> IR:
    """The issue's reproducer: MACs far beyond float range (``ir.macs / 1e9`` raises OverflowError)."""
    return compile_spec(Spec.model_validate({"name": "x", "growth_rate": 1, "blocks": [1], "input": {"size": 10**160}}))


def test_huge_counts_print_in_every_view(capsys: pytest.CaptureFixture[str]) -> None:
    ir = _huge_ir()
    with pytest.raises(OverflowError):
        _ = ir.macs / 1e9  # what the views used to do
    assert stage_rows(ir)[-1] == ("total", "", "", "", "4,360", "about 7.6e321")
    assert "MACs about 7.6e321 (about 7.6e312 G)" in summary_markdown(ir)
    assert "| x | ~1.0e160x~1.0e160 | 4,360 | about 7.6e312 |" in presets_markdown([ir])
    data = json.loads(json.dumps(summary_json(ir)))
    assert data["macs"] == ir.macs and data["flops"] == 2 * ir.macs  # JSON keeps the exact ints
    cli._print_summary(ir, None)
    assert "about 7.6e321" in capsys.readouterr().out


def test_validate_line_uses_readable_numbers(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", "densenet121"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "densenet121: ok (densenet121: 7,978,856 params, 2.834 GMACs)"


def test_block_stages_show_their_growth_rate(runner: CliRunner, write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("name: g\ngrowth_rate: 12\nblocks: [2, {layers: 3, growth_rate: 48}]\ninput: {size: 32}\n")
    data = json.loads(runner.invoke(app, ["summary", str(spec), "-f", "json"]).stdout)
    blocks = [s for s in data["stages"] if s["name"].startswith("denseblock")]
    assert [s["growth_rate"] for s in blocks] == [12, 48]
    assert all("growth_rate" not in s for s in data["stages"] if s not in blocks)
    table = runner.invoke(app, ["summary", str(spec)], env={"COLUMNS": "200"}).stdout
    assert "2 x [1x1 conv, 3x3 conv], k=12" in table and "3 x [1x1 conv, 3x3 conv], k=48" in table


def test_preset_json_only_gains_keys(runner: CliRunner) -> None:
    """The v1 JSON of a preset, as before this change, is a subset of today's (keys and values)."""
    data = json.loads(runner.invoke(app, ["summary", "densenet121", "-f", "json"]).stdout)
    block1 = data["stages"][1]
    expected = {
        "name": "denseblock1",
        "layers": "6 x [1x1 conv, 3x3 conv]",
        "dense_layers": 6,
        "in_channels": 64,
        "out_channels": 256,
        "output_size": [56, 56],
    }
    assert expected.items() <= block1.items() and block1["growth_rate"] == 32
    assert set(data["stages"][0]) == {
        "name",
        "layers",
        "dense_layers",
        "in_channels",
        "out_channels",
        "output_size",
        "params",
        "macs",
    }


def test_rich_markup_in_a_description_is_printed_as_text(runner: CliRunner, write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec('name: m\ngrowth_rate: 4\nblocks: [1]\ndescription: "a [/b] tag [red]x"\ninput: {size: 64}\n')
    result = runner.invoke(app, ["summary", str(spec)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "a [/b] tag [red]x" in result.stdout


def test_blur_pools_are_named_where_they_downsample(runner: CliRunner, write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec("name: b\nextends: densenetblur121d\nanti_alias: all\n")
    data = json.loads(runner.invoke(app, ["summary", str(spec), "-f", "json"]).stdout)
    layers = {s["name"]: s["layers"] for s in data["stages"]}
    assert layers["stem"].endswith("3x3 max pool, 3x3 blur pool/2")  # timm: max pool stride 1, then the blur
    assert layers["transition1"] == "1x1 conv, 3x3 blur pool/2"


def test_one_dimensional_windows_read_as_taps_not_counts() -> None:
    rows = {row[0]: row[2] for row in stage_rows(compile_spec(load_spec("densenet121-1d")))}
    assert rows["stem"] == "7-tap conv/2, 3-tap max pool/2"
    assert rows["transition1"] == "1-tap conv, 2-tap avg pool/2"


@pytest.mark.parametrize(
    ("macs", "shown"),
    [
        (2_834_161_664, "2.834 GMACs"),
        (10**7, "0.010 GMACs"),
        (1_744_512, "1.745 MMACs"),
        (24_176, "0.024 MMACs"),
        (2_304, "2,304 MACs"),
    ],
)
def test_macs_are_shown_in_a_unit_that_shows_them(macs: int, shown: str) -> None:
    """A small network's MACs read 0.000 GMACs in diagram titles and validate's line."""
    from densenet_spec.summary import format_macs

    assert format_macs(macs) == shown
