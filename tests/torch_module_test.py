"""The torch backend: naming, initialisation, agreement with the IR, execution options."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from densenet_spec import IR, Spec, build_model, compile_spec, load_spec
from densenet_spec.backends.torch_module import DenseNet

from .compiler_test import specs
from .conftest import FIXTURES, PRESETS

SMALL = Spec.model_validate(
    {
        "name": "small-bc",
        "input": {"size": 32},
        "stem": {"kind": "cifar"},
        "growth_rate": 6,
        "blocks": [3, 3],
        "num_classes": 5,
    }
)


def _input(ir: IR, batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, ir.info.input_channels, *ir.info.input_size, generator=generator)


def test_densenet121_state_dict_matches_torchvision() -> None:
    fixture = json.loads((FIXTURES / "torchvision_densenet121_state.json").read_text())
    expected = [(key, list(shape)) for key, shape in fixture["entries"]]
    model = build_model("densenet121")
    assert [(key, list(value.shape)) for key, value in model.state_dict().items()] == expected


def test_torchvision_style_checkpoint_loads_strictly() -> None:
    fixture = json.loads((FIXTURES / "torchvision_densenet121_state.json").read_text())
    state = {key: torch.zeros(shape) for key, shape in fixture["entries"]}
    state = {k: (v.long() if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
    result = build_model("densenet121").load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("name", PRESETS)
def test_model_agrees_with_ir(name: str) -> None:
    """Parameter count, every node's output shape (forward hooks) and FLOPs = 2 x MACs."""
    assert_model_agrees_with_ir(compile_spec(load_spec(name)))


def assert_model_agrees_with_ir(ir: IR, batch: int = 1) -> None:
    """The built model has the IR's parameters, state_dict shapes, layer output shapes and MACs."""
    model = build_model(ir, seed=0).eval()
    assert sum(p.numel() for p in model.parameters()) == ir.params
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == ir.state_shapes()
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        model.get_submodule(layer.name).register_forward_hook(
            lambda _m, _i, out, name=layer.name: shapes.__setitem__(name, tuple(out.shape))
        )
        for layer in ir.layers()
    ]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(_input(ir, batch=batch))
    for hook in hooks:
        hook.remove()
    for layer in ir.layers():
        size = () if layer.kind == "classifier" else layer.out_size
        assert shapes[layer.name] == (batch, layer.out_channels, *size), layer.name
    assert counter.get_total_flops() == 2 * batch * ir.macs  # FLOPs = 2 x MACs, per input


def test_initialisation_follows_the_reference() -> None:
    model = build_model("densenet121", seed=0)
    conv = model.features.denseblock3.denselayer5.conv1
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
        if isinstance(module, nn.Conv2d):
            assert module.bias is None
    assert torch.all(model.classifier.bias == 0)


def test_seed_makes_weights_deterministic() -> None:
    a, b, c = build_model(SMALL, seed=3), build_model(SMALL, seed=3), build_model(SMALL, seed=4)
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_seeded_builds_in_threads_draw_what_one_thread_does() -> None:
    """Seeded builds in four threads at once: each seed's weights as built alone (their draws
    from torch's global generator interleaved before, 100 of 596 tensors differing)."""
    import threading

    from densenet_spec import as_ir

    ir = as_ir("densenet-bc-100-k12")
    alone = {seed: build_model(ir, seed=seed).state_dict() for seed in range(4)}
    built: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def work(seed: int) -> None:
        for round_ in range(3):
            built[seed, round_] = build_model(ir, seed=seed).state_dict()

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 12
    for (seed, _), state in built.items():
        assert all(torch.equal(state[key], value) for key, value in alone[seed].items()), seed


def test_build_model_accepts_spec_path_and_preset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nextends: densenet-40-k12\nnum_classes: 7\n")
    assert build_model(path).classifier.out_features == 7
    assert isinstance(build_model("densenet-40-k12"), DenseNet)
    assert build_model(SMALL).classifier.out_features == 5


