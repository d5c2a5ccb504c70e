"""Dropout for the LoRA inputs that draws its CPU masks four at a time.

peft puts an ``nn.Dropout`` before every adapter (126 on the 270M model) and on the CPU
``torch.nn.functional.dropout`` draws one random number per element: 1.05 ms for one
(2, 90, 640) input on this machine, ~10 % of a training step. Here one 64-bit random word
gives four 16-bit uniforms, so the same mask costs 0.2 ms. Each element is kept with
probability ``1 - p`` (``p`` rounded to a multiple of 1/65536) and scaled by ``1 / (1 - p)``,
as ``nn.Dropout`` does; masks come from torch's seeded generator, so a run stays
reproducible. Tensors on other devices use ``torch.nn.functional.dropout`` (fast there).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

_WORD = 1 << 63
_LEVELS = 1 << 16


class CpuDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        # An int16 uniform in [-32768, 32767] is dropped below this: P = round(p * 65536) / 65536.
        self.threshold = round(p * _LEVELS) - _LEVELS // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        if torch.is_autocast_enabled("cpu"):
            # The adapter's first matmul reads its input in the autocast dtype anyway:
            # cast once here and mask half the bytes (same numbers up to rounding).
            x = x.to(torch.get_autocast_dtype("cpu"))
        count = x.numel()
        words = torch.randint(-_WORD, _WORD - 1, ((count + 3) // 4,), dtype=torch.int64)
        keep = words.view(torch.int16)[:count].view(x.shape) >= self.threshold
        return x.mul(keep).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_cpu_dropout(model: Any) -> int:
    """Replace the ``nn.Dropout`` of every LoRA layer's ``lora_dropout``; returns how many."""
    replaced = 0
    for module in model.modules():
        branches = getattr(module, "lora_dropout", None)
        if not isinstance(branches, nn.ModuleDict):
            continue
        for name, dropout in branches.items():
            if isinstance(dropout, nn.Dropout) and dropout.p > 0:
                branches[name] = CpuDropout(dropout.p)
                replaced += 1
    return replaced
