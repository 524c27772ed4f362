"""Winograd 3x3 convolution for inference (Lavin & Gray, arXiv:1509.09308).

``WinogradConv2d(conv)`` computes ``F.conv2d(x, conv.weight, conv.bias, padding=1)`` for a dense
3x3, stride-1 convolution with fewer multiplications. The output is cut into ``m x m`` tiles
(F(m x m, 3x3), ``m`` = 4 or 2), each read from an ``a x a`` input tile (``a = m + 2``):

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* is the product at each of the a*a positions)

The filters ``G g G^T`` are transformed once (float64) at construction. At run time each chunk
of tile rows is copied into a zero-padded strip, transformed by a stride-``m`` convolution
with the ``a*a`` fixed kernels of ``kron(B^T, B^T)`` (oneDNN, in blocks of channels; faster
than gathering the overlapping tiles and a GEMM), multiplied with the filters in ONE batched
matmul over the ``a*a`` positions (``(a*a, O, C) @ (a*a, C, T)`` for ``T`` tiles) and
transformed back by one GEMM with ``kron(A^T, A^T)``. F(4x4) needs 36 products per 4x4
outputs instead of 144 (4x fewer MACs), F(2x2) 16 per 2x2 instead of 36 (2.25x).

Chunks keep every temporary small and reuse memory: glibc serves requests above 32 MiB with a
fresh ``mmap`` on every call, and page-faulting that memory costs as much as the arithmetic.
The strip, transformed input, products and output tiles live in one buffer per thread that
persists across calls and is shared by all instances; only the convolution's output per block
of channels (a few MiB) is allocated afresh, and glibc reuses it from the heap.

Under ``torch.autocast`` the transforms stay in float32 and only the batched matmul runs in the
autocast dtype (operands rounded to it; CPU matmuls also round their result to it), with the
``autocast_tile`` (F(2x2) by default, see :class:`WinogradConv2d`); the result has the autocast
dtype, as ``F.conv2d`` under autocast would. Inference only: no trainable parameters, no
gradient.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vanseg.accel.kernels import record as record_kernel

__all__ = [
    "TILE_POINTS",
    "TILE_SIZES",
    "WinogradConv2d",
    "supports",
    "winograd_matrices",
    "winograd_pays_off",
]

#: Interpolation points of F(m x m, 3x3) for each output tile size ``m`` (plus infinity).
#: For F(4x4), 1/2 instead of the usual 2 (or -1/2 instead of -2) cuts the float32 error about
#: 3-fold (9e-6 -> 3e-6 of the output range on 512 channels), as Barabasz et al. (2018) found.
TILE_POINTS: dict[int, tuple[float, ...]] = {2: (0.0, 1.0, -1.0), 4: (0.0, 1.0, -1.0, 0.5, -2.0)}
#: Output tile sizes ``m``.
TILE_SIZES = tuple(TILE_POINTS)

_MIB = 1 << 20


def winograd_pays_off(
    in_channels: int,
    out_channels: int,
    height: int,
    width: int,
    min_gmacs: float = 1.0,
    min_side: int = 16,
) -> bool:
    """Whether Winograd beats ``F.conv2d`` for this 3x3 conv (measured on a 2-core x86 CPU).

    It won for every UperNet conv of van_base at 512x512 (2.4 to 155 GMAC, 16x16 to 128x128,
    512+ channels) and lost below about 1 GMAC (512->512 at 8x8, 128->128 at 64x64) or below
    16x16 (too few tiles per matmul); see ``python -m vanseg.tools.bench_winograd``.
    """
    gmacs = in_channels * out_channels * 9 * height * width / 1e9
    return gmacs >= min_gmacs and min(height, width) >= min_side


def winograd_matrices(tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B^T, G, A^T)`` of F(tile x tile, 3x3) in float64: (a, a), (a, 3), (tile, a).

    Toom-Cook construction: evaluating polynomials at the points of :data:`TILE_POINTS` and at
    infinity gives the Vandermonde-like ``V_k`` (a x k); then ``G = V_3``, ``A^T = V_tile^T``
    and ``B^T = V_a^{-T}`` (correlation is the transpose of polynomial multiplication).
    """
    if tile not in TILE_POINTS:
        raise ValueError(f"Winograd tile must be one of {TILE_SIZES}, got {tile}")
    points = TILE_POINTS[tile]
    a = tile + 2

    def vandermonde(k: int) -> torch.Tensor:
        rows = [[p**i for i in range(k)] for p in points] + [[0.0] * (k - 1) + [1.0]]
        return torch.tensor(rows, dtype=torch.float64)

    return torch.linalg.inv(vandermonde(a)).T.contiguous(), vandermonde(3), vandermonde(tile).T


