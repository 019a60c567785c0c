"""The compiler: the IR's structure and invariants, warnings, and random valid specs."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densenet_spec import IR, Spec, SpecError, compile_spec, load_spec
from densenet_spec.ir import check_ir


def test_densenet121_graph_shape() -> None:
    ir = compile_spec(load_spec("densenet121"))
    layer = ir.layer("features.denseblock2.denselayer3")
    assert layer.kind == "dense_layer"
    assert layer.in_channels == 128 + 2 * 32
    assert ir.inputs(layer.name) == [
        "features.transition1",
        "features.denseblock2.denselayer1",
        "features.denseblock2.denselayer2",
    ]
    assert [op.name for op in layer.ops] == ["norm1", "relu1", "conv1", "norm2", "relu2", "conv2"]
    assert ir.graph.nodes["features.transition3"]["layer"].out_size == (7, 7)
    assert ir.layer("features.norm5").in_channels == 1024
    assert len(ir.inputs("features.norm5")) == 17
    assert ir.output.name == "classifier"


def test_cifar_stem_feeds_the_first_dense_layer() -> None:
    ir = compile_spec(load_spec("densenet-40-k12"))
    assert [layer.name for layer in ir.stages()["stem"]] == ["features.conv0"]
    first = ir.layer("features.denseblock1.denselayer1")
    assert first.ops[0].kind == "norm"
    assert first.op("conv1").kernel == (3, 3)  # type: ignore[attr-defined]  # no bottleneck: BN-ReLU-conv3x3


def test_check_ir_names_the_broken_node() -> None:
    ir = compile_spec(load_spec("densenet-bc-100-k12"))
    name = "features.denseblock2.denselayer4"
    lowered = [
        (layer, [s for s in inputs if s != "features.denseblock2.denselayer1"] if layer.name == name else inputs)
        for layer, inputs in ir.lowered()
    ]
    broken = check_ir(ir.with_layers(lowered))
    assert any(msg.startswith(name + ":") for msg in broken)


def test_non_integer_compression_warns_and_is_an_error_under_strict() -> None:
    spec = Spec(name="w", growth_rate=12, blocks=[5, 5], compression=0.3)  # type: ignore[arg-type]
    ir = compile_spec(spec)
    assert len(ir.warnings) == 1
    assert "features.transition1" in ir.warnings[0].message
    assert ir.layer("features.transition1").out_channels == math.floor(0.3 * 84)
    with pytest.raises(SpecError, match="not an integer"):
        compile_spec(spec, strict=True)


def test_compression_uses_the_written_decimal() -> None:
    # 0.57 * 100 is 56.99999999999999 in floating point; the spec means 57.
    spec = Spec(name="d", growth_rate=36, blocks=[2, 1], stem={"channels": 28}, compression=0.57)  # type: ignore[arg-type]
    assert compile_spec(spec).layer("features.transition1").out_channels == 57


def test_huge_spec_is_refused_fast() -> None:
    import time

    spec = Spec(name="h", growth_rate=32, blocks=[10**12])  # type: ignore[arg-type]
    start = time.perf_counter()
    with pytest.raises(SpecError, match="too many"):
        compile_spec(spec)
    assert time.perf_counter() - start < 0.5


# ----------------------------------------------------------------------------- random specs


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    """Random valid specs, with an input size large enough for their transitions."""
    n_blocks = draw(st.integers(1, 4))
    blocks = [
        draw(
            st.integers(1, 6)
            | st.builds(lambda n, k: {"layers": n, "growth_rate": k}, st.integers(1, 6), st.integers(1, 9))
        )
        for _ in range(n_blocks)
    ]
    stem = draw(st.sampled_from(["imagenet", "cifar"]))
    shrink = (4 if stem == "imagenet" else 1) * 2 ** (n_blocks - 1)
    size = draw(st.integers(1, 3)) * shrink
    return Spec.model_validate(
        {
            "name": "random",
            "input": {"channels": draw(st.integers(1, 4)), "size": [size, size + draw(st.integers(0, shrink))]},
            "stem": {"kind": stem, "channels": draw(st.none() | st.integers(1, 24))},
            "growth_rate": draw(st.integers(1, 12)),
            "blocks": blocks,
            "bottleneck_width": draw(st.none() | st.integers(1, 4)),
            "compression": draw(st.sampled_from([0.5, 1.0, 0.75, 0.6])),
            "dropout": draw(st.sampled_from([0.0, 0.2])),
            "num_classes": draw(st.integers(1, 20)),
        }
    )


def closed_form_params(spec: Spec) -> int:
    """Parameters from the paper's formulas, summed per block in closed form."""
    kernel = 49 if spec.stem.kind == "imagenet" else 9
    c = spec.stem_channels
    total = c * spec.input.channels * kernel + (2 * c if spec.stem.kind == "imagenet" else 0)
    blocks = spec.block_layers
    for b, (n, k) in enumerate(blocks):
        inputs = n * c + k * n * (n - 1) // 2  # sum of the n layers' input channels
        if spec.bottleneck_width is None:
            total += 2 * inputs + 9 * k * inputs
        else:
            w = spec.bottleneck_width * k
            total += 2 * inputs + w * inputs + n * (2 * w + 9 * w * k)
        c += n * k
        if b < len(blocks) - 1:
            kept = math.floor(Fraction(repr(spec.compression)) * c)
            total += 2 * c + c * kept
            c = kept
    return total + 2 * c + c * spec.num_classes + spec.num_classes


def dense_edges_into_block(ir: IR, block: int) -> int:
    layers = {layer.name for layer in ir.blocks()[block]}
    return sum(1 for _, target in ir.graph.edges if target in layers)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_random_specs_compile_and_keep_invariants(spec: Spec) -> None:
    ir = compile_spec(spec)
    assert check_ir(ir) == []
    for b, (n, _) in enumerate(spec.block_layers):
        assert dense_edges_into_block(ir, b) == n * (n + 1) // 2
    for layer in ir.layers():
        assert sum(ir.layer(s).out_channels for s in ir.inputs(layer.name)) in (0, layer.in_channels)
    assert ir.params == closed_form_params(spec)
    assert ir.output.out_channels == spec.num_classes


def test_small_input_behind_the_imagenet_stem_warns_and_fails_under_strict() -> None:
    spec = Spec.model_validate({"name": "w", "growth_rate": 12, "blocks": [2, 2], "input": {"size": 32}})
    (warning,) = compile_spec(spec).warnings
    assert warning.field == "input.size" and "use stem: cifar" in warning.message and "(8x8)" in warning.message
    with pytest.raises(SpecError, match="small for the imagenet stem"):
        compile_spec(spec, strict=True)
    cifar = Spec.model_validate({**spec.model_dump(exclude={"extends"}), "stem": {"kind": "cifar"}})
    assert compile_spec(cifar, strict=True).warnings == ()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"growth_rate": 10**3000, "blocks": [1]}, "about 4.4e6001 parameters is too many"),
        ({"growth_rate": 1, "blocks": [10**5000]}, "about 1.0e5000 dense layers is too many"),
        ({"growth_rate": 4, "blocks": [1], "num_classes": 10**5000}, "parameters is too many"),
    ],
)
def test_refusals_of_huge_networks_format_their_numbers(fields: dict[str, object], fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        compile_spec(Spec.model_validate({"name": "huge", **fields}))
