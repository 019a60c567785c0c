"""optimize_for_inference and the optimised ONNX: the same function on every preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from densenet_spec import build_model, emit, optimize_for_inference
from densenet_spec.cli import app

from .conftest import PRESETS


def _trained_looking(name: str, seed: int = 0) -> torch.nn.Module:
    """A model whose BN statistics and affine parameters are not the initial 0/1."""
    model = build_model(name, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(c, generator=generator) * 0.5 + 0.75)
            module.weight.data.copy_(torch.randn(c, generator=generator) * 0.5 + 1)  # some negative
            module.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("name", PRESETS)
def test_optimized_model_computes_the_same_function(name: str) -> None:
    model = _trained_looking(name)
    fast = optimize_for_inference(model)
    ir = model.ir
    x = torch.randn(2, ir.info.input_channels, *ir.info.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() <= 1e-4


def test_optimized_model_is_inference_only() -> None:
    fast = optimize_for_inference(build_model("densenet-40-k12"))
    assert not fast.training
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    with pytest.raises(TypeError):
        optimize_for_inference(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize("norm", ["{kind: group, groups: 2}", "instance", "none"])
def test_optimized_model_without_batch_norms_is_eval_only_too(tmp_path: Path, norm: str) -> None:
    spec = tmp_path / "gn.yaml"
    spec.write_text(
        "name: gn\ngrowth_rate: 4\nblocks: [2, 2]\ninput: {size: 32}\nstem: cifar\nnum_classes: 3\n"
        f"norm: {norm}\ndropout: 0.2\nhead: {{pool: avg, dropout: 0.2}}\n"
    )
    model = build_model(spec, seed=0).eval()
    fast = optimize_for_inference(model)
    assert not fast.training
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x))  # dropout off: the same function, every call


def test_optimized_model_keeps_the_dtype() -> None:
    model = _trained_looking("densenet-bc-100-k12").double()
    fast = optimize_for_inference(model)
    assert {p.dtype for p in fast.parameters()} == {torch.float64}
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():  # folded in float64: agreement to float64 rounding, not float32's
        assert (fast(x) - model(x)).abs().max().item() <= 1e-10
    half = optimize_for_inference(model.bfloat16())
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        assert half(x.bfloat16()).dtype == torch.bfloat16


def test_a_features_only_backbone_is_refused_by_name() -> None:
    backbone = build_model("densenet-40-k12", features_only=True)
    with pytest.raises(TypeError, match="not a features_only backbone"):
        optimize_for_inference(backbone)  # type: ignore[arg-type]


def test_zero_bn_scale_is_handled() -> None:
    model = _trained_looking("densenet-bc-100-k12")
    norm = model.features.denseblock2.denselayer3.norm1
    norm.weight.data[:5] = 0.0  # relu(bias) becomes a constant for those channels
    fast = optimize_for_inference(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["densenet121", "densenet-bc-100-k12", "densenet-40-k12"])
def test_optimized_onnx_matches_torch(name: str) -> None:
    model = _trained_looking(name)
    ir = model.ir
    data = emit(ir, "onnx", {"weights": model.state_dict(), "optimize": True})
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(3, ir.info.input_channels, *ir.info.input_size)
    (actual,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert np.abs(actual - model(x).numpy()).max() <= 1e-4


def test_cli_optimized_onnx_and_summary(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["build", "densenet-bc-100-k12", "--to", "onnx", "--optimize", "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    import onnx

    model = onnx.load(str(out))
    names = {node.name for node in model.graph.node}
    assert "features.denseblock1.denselayer1.norm2" not in names  # folded
    kinds = [
        n.op_type for n in model.graph.node if n.name.startswith("features.transition1.") and n.op_type != "Concat"
    ]
    assert kinds == ["BatchNormalization", "Relu", "AveragePool", "Conv"]  # ONNX keeps BN-ReLU (no clamps)
    assert model.graph.node[[n.name for n in model.graph.node].index("features.transition1.norm")].attribute[0].f == 0.0
    summary = runner.invoke(app, ["summary", "densenet121", "--optimize", "--format", "json"])
    data = json.loads(summary.stdout)
    assert data["passes"] == ["swap_transition_pool", "fold_batchnorm", "swap_act_pool"]
    assert data["unoptimized"]["macs"] - data["macs"] == 3 * 102_760_448 * 3 // 4
    table = runner.invoke(app, ["summary", "densenet121", "--optimize"])
    assert "75.0%" in table.stdout


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        ((2, 5, 3, 4), torch.channels_last),
        ((2, 5, 3, 4), torch.contiguous_format),
        ((2, 5, 3, 4, 2), torch.channels_last_3d),
        ((2, 5, 3, 4, 2), torch.contiguous_format),
        ((2, 5, 7), torch.contiguous_format),
    ],
)
def test_clamp_scratch_views_are_dense_in_the_buffer_layout(
    shape: tuple[int, ...], layout: torch.memory_format
) -> None:
    from densenet_spec.backends.torch_runtime import _dense_view

    flat = torch.arange(300.0)
    view = _dense_view(flat, torch.Size(shape), layout)
    assert view.stride() == torch.empty(shape, memory_format=layout).stride()
    assert view.data_ptr() == flat.data_ptr() and view.is_contiguous(memory_format=layout)


@pytest.mark.parametrize("name", ["densenet-bc-100-k12", "densenet-40-k12"])
def test_scratch_path_matches_the_autograd_path(name: str) -> None:
    """Without autograd the clamps write into one scratch per block; with it (a saliency map
    through the optimised network) each layer allocates its own: both give the same numbers."""
    fast = optimize_for_inference(_trained_looking(name))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = fast(x)
    leaf = x.clone().requires_grad_()
    out = fast(leaf)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    out.sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_scratch_path_in_3d_and_under_cpu_autocast() -> None:
    from densenet_spec import Spec

    spec = Spec.model_validate(
        {"name": "v", "growth_rate": 4, "blocks": [2, 2], "input": {"channels": 1, "size": [12, 12, 12]}}
    )
    model = build_model(spec, seed=0).eval()
    fast = optimize_for_inference(model)
    x = torch.randn(2, 1, 12, 12, 12)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() <= 1e-4
    image = torch.randn(2, 3, 32, 32)
    plain = _trained_looking("densenet-40-k12")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 activations, float32 bounds
        low = optimize_for_inference(plain)(image)
    with torch.no_grad():
        torch.testing.assert_close(low.float(), plain(image), rtol=0.1, atol=0.1)


def test_a_clamp_without_upper_bounds_follows_a_changed_bound() -> None:
    from densenet_spec.backends.torch_runtime import Clamp

    clamp = Clamp(3, 2)
    x = torch.linspace(-3, 3, 3 * 4 * 4).reshape(1, 3, 4, 4)
    assert torch.equal(clamp(x), x)  # unbounded both ways
    clamp.lo.fill_(0.0)
    assert torch.equal(clamp(x), x.clamp_min(0.0))  # the clamp_min path
    clamp.hi.fill_(1.0)  # changed in place: the next call looks again
    assert torch.equal(clamp(x), x.clamp(0.0, 1.0))
    out = torch.empty_like(x)
    assert clamp(x, out=out) is out and torch.equal(out, x.clamp(0.0, 1.0))


def _kept(module: torch.nn.Module) -> dict[str, int]:
    """Where the memory that ``module`` keeps lies, by role."""
    from densenet_spec.backends import torch_runtime

    return {role: memory.data_ptr() for role, memory in torch_runtime._KEPT[module].items()}


def test_each_block_keeps_its_memory_while_it_lives() -> None:
    import gc
    import threading

    from densenet_spec.backends import torch_runtime

    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = fast(x)
        blocks = [m for m in fast.modules() if isinstance(m, torch_runtime.DenseBlock)]
        kept = {block: _kept(block) for block in blocks}
        assert all(set(roles) == {"buffer", "scratch"} for roles in kept.values())
        assert torch.equal(fast(x), first)  # the second call reuses the memory and gets the same numbers
        assert {block: _kept(block) for block in blocks} == kept

    def other_thread() -> None:
        with torch.no_grad():
            torch.testing.assert_close(fast(x), first, rtol=0, atol=0)

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join()
    assert {block: _kept(block) for block in blocks} == kept  # one set per model, for every thread

    def run_once() -> None:  # a model that is gone when this returns
        with torch.no_grad():
            optimize_for_inference(_trained_looking("densenet-bc-100-k12"))(x)

    count = len(torch_runtime._KEPT)
    run_once()
    gc.collect()
    assert len(torch_runtime._KEPT) == count  # its blocks' and clamps' memory went with it


def test_an_output_the_caller_holds_is_not_written_over() -> None:
    """The kept memory is reused only when no tensor refers to it any more: a block's output (its
    buffer) or a clamp's output that the caller still holds stays as it was."""
    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    block = fast.features.denseblock1
    one, two = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stem = fast.features.conv0
        held = block(stem(one))
        copy = held.clone()
        other = block(stem(two))
        assert torch.equal(held, copy) and not torch.equal(other, copy)
        assert held.data_ptr() != other.data_ptr()
        del held, other
        again = block(stem(one))  # nothing holds the kept buffer now: it is used again
        assert again.data_ptr() == _kept(block)["buffer"] and torch.equal(again, copy)

        features = fast.forward_features(one)  # the final clamp's output
        saved = features.clone()
        view = features[:, :4]
        del features
        fast.forward_features(two)
        assert torch.equal(view, saved[:, :4])  # a view of it holds the memory too


