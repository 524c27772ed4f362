"""Visual Attention Network (VAN) backbone.

Guo et al., "Visual Attention Network", arXiv:2202.09741. Written from the description of
the segmentation backbone in Visual-Attention-Network/VAN-Segmentation (``van.py``, commit
``e2d51cd``; docs/reference.md §4). Differences from the original code: stages are modules of a
``ModuleList`` instead of ``patch_embed{s}``/``block{s}``/``norm{s}`` attributes (the key
renaming is :func:`checkpoint_filter_fn`), per-stage strides are an argument, the
drop-path rate is configurable for every size, and unused PVT arguments are gone.

The sizes (``van_tiny``..``van_large``, ``van_test``) are timm-registered functions in
:mod:`vanseg.models.backbones.van_variants`. ``Block``, ``OverlapPatchEmbed`` and ``Stage`` own a
``fuse()`` returning their folded inference twin (:mod:`vanseg.models.backbones.van_fused`,
imported only then).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from timm.layers import DropPath
from torch import nn

__all__ = ["VAN", "CLASSIFIER_PREFIX", "checkpoint_filter_fn"]

#: MLP ratios of every size (docs/reference.md §2).
MLP_RATIOS = (8, 8, 4, 4)
#: Keys of the ImageNet classifier in the original classification checkpoints.
CLASSIFIER_PREFIX = "head."


class Mlp(nn.Module):
    """1x1 conv, depthwise 3x3 conv, GELU, 1x1 conv (the depthwise conv sits before GELU)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.dwconv = DepthwiseConv(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class DepthwiseConv(nn.Module):
    """Depthwise 3x3 conv with bias (its own module to keep the ``dwconv.dwconv`` key)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv(x)


class LargeKernelAttention(nn.Module):
    """LKA: depthwise 5x5, depthwise 7x7 with dilation 3, pointwise 1x1; gates the input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class Attention(nn.Module):
    """1x1 conv, GELU, LKA, 1x1 conv, plus a shortcut from the (normalised) input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LargeKernelAttention(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


class Block(nn.Module):
    """VAN block: BN + attention and BN + MLP residual branches, each with layer scale."""

    def __init__(
        self, dim: int, mlp_ratio: int, drop_path: float = 0.0, layer_scale: float = 1e-2
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = Attention(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.layer_scale_1 = nn.Parameter(layer_scale * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1[:, None, None] * self.attn(self.norm1(x)))
        x = x + self.drop_path(self.layer_scale_2[:, None, None] * self.mlp(self.norm2(x)))
        return x

    def fuse(self) -> nn.Module:
        """The eval-mode twin with BatchNorms, layer scales and shortcut folded (inference)."""
        from vanseg.accel.fold import fuse_children
        from vanseg.models.backbones.van_fused import FoldedBlock

        folded = FoldedBlock(self)
        fuse_children(folded)  # its 1x1 convs as matrix products
        return folded


class OverlapPatchEmbed(nn.Module):
    """Strided conv (7x7 in the stem, 3x3 after) with bias, then BatchNorm."""

    def __init__(self, in_chans: int, dim: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size, stride, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))

    def fuse(self) -> nn.Conv2d:
        """The conv with the eval BatchNorm folded into its weight and bias (inference)."""
        from vanseg.accel.fold import fold_batchnorm

        return fold_batchnorm(self.proj, self.norm)


class Stage(nn.Module):
    """Patch embedding, one block per drop-path rate, then LayerNorm(eps 1e-6) over channels."""

    def __init__(
        self,
        in_chans: int,
        dim: int,
        mlp_ratio: int,
        stride: int,
        kernel_size: int,
        drop_path_rates: Sequence[float],
    ) -> None:
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_chans, dim, kernel_size, stride)
        self.blocks = nn.Sequential(*(Block(dim, mlp_ratio, dpr) for dpr in drop_path_rates))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.forward_blocks(x))

    def forward_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding and blocks: the stage's map before its LayerNorm."""
        return self.blocks(self.patch_embed(x))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The stage's closing LayerNorm over channels, (B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        # LayerNorm in the token layout, as the original does (same numbers, same MACs).
        x = self.norm(x.flatten(2).transpose(1, 2))  # (B, H*W, C)
        return x.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()

    def fuse(self) -> nn.Module:
        """The eval-mode twin: folded patch embedding and blocks, LayerNorm on the NHWC view."""
        from vanseg.models.backbones.van_fused import FastStage

        return FastStage(self)


class VAN(nn.Module):
    """VAN backbone returning the four LayerNorm-ed stage maps.

    Args:
        embed_dims: Channels of the four stages.
        depths: Blocks per stage.
        mlp_ratios: MLP hidden width as a multiple of the stage width.
        strides: Patch-embedding stride of each stage. ``(4, 2, 2, 2)`` gives features at
            1/4..1/32; ``(4, 2, 1, 1)`` gives output stride 8 (HamNet), without dilation.
        drop_path_rate: Stochastic depth of the last block; block k of all blocks gets
            ``linspace(0, drop_path_rate, sum(depths))[k]``.
        in_chans: Input image channels.

    Attributes:
        out_channels: Channels of the four outputs.
        strides: Cumulative stride (reduction) of the four outputs.
    """

    def __init__(
        self,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        depths: Sequence[int] = (3, 3, 12, 3),
        mlp_ratios: Sequence[int] = MLP_RATIOS,
        strides: Sequence[int] = (4, 2, 2, 2),
        drop_path_rate: float = 0.1,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if not (len(embed_dims) == len(depths) == len(mlp_ratios) == len(strides) == 4):
            raise ValueError(
                "VAN needs four values each for embed_dims, depths, mlp_ratios and "
                f"strides; got {embed_dims}, {depths}, {mlp_ratios}, {strides}"
            )
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        start = 0
        for i, (dim, depth) in enumerate(zip(embed_dims, depths, strict=True)):
            self.stages.append(
                Stage(
                    in_chans if i == 0 else embed_dims[i - 1],
                    dim,
                    mlp_ratios[i],
                    strides[i],
                    kernel_size=7 if i == 0 else 3,
                    drop_path_rates=dpr[start : start + depth],
                )
            )
            start += depth
        self.out_channels: tuple[int, ...] = tuple(embed_dims)
        self.strides: tuple[int, ...] = tuple(
            math.prod(strides[: i + 1]) for i in range(len(strides))
        )
        # timm's feature contract, also read by the Segmentor for the head widths.
        self.feature_info = [
            dict(num_chs=c, reduction=r, module=f"stages.{i}")
            for i, (c, r) in enumerate(zip(self.out_channels, self.strides, strict=True))
        ]
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> four maps (B, C_i, ceil(H / s_i), ceil(W / s_i))."""
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = True,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature-extraction API: the selected stage maps.

        Args:
            x: Images (B, 3, H, W).
            indices: Stages to return: all (None), the last n (int) or these indices.
            norm: Return each map after its stage's LayerNorm (what :meth:`forward` returns
                and the heads read) or, if False, before it. Later stages always consume the
                normalised map, as in the original.
            stop_early: Stop after the last requested stage.
            output_fmt: Only ``"NCHW"``.
            intermediates_only: Return only the list of maps.

        Returns:
            The maps, or ``(final map, maps)``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"VAN returns NCHW features only, got output_fmt={output_fmt!r}")
        n = len(self.stages)
        if indices is None:
            take = list(range(n))
        elif isinstance(indices, int):
            take = list(range(n - indices, n))
        else:
            take = [i % n for i in indices]
        intermediates = []
        for i, stage in enumerate(self.stages):
            before_norm = stage.forward_blocks(x)
            x = stage.normalize(before_norm)
            if i in take:
                intermediates.append(x if norm else before_norm)
            if stop_early and i >= max(take):
                break
        if intermediates_only:
            return intermediates
        return x, intermediates


def _init_weights(m: nn.Module) -> None:
    """Original init: conv normal(0, sqrt(2 / fan_out)), LayerNorm 1/0, BN default."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def checkpoint_filter_fn(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """Map an original VAN state dict to this module's keys (the one place that does it).

    Accepts the keys of the classification checkpoints and the backbone keys of the
    segmentation checkpoints (without ``backbone.``): strips a ``module.`` prefix, drops the
    ImageNet classifier ``head.*`` and renames ``patch_embed{s}``, ``block{s}.{i}`` and
    ``norm{s}`` to ``stages.{s-1}.patch_embed``, ``.blocks.{i}`` and ``.norm``. Any other key
    is returned unchanged so that a strict load reports it.

    Args:
        state_dict: Tensors by original key (already unwrapped from ``state_dict``).
        model: The model the weights are for (timm's filter signature). The classifier is
            kept only if this model has a ``head`` of its own; a VAN backbone has none.
    """
    keep_classifier = model is not None and hasattr(model, CLASSIFIER_PREFIX.rstrip("."))
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith(CLASSIFIER_PREFIX) and not keep_classifier:
            continue
        out[_rename_backbone_key(key)] = value
    return out


def _rename_backbone_key(key: str) -> str:
    first, _, rest = key.partition(".")
    for prefix, new in (("patch_embed", "patch_embed"), ("block", "blocks"), ("norm", "norm")):
        index = first[len(prefix) :]
        if first.startswith(prefix) and index.isdigit() and 1 <= int(index) <= 4:
            return f"stages.{int(index) - 1}.{new}.{rest}"
    return key
