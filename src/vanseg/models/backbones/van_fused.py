"""Inference twins of the VAN block and stage (built by their ``fuse()``; no training).

Folding (exact up to float rounding): the BatchNorm *before* ``proj_1``/``fc1`` is folded into
their input side, the layer scale into ``proj_2``/``fc2``, and the shortcut that adds the
normalised input (``Attention``) into a per-channel affine of the residual, so
``x + ls * (W BN(x) + BN(x))`` becomes ``x * s + W' x`` with a single fused multiply-add. The
patch embedding's BatchNorm goes into its conv; the stage LayerNorm runs on the NHWC view so a
channels_last layout is kept between stages.

On CPU in channels_last, :meth:`FoldedBlock.enable_cpu_kernels` (called by
:func:`vanseg.optimize`) runs GELU, gating and residual as oneDNN-fused ops, the MLP in
cache-sized row bands and the dilated depthwise conv on its 3x3 phases.

Only the ``fuse()`` methods of :mod:`vanseg.models.backbones.van` import this module, so
importing the backbone does not load the speed code (:mod:`vanseg.accel`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vanseg.accel.fast_layers import CastCache, PhaseDilatedConv, depthwise_gelu, linear_nhwc
from vanseg.accel.fold import bn_affine, fold_input_affine, scale_output
from vanseg.models.backbones.van import Block, Stage

__all__ = ["MLP_BAND_BYTES", "FastStage", "FoldedBlock"]

#: Rows of the VAN MLP's hidden map processed at once on CPU: about this many bytes, so the
#: band stays in cache between fc1, the depthwise conv and fc2 (measured on 2 cores).
MLP_BAND_BYTES = 2 * 2**20


class FoldedBlock(nn.Module):
    """A VAN :class:`~vanseg.models.backbones.van.Block` in eval mode, norms and scales folded.

    ``x + ls1 * (proj_2(LKA(GELU(proj_1(BN1(x))))) + BN1(x))`` is computed as
    ``x * s1 + proj_2'(LKA(GELU(proj_1'(x))))`` with ``s1 = 1 + ls1 * a1`` and the shift of
    ``ls1 * BN1`` in the bias of ``proj_2'``; the MLP branch as ``x + fc2'(GELU(dw(fc1'(x))))``.
    """

    def __init__(self, block: Block) -> None:
        super().__init__()
        a1, b1 = (t.double() for t in bn_affine(block.norm1))
        a2, b2 = (t.double() for t in bn_affine(block.norm2))
        ls1 = block.layer_scale_1.detach().double()
        ls2 = block.layer_scale_2.detach().double()
        attn, mlp = block.attn, block.mlp
        self.proj_1 = fold_input_affine(attn.proj_1, a1, b1)
        self.act = nn.GELU()
        self.lka = copy.deepcopy(attn.spatial_gating_unit)
        self.proj_2 = scale_output(attn.proj_2, ls1, ls1 * b1)
        self.register_buffer("residual_scale", (1.0 + ls1 * a1).float().view(1, -1, 1, 1))
        self.fc1 = fold_input_affine(mlp.fc1, a2, b2)
        self.dwconv = copy.deepcopy(mlp.dwconv.dwconv)
        self.fc2 = scale_output(mlp.fc2, ls2, torch.zeros_like(ls2))

        self._cast = CastCache()
        #: Use the oneDNN-fused CPU path (:meth:`enable_cpu_kernels`; off for export graphs).
        self.fused = False

    def enable_cpu_kernels(self) -> None:
        """Run the oneDNN-fused path on channels_last CPU input, and the dilated conv on phases.

        Call after converting the block to channels_last (the phase conv is created in it).
        """
        self.fused = True
        lka = self.lka
        lka.conv_spatial = PhaseDilatedConv(lka.conv_spatial).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.fused
            and not torch.compiler.is_compiling()  # inductor fuses by itself
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.bfloat16)
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            return self._forward_fused(x)
        attn = self.proj_2(self.lka(self.act(self.proj_1(x))))
        x = torch.addcmul(attn, x, self.residual_scale)
        return x + self.fc2(self.act(self.dwconv(self.fc1(x))))

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The same block on CPU in NHWC with GELU, gating and residual fused into oneDNN."""
        dtype, w = x.dtype, self._cast
        lka = self.lka
        xt = x.permute(0, 2, 3, 1)  # (B, H, W, C), contiguous
        u = linear_nhwc(
            xt, w(self.proj_1.weight, dtype).flatten(1), w(self.proj_1.bias, dtype), "gelu"
        )
        a = lka.conv_spatial(lka.conv0(u.permute(0, 3, 1, 2)))
        conv1 = lka.conv1
        gated = linear_nhwc(
            a.permute(0, 2, 3, 1),
            w(conv1.weight, dtype).flatten(1),
            w(conv1.bias, dtype),
            binary="mul",
            other=u,
        )
        attn = linear_nhwc(
            gated, w(self.proj_2.weight, dtype).flatten(1), w(self.proj_2.bias, dtype)
        )
        xt = attn.addcmul_(xt, w(self.residual_scale, dtype).view(-1))
        hidden = self.fc1.weight.shape[0]
        band = max(1, MLP_BAND_BYTES // (xt.shape[2] * hidden * xt.element_size()))
        if band >= xt.shape[1]:
            return self._mlp(xt, 0, xt.shape[1]).permute(0, 3, 1, 2)
        out = torch.empty_like(xt)
        for top in range(0, xt.shape[1], band):
            out[:, top : top + band] = self._mlp(xt, top, min(top + band, xt.shape[1]))
        return out.permute(0, 3, 1, 2)

    def _mlp(self, xt: torch.Tensor, top: int, bottom: int) -> torch.Tensor:
        """``x + fc2(GELU(dw(fc1(x))))`` for rows ``[top, bottom)`` of a (B, H, W, C) map.

        fc1 runs on one extra row above and below (the 3x3 depthwise conv's reach); at the
        image border the conv's own zero padding stands in for the missing row, so every band
        is exact and the hidden map of the band stays in cache.
        """
        dtype, w = xt.dtype, self._cast
        start, stop = max(top - 1, 0), min(bottom + 1, xt.shape[1])
        h = linear_nhwc(
            xt[:, start:stop], w(self.fc1.weight, dtype).flatten(1), w(self.fc1.bias, dtype)
        )
        dw = self.dwconv
        h = depthwise_gelu(h.permute(0, 3, 1, 2), dw, w(dw.weight, dtype), w(dw.bias, dtype))
        h = h[:, :, top - start : top - start + bottom - top].permute(0, 2, 3, 1)
        return linear_nhwc(
            h,
            w(self.fc2.weight, dtype).flatten(1),
            w(self.fc2.bias, dtype),
            binary="add",
            other=xt[:, top:bottom],
        )


class FastStage(nn.Module):
    """A VAN :class:`~vanseg.models.backbones.van.Stage` with a folded patch embedding and
    folded blocks; LayerNorm on the NHWC view."""

    def __init__(self, stage: Stage) -> None:
        super().__init__()
        self.patch_embed = stage.patch_embed.fuse()
        self.blocks = nn.Sequential(*(block.fuse() for block in stage.blocks))
        self.norm = copy.deepcopy(stage.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.patch_embed(x))
        # (B, H, W, C) view: contiguous in channels_last, so LayerNorm keeps the layout.
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