def test_a_nested_call_from_a_hook_gets_a_scratch_of_its_own() -> None:
    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = fast(x)
        inner: list[torch.Tensor] = []

        def run_again(*_: object) -> None:
            if not inner:
                inner.append(torch.empty(0))  # once: the nested call passes this hook too
                inner[0] = fast(x)

        conv = fast.features.denseblock1.denselayer2.conv1
        handle = conv.register_forward_pre_hook(run_again)
        outer = fast(x)  # the hook runs the whole network between the clamp and the conv that reads it
        handle.remove()
    torch.testing.assert_close(outer, expected, rtol=0, atol=0)
    torch.testing.assert_close(inner[0], expected, rtol=0, atol=0)


def test_inference_mode_then_no_grad() -> None:
    """A scratch made under inference_mode is an inference tensor, which no_grad may not write to."""
    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = fast(x)
    for _ in range(2):
        with torch.no_grad():
            torch.testing.assert_close(fast(x), expected.clone(), rtol=0, atol=0)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), expected, rtol=0, atol=0)


def test_a_hook_on_a_clamp_keeps_what_it_saw() -> None:
    """With a forward hook on a layer's clamp, that clamp gets a tensor of its own (the shared
    scratch would be overwritten by the next layer and the next call)."""
    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    clamp = fast.features.denseblock1.denselayer1.norm1
    clamp.register_forward_hook(lambda _m, _i, out: kept.append((out, out.clone())))
    with torch.no_grad():
        fast(torch.randn(2, 3, 32, 32))
        fast(torch.randn(2, 3, 32, 32))
    assert len(kept) == 2 and all(torch.equal(seen, copy) for seen, copy in kept)


