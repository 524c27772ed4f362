"""Non-negative matrix factorisation (NMF2D) and the Hamburger block of the Ham heads.

Geng et al., "Is Attention Better Than Matrix Decomposition?", arXiv:2109.04553, as used by
VAN-Segmentation (``mmseg/models/decode_heads/ham_head.py``; docs/reference.md §5-6).

Faithful by default: fresh bases from ``torch.rand`` on the CPU generator at every forward,
6 multiplicative-update steps in training and 7 in eval, ``inv_t = 1``, and autograd
through every step. Changes: no hard-coded ``.cuda()`` (bases move to the input's device),
the updates always run in float32 (also under autocast), and two switches:
``one_step_grad`` (the paper's one-step gradient: no autograd through the iterations) and
``eval_seed`` (bases drawn from a generator seeded at every eval forward, so one checkpoint
always gives one result).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vanseg.models.layers.conv import ConvNormAct

__all__ = ["NMF2D", "Hamburger"]


class NMF2D(nn.Module):
    """NMF of a non-negative (B, C, H, W) map as a (B, C, R) x (B, R, H*W) product.

    Args:
        rank: Number of bases (R in the paper; ``MD_R``).
        train_steps: Multiplicative-update steps in training mode.
        eval_steps: Steps in eval mode.
        inv_t: Inverse temperature of the softmax that initialises the coefficients.
        one_step_grad: Run the update steps without autograd; only the final coefficient
            update and the reconstruction are differentiated (Enjoy-Hamburger's original).
        eval_seed: If set, eval-mode bases come from a CPU generator seeded with this value at
            every forward (deterministic evaluation). ``None`` keeps the original behaviour.
        eps: Added to every denominator of the updates.
    """

    def __init__(
        self,
        rank: int = 64,
        train_steps: int = 6,
        eval_steps: int = 7,
        inv_t: float = 1.0,
        one_step_grad: bool = False,
        eval_seed: int | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.rank = rank
        self.train_steps = train_steps
        self.eval_steps = eval_steps
        self.inv_t = inv_t
        self.one_step_grad = one_step_grad
        self.eval_seed = eval_seed
        self.eps = eps

    def extra_repr(self) -> str:
        return (
            f"rank={self.rank}, train_steps={self.train_steps}, eval_steps={self.eval_steps}, "
            f"inv_t={self.inv_t}, one_step_grad={self.one_step_grad}, eval_seed={self.eval_seed}"
        )

    # Kept out of torch.compile graphs: inductor would draw from its own (Philox) generator,
    # and the bases must be the same numbers as in eager mode for the same seed.
    @torch.compiler.disable
    def init_bases(self, batch: int, dim: int, device: torch.device) -> torch.Tensor:
        """Uniform [0, 1) bases (B, D, R), L2-normalised over D, drawn on the CPU generator."""
        generator = None
        if not self.training and self.eval_seed is not None:
            generator = torch.Generator().manual_seed(self.eval_seed)
        bases = torch.rand((batch, dim, self.rank), generator=generator)
        return F.normalize(bases, dim=1).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W), non-negative -> its rank-R reconstruction, same shape and dtype."""
        b, c, h, w = x.shape
        # The updates divide by small numbers: keep them in float32 under AMP.
        with torch.autocast(device_type=x.device.type, enabled=False):
            feats = x.float().view(b, c, h * w)  # (B, D, N)
            bases = self.init_bases(b, c, x.device)  # (B, D, R)
            coef = F.softmax(self.inv_t * torch.bmm(feats.transpose(1, 2), bases), dim=-1)
            steps = self.train_steps if self.training else self.eval_steps
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.one_step_grad):
                for _ in range(steps):
                    coef = self._update_coef(feats, bases, coef)
                    bases = self._update_bases(feats, bases, coef)
            coef = self._update_coef(feats, bases, coef)  # (B, N, R)
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                # The same products as (B, N, D): a channels_last result for a channels_last
                # input, so the layout is kept downstream (no strided mixed-layout ops).
                recon = torch.bmm(coef, bases.transpose(1, 2))
                return recon.view(b, h, w, c).permute(0, 3, 1, 2).to(x.dtype)
            recon = torch.bmm(bases, coef.transpose(1, 2))  # (B, D, N)
        return recon.view(b, c, h, w).to(x.dtype)

    def _update_coef(self, x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor):
        numerator = torch.bmm(x.transpose(1, 2), bases)  # (B, N, R)
        denominator = coef.bmm(bases.transpose(1, 2).bmm(bases))
        return coef * numerator / (denominator + self.eps)

    def _update_bases(self, x: torch.Tensor, bases: torch.Tensor, coef: torch.Tensor):
        numerator = torch.bmm(x, coef)  # (B, D, R)
        denominator = bases.bmm(coef.transpose(1, 2).bmm(coef))
        return bases * numerator / (denominator + self.eps)


class Hamburger(nn.Module):
    """``relu(x + ham_out(NMF(relu(ham_in(x)))))`` with a GroupNorm on ``ham_out``.

    Args:
        channels: Width of the block (D of the NMF).
        rank: NMF rank.
        norm: Norm of ``ham_out``.
        **nmf_kwargs: Further :class:`NMF2D` arguments (steps, switches).
    """

    def __init__(self, channels: int, rank: int = 64, norm: str = "gn", **nmf_kwargs) -> None:
        super().__init__()
        self.ham_in = ConvNormAct(channels, channels, 1, norm=None, act=False)
        self.ham = NMF2D(rank=rank, **nmf_kwargs)
        self.ham_out = ConvNormAct(channels, channels, 1, norm=norm, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enjoy = F.relu(self.ham_in(x), inplace=True)
        enjoy = self.ham_out(self.ham(enjoy))
        return F.relu(x + enjoy, inplace=True)
