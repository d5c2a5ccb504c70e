"""The PEFT backend's two training shortcuts give what the plain torch ops give.

``backends.head_loss`` (loss and hidden-state gradient of a frozen output head in one
pass) against ``cross_entropy`` through autograd; ``backends.cpu_dropout`` (masks drawn
four per random word) against what dropout must do: keep 1 - p, scale, pass gradients
through the kept elements only, nothing in eval mode, reproducible under a seed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from backends.cpu_dropout import CpuDropout, use_cpu_dropout  # noqa: E402
from backends.head_loss import frozen_head_loss  # noqa: E402


def reference_loss(hidden, weight, targets, softcap):  # type: ignore[no-untyped-def]
    logits = (hidden @ weight.t()).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_frozen_head_loss_and_gradient_equal_autograd(softcap: float | None) -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(97, 16, generator=generator)
    hidden = torch.randn(11, 16, generator=generator)
    targets = torch.randint(0, 97, (11,), generator=generator)
    mine = hidden.clone().requires_grad_(True)
    theirs = hidden.clone().requires_grad_(True)
    loss = frozen_head_loss(mine, weight, targets, softcap)
    expected = reference_loss(theirs, weight, targets, softcap)
    torch.testing.assert_close(loss, expected)
    (loss * 2.5).backward()  # the incoming gradient scales the stored one
    (expected * 2.5).backward()
    torch.testing.assert_close(mine.grad, theirs.grad)
    assert weight.grad is None


def test_frozen_head_loss_without_gradients_and_with_a_trained_head() -> None:
    weight = torch.randn(50, 8)
    hidden = torch.randn(5, 8)
    targets = torch.tensor([0, 3, 49, 7, 7])
    with torch.no_grad():
        loss = frozen_head_loss(hidden, weight, targets, None)
    torch.testing.assert_close(loss, reference_loss(hidden, weight, targets, None))
    with pytest.raises(ValueError, match="frozen head"):
        frozen_head_loss(hidden, weight.requires_grad_(True), targets, None)


def test_frozen_head_loss_under_bf16_autocast_is_close_to_fp32() -> None:
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(300, 32, generator=generator) / 4
    hidden = torch.randn(9, 32, generator=generator, requires_grad=True)
    targets = torch.randint(0, 300, (9,), generator=generator)
    exact = reference_loss(hidden, weight, targets, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = frozen_head_loss(hidden, weight.bfloat16(), targets, None)
    loss.backward()
    assert float(loss) == pytest.approx(float(exact), rel=2e-2)
    assert hidden.grad is not None and hidden.grad.dtype == torch.float32


def test_cpu_dropout_keeps_one_minus_p_scaled_and_passes_gradients_through_kept() -> None:
    dropout = CpuDropout(0.1)
    x = torch.full((1000, 1000), 2.0, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x)
    kept = y != 0
    assert float(kept.float().mean()) == pytest.approx(0.9, abs=0.002)
    torch.testing.assert_close(y[kept].detach(), torch.full_like(y[kept], 2.0 / 0.9))
    y.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad != 0, kept)
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.9))
    torch.manual_seed(0)
    assert torch.equal(dropout(x), y)  # the seeded generator decides the mask
    columns = kept.float().mean(dim=0)  # no position is favoured (four uniforms per word)
    assert float(columns.min()) > 0.85 and float(columns.max()) < 0.95


def test_cpu_dropout_is_identity_in_eval_and_at_zero_and_rejects_bad_p() -> None:
    x = torch.randn(4, 7)
    dropout = CpuDropout(0.5).eval()
    assert dropout(x) is x
    assert CpuDropout(0.0)(x) is x
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
            CpuDropout(bad)


def test_cpu_dropout_masks_in_the_autocast_dtype() -> None:
    x = torch.randn(3, 64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = CpuDropout(0.2)(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32


def test_lora_layers_get_cpu_dropout(tiny_llama_dir: Path) -> None:
    from backends import torch_model
    from backends.base import TrainSpec

    plan = torch_model.resolve_precision("fp32", torch.device("cpu"))
    base = torch_model.load_model(tiny_llama_dir, plan)
    model = torch_model.add_lora(base, TrainSpec(model_dir=tiny_llama_dir, dropout=0.1))
    dropouts = [
        d for m in model.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()
    ]
    assert dropouts and all(isinstance(d, CpuDropout) and d.p == 0.1 for d in dropouts)
    assert use_cpu_dropout(model) == 0  # already replaced: nothing left to swap