def test_the_kept_memory_shrinks_after_a_large_batch() -> None:
    from densenet_spec.backends import torch_runtime

    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    block = fast.features.denseblock1
    with torch.no_grad():
        fast(torch.randn(8, 3, 32, 32))  # one pass of 8 samples (see samples_per_pass)
        large = torch_runtime._KEPT[block]["scratch"].nbytes()
        fast(torch.randn(2, 3, 32, 32))
    assert torch_runtime._KEPT[block]["scratch"].nbytes() * 4 == large  # not batch 8's, for 2


def _scratch_samples(block: torch.nn.Module, x: torch.Tensor) -> int:
    """How many samples of ``x``'s size the scratch that ``block`` keeps holds."""
    from densenet_spec.backends import torch_runtime

    per_sample = block.out_channels * x[0, 0].numel() * x.element_size()  # type: ignore[operator]
    return torch_runtime._KEPT[block]["scratch"].nbytes() // per_sample  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "shape"),
    [("densenet-bc-100-k12", (5, 3, 32, 32)), ("1d", (5, 2, 40)), ("3d", (5, 1, 12, 12, 12))],
)
def test_a_batch_goes_through_each_block_a_few_samples_at_a_time(
    name: str, shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two samples a pass (and one for the fifth) give the numbers of one pass of five (up to the
    rounding of convolutions whose kernel oneDNN picks by batch size), in one buffer, with a
    scratch for two samples."""
    from densenet_spec import Spec
    from densenet_spec.backends import torch_runtime

    if name in ("1d", "3d"):
        size = list(shape[2:])
        given = {"name": name, "growth_rate": 4, "blocks": [3, 2], "input": {"channels": shape[1], "size": size}}
        model = build_model(Spec.model_validate(given), seed=0).eval()
    else:
        model = _trained_looking(name)
    fast = optimize_for_inference(model)
    x = torch.randn(*shape)
    with torch.no_grad():
        whole = fast(x)
        stem = fast.features[: list(fast.features).index(fast.features.denseblock1)]
        entry = stem(x)
        block = fast.features.denseblock1
        per_sample = 2 * block.out_channels * entry[0, 0].numel() * entry.element_size()
        monkeypatch.setattr(torch_runtime, "PASS_BYTES", 2 * per_sample + 1)
        assert block.samples_per_pass(entry) == 2
        out = block(entry)
        assert _scratch_samples(block, entry) == 2 and out.data_ptr() == _kept(block)["buffer"]
        torch.testing.assert_close(out, _whole_block(block, entry), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast(x), whole, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(whole, model(x), rtol=1e-4, atol=1e-4)


def _whole_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block on ``x`` in one pass (with a new buffer, as the kept one is in use)."""
    from densenet_spec.backends import torch_runtime

    saved = torch_runtime.PASS_BYTES
    torch_runtime.PASS_BYTES = 1 << 62
    try:
        return block(x)  # type: ignore[no-any-return]
    finally:
        torch_runtime.PASS_BYTES = saved


def test_a_short_last_pass_keeps_the_scratch_of_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes of 4, 4 and 1 samples: the scratch stays the one for 4, call after call (a scratch
    for the last pass alone, under half the size, was made anew twice a call)."""
    from densenet_spec.backends import torch_runtime

    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    block = fast.features.denseblock1
    x = torch.randn(9, 3, 32, 32)
    with torch.no_grad():
        entry = fast.features.conv0(x)
        per_sample = 2 * block.out_channels * entry[0, 0].numel() * entry.element_size()
        monkeypatch.setattr(torch_runtime, "PASS_BYTES", 4 * per_sample)
        first = fast(x)
        kept = _kept(block)
        torch.testing.assert_close(fast(x), first, rtol=0, atol=0)
    assert _kept(block) == kept and _scratch_samples(block, entry) == 4


@pytest.mark.parametrize("name", ["densenet-bc-100-k12", "densenet121"])
def test_an_empty_batch_gives_an_empty_output(name: str) -> None:
    fast = optimize_for_inference(build_model(name).eval())
    size = 32 if name.startswith("densenet-bc") else 64
    with torch.no_grad():
        assert fast(torch.randn(0, 3, size, size)).shape == (0, fast.classifier.out_features)
    with torch.inference_mode():
        assert fast(torch.randn(0, 3, size, size)).shape == (0, fast.classifier.out_features)


def test_a_hook_on_a_dense_layer_sees_the_whole_batch_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Passes of a few samples stop where a hook could see them: a hook on a layer, or on a
    module in it, is called once with the whole batch, as in the plain network."""
    from densenet_spec.backends import torch_runtime

    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    monkeypatch.setattr(torch_runtime, "PASS_BYTES", 1)  # a sample a pass where passes apply
    seen: list[int] = []
    layer = fast.features.denseblock2.denselayer3
    for module in (layer, layer.conv1):
        handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[0]))
        with torch.no_grad():
            fast(torch.randn(5, 3, 32, 32))
        handle.remove()
    assert seen == [5, 5]
    block = fast.features.denseblock1
    handle = block.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[0]))
    with torch.no_grad():
        fast(torch.randn(5, 3, 32, 32))
    handle.remove()
    assert seen == [5, 5, 5] and _scratch_samples(block, torch.empty(1, 24, 32, 32)) == 1