def _problems(conv: nn.Module) -> list[str]:
    """What keeps ``conv`` from being a Winograd conv (empty: it can be one)."""
    if not isinstance(conv, nn.Conv2d):
        return [f"type {type(conv).__name__} (need nn.Conv2d)"]
    problems = []
    wanted = {
        "kernel_size": (3, 3),
        "stride": (1, 1),
        "padding": (1, 1),
        "dilation": (1, 1),
        "groups": 1,
    }
    for attr, value in wanted.items():
        if getattr(conv, attr) != value:
            problems.append(f"{attr}={getattr(conv, attr)} (need {value})")
    if conv.padding_mode != "zeros":
        problems.append(f"padding_mode={conv.padding_mode!r} (need 'zeros')")
    return problems


def supports(conv: nn.Module) -> bool:
    """Whether :class:`WinogradConv2d` can replace ``conv`` (dense 3x3, stride 1, padding 1)."""
    return not _problems(conv)


def _check_conv(conv: nn.Module, name: str) -> None:
    problems = _problems(conv)
    if problems:
        raise ValueError(
            f"WinogradConv2d needs a dense 3x3 conv with stride 1, padding 1, dilation 1, "
            f"groups 1; {name} {conv} has {', '.join(problems)}. Keep it as it is."
        )