@pytest.mark.parametrize("spec", [SMALL, SMALL.model_copy(update={"bottleneck_width": None, "dropout": 0.0})])
def test_memory_efficient_matches_plain(spec: Spec) -> None:
    plain = build_model(spec, seed=0).train()
    lean = build_model(spec, seed=0, memory_efficient=True).train()
    for step in range(2):
        x = _input(compile_spec(spec), batch=4, seed=step)
        out_plain, out_lean = plain(x), lean(x)
        out_plain.square().mean().backward()
        out_lean.square().mean().backward()
        torch.testing.assert_close(out_lean, out_plain, atol=1e-5, rtol=0)
        for (key, p), q in zip(plain.named_parameters(), lean.parameters(), strict=True):
            assert p.grad is not None and q.grad is not None
            torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=0, msg=key)
    # Running statistics move once per forward, not again when recomputed.
    for (key, a), b in zip(plain.named_buffers(), lean.buffers(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0, msg=key)


def _twice_backward(model: DenseNet, x: torch.Tensor, how: str) -> torch.Tensor:
    """Backward passes that run a graph more than once: what saliency, Jacobians and gradient
    penalties do. Returns the input gradient(s) they give."""
    x = x.clone().requires_grad_()
    out = model(x)
    if how == "retain_graph":  # the same loss twice: gradients accumulate 2x
        loss = out.square().mean()
        loss.backward(retain_graph=True)
        loss.backward()
        assert x.grad is not None
        return x.grad
    if how == "saliency":  # one input gradient per class, from one forward
        grads = [torch.autograd.grad(out[:, c].sum(), x, retain_graph=True)[0] for c in range(out.shape[1])]
        return torch.stack(grads)
    # create_graph: a gradient penalty, differentiated once more
    (grad,) = torch.autograd.grad(out.square().mean(), x, create_graph=True)
    grad.square().sum().backward()
    return grad.detach()


@pytest.mark.parametrize("how", ["retain_graph", "saliency", "create_graph"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["shared-buffer", "channels-last"])
def test_memory_efficient_runs_a_graph_more_than_once_like_plain(how: str, channels_last: bool) -> None:
    plain = build_model(SMALL, seed=0).double().train()
    lean = build_model(SMALL, seed=0, memory_efficient=True, channels_last=channels_last).double().train()
    x = _input(compile_spec(SMALL), batch=3).double()
    torch.testing.assert_close(_twice_backward(lean, x, how), _twice_backward(plain, x, how))
    for (key, p), q in zip(plain.named_parameters(), lean.parameters(), strict=True):
        if p.grad is None:  # saliency touches no parameter gradient
            assert q.grad is None, key
            continue
        assert q.grad is not None, key
        torch.testing.assert_close(q.grad, p.grad, msg=key)
    for (key, a), b in zip(plain.named_buffers(), lean.buffers(), strict=True):
        torch.testing.assert_close(b, a, msg=key)


def test_dropout_only_in_training() -> None:
    spec = SMALL.model_copy(update={"dropout": 0.5})
    model = build_model(spec, seed=0)
    x = _input(compile_spec(spec), batch=2)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


def test_channels_last_gives_the_same_outputs() -> None:
    ir = compile_spec(load_spec("densenet-bc-100-k12"))
    model = build_model(ir, seed=0).eval()
    x = _input(ir, batch=2)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_cpu_autocast_bfloat16_runs() -> None:
    model = build_model(SMALL, seed=0).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_input(compile_spec(SMALL), batch=2))
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()


@pytest.mark.slow
def test_torch_compile_runs_and_agrees() -> None:
    model = build_model(SMALL, seed=0).eval()
    x = _input(compile_spec(SMALL), batch=2)
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("memory_efficient", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_forward_backward(memory_efficient: bool, dtype: torch.dtype) -> None:
    model = build_model("densenet121", seed=0, memory_efficient=memory_efficient).cuda()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=dtype):
        out = model(x)
    assert out.dtype == dtype
    out.float().logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_random_specs_torch_is_the_oracle_of_the_ir(spec: Spec) -> None:
    ir = compile_spec(spec)
    model = build_model(ir, seed=0).eval()
    assert sum(p.numel() for p in model.parameters()) == ir.params
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in ir.layers():
        model.get_submodule(layer.name).register_forward_hook(
            lambda _m, _i, out, name=layer.name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(_input(ir, batch=2))
    for layer in ir.layers():
        expected = (layer.out_channels,) if layer.kind == "classifier" else (layer.out_channels, *layer.out_size)
        assert shapes[layer.name] == expected, layer.name
    assert counter.get_total_flops() == 2 * 2 * ir.macs  # batch of 2


def test_memory_efficient_with_sync_batchnorm_runs_the_plain_path() -> None:
    lean = nn.SyncBatchNorm.convert_sync_batchnorm(build_model(SMALL, seed=0, memory_efficient=True)).train()
    plain = build_model(SMALL, seed=0).train()
    x = _input(compile_spec(SMALL), batch=2)
    torch.testing.assert_close(lean(x), plain(x), atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:DeprecationWarning")
@pytest.mark.parametrize("memory_efficient", [False, True])
def test_graph_capture_of_the_plain_model(memory_efficient: bool) -> None:
    """torch.export and torch.jit.trace capture the model as README says (torch.compile: see
    compile_test.py); the captured graphs compute the model's outputs."""
    model = build_model(SMALL, seed=0, memory_efficient=memory_efficient).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        exported = torch.export.export(model, (x,)).module()
        torch.testing.assert_close(exported(x), expected)
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(traced(x), expected)