def test_samples_a_pass_keep_the_block_within_its_bytes() -> None:
    """densenet121's first block at batch 8: 6.4 MB of buffer and scratch a 56x56 sample, two
    samples a pass; the last block (7x7) takes the whole batch; a sample larger than the budget
    still goes through."""
    from densenet_spec.backends import torch_runtime

    fast = optimize_for_inference(build_model("densenet121").eval())
    first, last = fast.features.denseblock1, fast.features.denseblock4
    assert first.samples_per_pass(torch.empty(8, 64, 56, 56)) == 2
    assert last.samples_per_pass(torch.empty(8, 512, 7, 7)) >= 8
    assert first.samples_per_pass(torch.empty(8, 64, 56, 56, dtype=torch.bfloat16)) == 5
    assert first.samples_per_pass(torch.empty(1, 64, 1000, 1000)) == 1
    assert torch_runtime.PASS_BYTES == 16 << 20


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "ceil_mode", "channels_last"),
    [
        (3, 2, 1, 1, False, True),
        (3, 2, 1, 1, False, False),
        (2, 2, 0, 1, True, True),
        ((3, 2), (1, 2), (1, 0), 2, True, False),
    ],
)
def test_the_stem_max_pool_into_kept_memory(
    kernel: int | tuple[int, int],
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int,
    ceil_mode: bool,
    channels_last: bool,
) -> None:
    from densenet_spec.backends.torch_prepack import KeptMaxPool2d

    plain = torch.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    kept = KeptMaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    one, two = (torch.randn(2, 5, 17, 12).contiguous(memory_format=layout) for _ in range(2))
    with torch.no_grad():
        held = kept(one)
        assert torch.equal(held, plain(one)) and held.is_contiguous(memory_format=layout)
        assert torch.equal(kept(two), plain(two)) and torch.equal(held, plain(one))  # held: left alone
        del held
        assert kept(one).data_ptr() == _kept(kept)["out"]  # dropped: its memory is used again
    x = one.clone().requires_grad_()
    kept(x).sum().backward()  # with autograd: the plain pool
    assert x.grad is not None and x.grad.sum().item() > 0


