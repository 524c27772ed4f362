"""Conv + norm + ReLU block with mmcv ``ConvModule`` semantics and state-dict names.

Submodules are named ``conv``, then ``bn`` (BatchNorm) or ``gn`` (GroupNorm), then
``activate`` (ReLU), as mmcv names them, so original checkpoints map onto this module by key
prefix alone and the original weight-decay rule (substring ``norm``, docs/reference.md §3.10)
selects the same parameters. The conv has a bias only when there is no norm.
"""

from __future__ import annotations

from torch import nn

__all__ = ["ConvNormAct", "NORM_LAYERS"]

#: Norms accepted by ``ConvNormAct(norm=...)``; each is also the submodule's name.
NORM_LAYERS = ("bn", "gn")


class ConvNormAct(nn.Sequential):
    """``Conv2d`` (+ ``BatchNorm2d``/``GroupNorm(32)``) (+ ``ReLU``), initialised as mmcv does.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size; padding is ``kernel_size // 2``.
        norm: ``"bn"`` (BatchNorm2d, eps 1e-5, momentum 0.1), ``"gn"`` (GroupNorm with
            ``num_groups`` groups, eps 1e-5) or ``None``.
        act: Append a ReLU.
        num_groups: Groups for ``norm="gn"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        norm: str | None = None,
        act: bool = True,
        num_groups: int = 32,
    ) -> None:
        super().__init__()
        if norm is not None and norm not in NORM_LAYERS:
            raise ValueError(f"norm must be one of {sorted(NORM_LAYERS)} or None, got {norm!r}")
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=kernel_size // 2,
            bias=norm is None,
        )
        if norm == "bn":
            self.bn = nn.BatchNorm2d(out_channels)
        elif norm == "gn":
            if out_channels % num_groups:
                raise ValueError(
                    f"GroupNorm({num_groups}) needs channels divisible by {num_groups}, "
                    f"got {out_channels}"
                )
            self.gn = nn.GroupNorm(num_groups, out_channels)
        if act:
            self.activate = nn.ReLU(inplace=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal conv (fan_out, ReLU gain), zero bias, norm weight 1 and bias 0."""
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        for norm in (getattr(self, "bn", None), getattr(self, "gn", None)):
            if norm is not None:
                nn.init.ones_(norm.weight)
                nn.init.zeros_(norm.bias)

    def fuse(self) -> nn.Module:
        """The inference twin: an eval BatchNorm folded into the conv, then the ReLU.

        Without a BatchNorm (GroupNorm depends on the data) this block stays, with its conv
        run as the fast path's conv (:func:`vanseg.accel.fold.fuse_module`).
        """
        from vanseg.accel.fold import fold_batchnorm, fuse_children, fuse_module

        if not hasattr(self, "bn"):
            fuse_children(self)
            return self
        layers = [fuse_module(fold_batchnorm(self.conv, self.bn))]
        if hasattr(self, "activate"):
            layers.append(nn.ReLU(inplace=True))
        return nn.Sequential(*layers)