class WinogradConv2d(nn.Module):
    """A frozen 3x3 / stride 1 / padding 1 convolution computed with Winograd F(m x m, 3x3).

    Args:
        conv: The ``nn.Conv2d`` to replace (kernel 3x3, stride 1, padding 1, dilation 1,
            groups 1, zero padding; bias optional). It is not modified.
        tile: Output tile size ``m`` in float32: 4 (4x fewer MACs) or 2 (2.25x fewer).
        autocast_tile: Tile size under autocast (bf16/fp16 matmul). CPU matmuls round their
            products to bf16 before the output transform, whose large coefficients for
            F(4x4) amplify that rounding to ~3% of the output range (10x ``F.conv2d`` under
            autocast); F(2x2) stays within about twice ``F.conv2d``'s error. Its filters are
            kept too when it differs from ``tile``.
        workspace_bytes: Budget of one chunk of tile rows (padded strip, transformed input,
            products, output tiles), all in a buffer shared by the instances of a thread.
            128 MiB measured faster than 32 MiB (fewer, larger matmuls).
        name: How errors name the conv (e.g. its attribute path in the model).
        min_gmacs: Calls with fewer multiply-adds per image run ``F.conv2d`` with the
            original weight instead (see :func:`winograd_pays_off`).
        min_side: Calls with H or W below it run ``F.conv2d`` too. ``min_gmacs=0,
            min_side=1`` always use Winograd.

    Input (N, C, H, W) in any memory format, float32 (or any float dtype, computed in float32);
    output (N, O, H, W), NCHW-contiguous, float32 or the autocast dtype under autocast.
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        tile: int = 4,
        autocast_tile: int = 2,
        workspace_bytes: int = 128 * _MIB,
        name: str = "conv",
        min_gmacs: float = 1.0,
        min_side: int = 16,
    ) -> None:
        super().__init__()
        _check_conv(conv, name)
        self.tile = tile
        self.autocast_tile = autocast_tile
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.workspace_bytes = workspace_bytes
        self.min_gmacs = min_gmacs
        self.min_side = min_side
        self.register_buffer("weight", conv.weight.detach().float().clone())  # for fallback
        device = conv.weight.device
        weight = conv.weight.detach().to("cpu", torch.float64)
        for m in sorted({tile, autocast_tile}):
            bt, g, at = winograd_matrices(m)
            a = m + 2
            # U[i, j, o, c] = (G g[o, c] G^T)[i, j]  ->  (a*a, O, C)
            u = torch.einsum("ik,ockl,jl->ijoc", g, weight, g).reshape(a * a, *weight.shape[:2])
            self.register_buffer(f"filters_{m}", u.float().to(device))
            self.register_buffer(f"input_transform_{m}", torch.kron(bt, bt).float().to(device))
            self.register_buffer(f"output_transform_{m}", torch.kron(at, at).float().to(device))
        bias = conv.bias.detach().float().clone() if conv.bias is not None else None
        self.register_buffer("bias", bias)
        self._cast: tuple[torch.Tensor, torch.dtype, torch.Tensor] | None = None

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, tile={self.tile}, "
            f"autocast_tile={self.autocast_tile}"
        )

    def _filters(self, tile: int, dtype: torch.dtype) -> torch.Tensor:
        """The transformed filters in ``dtype``, cast once and cached (until replaced)."""
        filters = getattr(self, f"filters_{tile}")
        if dtype == filters.dtype:
            return filters
        cached = self._cast
        if cached is None or cached[0] is not filters or cached[1] != dtype:
            cached = (filters, dtype, filters.to(dtype))
            self._cast = cached
        return cached[2]

    def _chunk_bytes(self, tile: int, rows: int, tiles_w: int, mm_bytes: int) -> int:
        """Workspace bytes for ``rows`` tile rows of ``tiles_w`` tiles (all views of a chunk)."""
        m, c, o = tile, self.in_channels, self.out_channels
        a2, tiles = (m + 2) ** 2, rows * tiles_w
        strip_bytes = c * (rows * m + 2) * (tiles_w * m + 2) * 4
        per_tile = a2 * c * mm_bytes  # transformed input (matmul operand)
        per_tile += a2 * o * (mm_bytes + (4 if mm_bytes < 4 else 0)) + m * m * o * 4
        return per_tile * tiles + strip_bytes + 64 * 8

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """(N, C, H, W) -> (N, O, H, W): ``F.conv2d(x, weight, bias, padding=1)``.

        ``x`` may also be a list of (N, C_i, H, W) maps whose channels add up to C: the conv
        of their concatenation, read part by part (no concatenated copy is made).
        """
        parts = [x] if isinstance(x, torch.Tensor) else list(x)
        shapes = [tuple(p.shape) for p in parts]
        if (
            any(p.dim() != 4 or p.shape[0] != parts[0].shape[0] for p in parts)
            or any(p.shape[2:] != parts[0].shape[2:] for p in parts)
            or sum(p.shape[1] for p in parts) != self.in_channels
        ):
            raise ValueError(
                f"WinogradConv2d({self.in_channels}, {self.out_channels}) expects (N, "
                f"{self.in_channels}, H, W) input (or parts of it along the channels), got "
                f"shape(s) {shapes}"
            )
        if not winograd_pays_off(
            self.in_channels, self.out_channels, *parts[0].shape[2:], self.min_gmacs, self.min_side
        ):
            record_kernel("conv2d 3x3 (Winograd not worth it at this size)")
            whole = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            return F.conv2d(whole, self.weight, self.bias, padding=1).contiguous()
        device_type = parts[0].device.type
        mm_dtype = torch.float32
        if torch.is_autocast_enabled(device_type):
            mm_dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False), torch.no_grad():
            tile = self.tile if mm_dtype == torch.float32 else self.autocast_tile
            record_kernel(_WINOGRAD_NAMES[tile], mm_dtype)
            return self._forward(parts, tile, mm_dtype)

    def _forward(self, parts: list[torch.Tensor], tile: int, mm_dtype: torch.dtype) -> torch.Tensor:
        x = parts[0]
        n, _, h, w = x.shape
        c = self.in_channels
        m, a, o = tile, tile + 2, self.out_channels
        tiles_h, tiles_w = math.ceil(h / m), math.ceil(w / m)
        mm_bytes = torch.finfo(mm_dtype).bits // 8
        rows = tiles_h
        while rows > 1 and self._chunk_bytes(m, rows, tiles_w, mm_bytes) > self.workspace_bytes:
            rows -= 1
        rows = math.ceil(tiles_h / math.ceil(tiles_h / rows))  # chunks of (nearly) equal size
        filters = self._filters(m, mm_dtype)  # (a*a, O, C)
        # B^T d B of every a x a tile (stride m) is a stride-m conv with a*a fixed kernels.
        kernels = getattr(self, f"input_transform_{m}").view(a * a, 1, a, a)
        output_transform = getattr(self, f"output_transform_{m}")  # (m*m, a*a)
        out = x.new_empty((n, o, h, w), dtype=mm_dtype)
        # Whole tiles are written into a view of the output; a padded one when H or W is not
        # a multiple of the tile (cropped, i.e. copied, at the end).
        padded = h % m or w % m
        full = x.new_empty((n, o, tiles_h * m, tiles_w * m), dtype=mm_dtype) if padded else out
        ws = _Workspace(x.device)
        for i in range(n):
            for r0 in range(0, tiles_h, rows):
                r1 = min(r0 + rows, tiles_h)
                tr, t = r1 - r0, (r1 - r0) * tiles_w
                top, bottom = r0 * m - 1, r1 * m + 1  # input rows of the chunk (exclusive end)
                lo, hi = max(top, 0), min(bottom, h)
                ws.reset()
                strip = ws.take((c, 1, tr * m + 2, tiles_w * m + 2), torch.float32)
                if r0 == 0 or r1 == tiles_h:  # zero padding (the rest is overwritten)
                    strip[:, :, : lo - top].zero_()
                    strip[:, :, hi - top :].zero_()
                    strip[..., 0].zero_()
                    strip[..., w + 1 :].zero_()
                c0 = 0
                for part in parts:  # (copy_ converts a bf16 part to float32)
                    c1 = c0 + part.shape[1]
                    strip[c0:c1, 0, lo - top : hi - top, 1 : w + 1] = part[i, :, lo:hi]
                    c0 = c1
                operand = ws.take((a * a, c, t), mm_dtype)
                # Channel blocks keep the convolution's output small: cache-resident, and far
                # below the 32 MiB above which glibc would mmap (page-fault) it on every call.
                block = max(1, min(c, _BLOCK_BYTES // (a * a * t * 4)))
                for c0 in range(0, c, block):
                    c1 = min(c0 + block, c)
                    v = F.conv2d(strip[c0:c1], kernels, stride=m).view(c1 - c0, a * a, t)
                    operand[:, c0:c1] = v.transpose(0, 1)  # (a*a, C, T), cast to mm_dtype
                prod = ws.take((a * a, o, t), mm_dtype)
                torch.bmm(filters, operand, out=prod)
                if mm_dtype != torch.float32:
                    prod = ws.take(prod.shape, torch.float32).copy_(prod)
                y = ws.take((m * m, o, t), torch.float32)
                torch.mm(output_transform, prod.view(a * a, -1), out=y.view(m * m, -1))
                if self.bias is not None:
                    y += self.bias.view(-1, 1)
                tiles_y = y.view(m, m, o, tr, tiles_w).permute(2, 3, 0, 4, 1)
                full[i, :, r0 * m : r1 * m].view(o, tr, m, tiles_w, m).copy_(tiles_y)
        if padded:
            out.copy_(full[:, :, :h, :w])
        return out


#: Kernel names for `vanseg.accel.kernels.record`, per output tile size.
_WINOGRAD_NAMES = {m: f"Winograd F({m}x{m},3x3)" for m in (2, 4)}
#: Size of the input transform's output per channel block (a fresh allocation).
_BLOCK_BYTES = 4 * _MIB
_LOCAL = threading.local()


class _Workspace:
    """Views carved from one cached byte buffer per device and thread (reused across calls).

    All Winograd convs of a model share it (one thread runs one at a time); it is freed with
    its thread.
    """

    def __init__(self, device: torch.device) -> None:
        if not hasattr(_LOCAL, "buffers"):
            _LOCAL.buffers = {}
        self.buffers: dict[str, torch.Tensor] = _LOCAL.buffers
        self.key = str(device)
        self.device = device
        self.offset = 0

    def reset(self) -> None:
        self.offset = 0

    def take(self, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised tensor of ``shape`` and ``dtype`` (64-byte aligned)."""
        nbytes = math.prod(shape) * (torch.finfo(dtype).bits // 8)
        start = -(-self.offset // 64) * 64
        end = start + nbytes
        buffer = self.buffers.get(self.key)
        if buffer is None or buffer.numel() < end:
            # Growing drops the old buffer; views taken before stay valid (they keep it alive).
            buffer = torch.empty(max(end, _MIB), dtype=torch.uint8, device=self.device)
            self.buffers[self.key] = buffer
        self.offset = end
        return buffer[start:end].view(dtype).view(shape)