def test_optimize_for_inference_keeps_the_stem_pool_memory() -> None:
    from densenet_spec.backends.torch_prepack import KeptMaxPool2d

    model = _trained_looking("densenet121")
    fast = optimize_for_inference(model)
    assert type(fast.features.pool0) is KeptMaxPool2d
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


def test_a_held_storage_object_keeps_its_memory() -> None:
    """``tensor.untyped_storage()`` is the kept storage object itself: holding it holds the memory."""
    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    with torch.no_grad():
        features = fast.forward_features(torch.randn(2, 3, 32, 32))
        storage, shape, stride, expected = (
            features.untyped_storage(),
            features.shape,
            features.stride(),
            features.clone(),
        )
        del features
        fast.forward_features(torch.randn(2, 3, 32, 32))
    assert torch.equal(torch.empty(0).set_(storage, 0, shape, stride), expected)


def test_memory_moved_into_shared_memory_is_not_reused() -> None:
    """A tensor sent to another process (a DataLoader worker's output) lives on in shared memory
    that the receiver maps, after the sender dropped it."""
    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    with torch.no_grad():
        features = fast.forward_features(torch.randn(2, 3, 32, 32))
        features.share_memory_()  # what torch.multiprocessing does to a tensor it sends
        address = features.data_ptr()
        del features
        assert fast.forward_features(torch.randn(2, 3, 32, 32)).data_ptr() != address


