"""Cross-entropy through a frozen output head, with its gradient taken in the forward pass.

On a 262,144-token vocabulary the logits of one micro-batch of ~160 trained positions are
168 MB in fp32, and autograd's ``log_softmax`` + ``nll_loss`` write four such tensors (the
log-probabilities kept for backward, a zero-filled gradient, its softmax backward, a cast)
into freshly mapped pages. The head is frozen, so the only gradient needed is the one for
the hidden states, and it is known in closed form once the logits are: ``(softmax - onehot)
@ W`` (times the soft-cap's derivative when the model caps its logits). This computes the
loss and that gradient in one pass over one logits buffer, worked on in place, and keeps only
the small ``(n, hidden)`` gradient for backward, scaled there by the incoming gradient.
"""

from __future__ import annotations

from typing import Any

import torch


class FrozenHeadCrossEntropy(torch.autograd.Function):
    """Summed next-token cross-entropy of ``hidden @ weight.T`` against ``targets``."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        softcap: float | None,
    ) -> torch.Tensor:
        logits = (hidden.to(weight.dtype) @ weight.t()).float()
        capped = None
        if softcap:
            capped = logits.div_(softcap).tanh_()  # kept for the derivative 1 - tanh^2
            logits = capped * softcap
        rows = torch.arange(logits.shape[0], device=logits.device)
        target_logits = logits[rows, targets]
        peak = logits.amax(dim=1, keepdim=True)
        probs = logits.sub_(peak).exp_()  # in place: no second (n, vocab) buffer
        total = probs.sum(dim=1, keepdim=True)
        loss = (total.log().squeeze(1) + peak.squeeze(1) - target_logits).sum()
        if ctx.needs_input_grad[0]:
            probs.div_(total)
            probs[rows, targets] -= 1.0
            if capped is not None:
                probs.mul_(1.0 - capped.square_())
            grad = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, None, None, None]:
        (grad,) = ctx.saved_tensors
        return grad * grad_output.to(grad.dtype), None, None, None


def frozen_head_loss(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float | None
) -> torch.Tensor:
    """The summed loss; ``weight`` must not require a gradient (it gets none)."""
    if weight.requires_grad:
        raise ValueError("frozen_head_loss needs a frozen head (weight.requires_grad is set)")
    out: torch.Tensor = FrozenHeadCrossEntropy.apply(hidden, weight, targets, softcap)
    return out