class _Features(torch.utils.data.Dataset[torch.Tensor]):
    model: torch.nn.Module | None = None

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        if self.model is None:
            self.model = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
        with torch.no_grad():
            return self.model.forward_features(torch.full((1, 3, 32, 32), float(index)))  # type: ignore[operator]


def test_dataloader_worker_outputs_stay_as_sent() -> None:
    received = list(torch.utils.data.DataLoader(_Features(), batch_size=None, num_workers=1))
    expected = [_Features()[i] for i in range(4)]
    for got, want in zip(received, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_under_fake_tensor_mode_the_shapes_come_out() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode

    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast(x)  # a real call first: kept memory exists
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            assert fast(mode.from_tensor(x)).shape == (2, 10)
            assert fast.features.norm5(mode.from_tensor(torch.randn(2, 342, 8, 8))).shape == (2, 342, 8, 8)


def test_hooks_inside_a_dense_layer_see_what_they_keep_and_fire() -> None:
    """A hook on the 1x1 conv reads the clamped input: with any hook in the layer, the clamp
    writes its own tensor, not the scratch that the next layer overwrites; and the layer's own
    hooks fire (the scratch path does not go through its ``__call__``)."""
    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    layer = fast.features.denseblock1.denselayer1
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    layer.conv1.register_forward_pre_hook(lambda _m, args: seen.append((args[0], args[0].clone())))
    calls: list[int] = []
    fast.features.denseblock1.denselayer2.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        fast(torch.randn(2, 3, 32, 32))
    assert torch.equal(*seen[0]) and calls == [1]


def test_torch_export_strict_without_autograd() -> None:
    fast = optimize_for_inference(_trained_looking("densenet-40-k12"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        exported = torch.export.export(fast, (x,), strict=True)
        torch.testing.assert_close(exported.module()(x), fast(x), rtol=1e-5, atol=1e-5)


def test_the_max_pool_remembers_a_bounded_number_of_shapes() -> None:
    from densenet_spec.backends.torch_prepack import KeptMaxPool2d

    pool = KeptMaxPool2d(3, 2, 1)
    with torch.no_grad():
        for size in range(8, 8 + 70):
            assert pool(torch.randn(1, 2, size, 5)).shape == (1, 2, (size - 1) // 2 + 1, 3)
    assert pool._shapes is not None and len(pool._shapes) == 64


def test_threads_calling_at_once_get_their_own_numbers() -> None:
    """Calls at the same time find the kept memory in use and take new memory: each thread's
    results are what one thread alone computes."""
    import threading

    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    inputs = [torch.randn(2, 3, 32, 32) for _ in range(4)]
    with torch.no_grad():
        expected = [fast(x).clone() for x in inputs]
    results: dict[int, list[torch.Tensor]] = {}
    start = threading.Barrier(4)

    def run(index: int) -> None:
        start.wait()
        with torch.no_grad():
            results[index] = [fast(inputs[index]) for _ in range(5)]

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for index, outputs in results.items():
        assert all(torch.equal(out, expected[index]) for out in outputs)
    assert len(results) == 4


def test_hooks_are_found_on_the_layer_its_children_and_theirs() -> None:
    from torch import nn

    from densenet_spec.backends.torch_runtime import _hooked

    inner = nn.Sequential(nn.ReLU())
    layer = nn.Sequential(nn.Identity(), inner)
    assert not _hooked(layer)
    for module in (layer, layer[0], inner, inner[0]):
        handle = module.register_forward_pre_hook(lambda *_: None)
        assert _hooked(layer)
        handle.remove()
        handle = module.register_forward_hook(lambda *_: None)
        assert _hooked(layer)
        handle.remove()
    handle = nn.modules.module.register_module_forward_pre_hook(lambda *_: None)
    assert _hooked(layer)
    handle.remove()
    assert not _hooked(layer)


def test_an_output_carries_no_earlier_call_past_its_end() -> None:
    """Memory an output is made on is exactly its size: ``torch.save`` writes a tensor's whole
    storage, and a larger earlier call's features must not ride along."""
    import io

    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    with torch.no_grad():
        fast.forward_features(torch.randn(6, 3, 32, 32))
        small = fast.forward_features(torch.randn(4, 3, 32, 32))
        pooled = fast.features.conv0(torch.randn(4, 3, 32, 32))
    assert small.untyped_storage().nbytes() == small.numel() * small.element_size()
    saved = io.BytesIO()
    torch.save(small, saved)
    fresh = io.BytesIO()
    torch.save(small.clone(), fresh)
    assert len(saved.getvalue()) == len(fresh.getvalue())
    assert pooled.untyped_storage().nbytes() == pooled.numel() * pooled.element_size()


def test_the_max_pool_shape_table_under_threads() -> None:
    import random
    import sys
    import threading

    from densenet_spec.backends.torch_prepack import KeptMaxPool2d

    pool = KeptMaxPool2d(3, 2, 1)
    pool.max_shapes = 2  # evicting on nearly every call
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(1000):
            h, w = rng.randint(4, 12), rng.randint(4, 12)
            try:
                with torch.no_grad():
                    assert pool(torch.randn(1, 2, h, w)).shape == (1, 2, (h - 1) // 2 + 1, (w - 1) // 2 + 1)
            except BaseException as error:  # any failure in the thread is the finding
                errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        workers = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors


def test_the_max_pool_shape_survives_an_eviction_right_after_it_is_stored() -> None:
    """Another thread may evict a shape between its insertion and its use: the shape in hand is
    returned, not looked up again."""
    from densenet_spec.backends.torch_prepack import KeptMaxPool2d

    class Evicting(dict[torch.Size, torch.Size]):
        def __setitem__(self, key: torch.Size, value: torch.Size) -> None:
            super().__setitem__(key, value)
            del self[key]  # what another thread's eviction would do at that moment

    pool = KeptMaxPool2d(3, 2, 1)
    pool.__dict__["_shapes"] = Evicting()
    with torch.no_grad():
        assert pool(torch.randn(1, 2, 9, 9)).shape == (1, 2, 5, 5)


def test_vmap_over_the_optimised_model() -> None:
    """torch.func.vmap's wrapped tensors answer no layout questions: the plain paths run."""
    fast = optimize_for_inference(_trained_looking("densenet-bc-100-k12"))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = fast(x)
        per_sample = torch.func.vmap(fast)(x[:, None])
    torch.testing.assert_close(per_sample[:, 0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("optimised", [False, True], ids=["plain", "optimised"])
def test_an_input_without_its_batch_axis_or_channels_is_named(optimised: bool) -> None:
    """The optimised network says what torch's layers say of a wrong input, not an error from
    deep inside its buffers or oneDNN; a network without batch norms refuses an unbatched input
    too (its blocks would concatenate along a spatial axis)."""
    from densenet_spec import Spec

    given = {"name": "n", "growth_rate": 4, "blocks": [2, 2], "input": {"size": 32}}
    spec = Spec.model_validate(given | {"norm": {"kind": "none"}, "stem": {"kind": "cifar", "channels": 8}})
    for model in (build_model(spec).eval(), _trained_looking("densenet-bc-100-k12")):
        net = optimize_for_inference(model) if optimised else model
        with (
            torch.no_grad(),
            pytest.raises(
                ValueError, match=r"expected a batch of shape \(N, 3, H, W\), got one of shape \(3, 32, 32\)"
            ),
        ):
            net(torch.randn(3, 32, 32))
        with torch.no_grad(), pytest.raises(RuntimeError, match="to have 3 channels, but got 1 channels instead"):
            net(torch.randn(2, 1, 32, 32))
    volume = build_model("densenet121-3d").eval()
    with pytest.raises(ValueError, match=r"\(N, 1, D, H, W\), got one of shape \(2, 1, 32, 32\)"):
        volume(torch.randn(2, 1, 32, 32))
