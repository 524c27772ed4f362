"""Which fused CPU kernels run on this machine, per dtype, and which ones actually ran.

oneDNN's fused ops (``torch.ops.mkldnn._linear_pointwise`` and ``_convolution_pointwise``, the
ones inductor uses) exist in every x86 build of torch, but whether a primitive can be created
depends on the CPU and the dtype: bf16 inner products need AVX512-BF16 or AMX, and fail with
"could not create a primitive descriptor" on an AVX2 CPU (docs/pitfalls.md M2). So each fused
op is probed once per dtype, on a tiny input, at first use: it must run *and* agree with the
plain ops it replaces. Where it does not, callers use the plain ops and one log line says so.

:func:`record` counts what ran (fused or plain, Winograd tiles, phase-split convs) so that
``vanseg.tools.benchmark`` can print the kernels behind each timing.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

__all__ = [
    "FUSED_OPS",
    "fused_ops",
    "has_fused",
    "record",
    "recording",
    "unavailable_reason",
]

log = logging.getLogger("vanseg")

#: The oneDNN ops of the fast path, by name: ``linear`` (oneDNN's inner product on a (..., C)
#: tensor), ``linear+gelu``, ``linear+add``, ``linear*mul`` (the same with the epilogue fused)
#: and ``depthwise+gelu`` (a depthwise conv with GELU fused).
FUSED_OPS = ("linear", "linear+gelu", "linear+add", "linear*mul", "depthwise+gelu")

#: Probe tolerance (relative to the output's scale) per dtype: a kernel that runs but gives
#: other numbers than the plain op is not used either.
_PROBE_TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}

_counts: Counter[str] = Counter()
_recording = False


def _probe_cases(dtype: torch.dtype) -> dict[str, tuple[Callable[[], torch.Tensor], ...]]:
    """``name -> (fused, plain)``: the fused op and its plain equivalent on a small input."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype)

    x, w, b, other = rand(1, 3, 5, 16), rand(8, 16), rand(8), rand(1, 3, 5, 8)
    img, dw, dwb = rand(1, 3, 5, 8), rand(8, 1, 3, 3), rand(8)
    img_cl = img.permute(0, 3, 1, 2)  # (1, 8, 3, 5) in channels_last memory
    linear = torch.ops.mkldnn._linear_pointwise
    conv = torch.ops.mkldnn._convolution_pointwise
    return {
        "linear": (
            lambda: linear(x, w, b, "none", [], "none"),
            lambda: F.linear(x, w, b),
        ),
        "linear+gelu": (
            lambda: linear(x, w, b, "gelu", [], "none"),
            lambda: F.gelu(F.linear(x, w, b)),
        ),
        "linear+add": (
            lambda: linear.binary(x, other, w, b, "add"),
            lambda: F.linear(x, w, b) + other,
        ),
        "linear*mul": (
            lambda: linear.binary(x, other, w, b, "mul"),
            lambda: F.linear(x, w, b) * other,
        ),
        "depthwise+gelu": (
            lambda: conv(img_cl, dw, dwb, [1, 1], [1, 1], [1, 1], 8, "gelu", [], "none"),
            lambda: F.gelu(F.conv2d(img_cl, dw, dwb, padding=1, groups=8)),
        ),
    }


def _probe(fused: Callable[[], torch.Tensor], plain: Callable[[], torch.Tensor], dtype) -> str:
    """'' when ``fused`` runs and agrees with ``plain``; otherwise why not, in a few words."""
    try:
        with torch.no_grad():
            got, want = fused().float(), plain().float()
    except (AttributeError, NotImplementedError, RuntimeError) as err:
        return str(err).split(". ")[0].split("\n")[0]
    scale = want.abs().max().item() or 1.0
    diff = (got - want).abs().max().item() / scale
    if got.shape != want.shape or not diff <= _PROBE_TOLERANCE[dtype]:
        return f"wrong result (relative difference {diff:.1e})"
    return ""


@functools.cache
def _probe_all(dtype: torch.dtype) -> dict[str, str]:
    """``name -> ''`` for each op of :data:`FUSED_OPS` that works in ``dtype``, else the reason.

    Runs once per dtype; one log line names the ops that do not work.
    """
    if dtype not in _PROBE_TOLERANCE:
        return dict.fromkeys(FUSED_OPS, f"no fused kernels probed for {dtype}")
    reasons = {name: _probe(*case, dtype) for name, case in _probe_cases(dtype).items()}
    missing = {name: reason for name, reason in reasons.items() if reason}
    if missing:
        log.warning(
            "oneDNN fused CPU kernels unavailable in %s, using the plain ops instead: %s",
            str(dtype).removeprefix("torch."),
            "; ".join(f"{name}: {reason}" for name, reason in missing.items()),
        )
    return reasons


def fused_ops(dtype: torch.dtype) -> frozenset[str]:
    """The ops of :data:`FUSED_OPS` that run correctly here in ``dtype`` (probed once)."""
    return frozenset(name for name, reason in _probe_all(dtype).items() if not reason)


def has_fused(name: str, dtype: torch.dtype) -> bool:
    """Whether the fused op ``name`` (one of :data:`FUSED_OPS`) runs here in ``dtype``."""
    return not _probe_all(dtype)[name]


def unavailable_reason(name: str, dtype: torch.dtype) -> str:
    """Why the fused op ``name`` is not used in ``dtype`` ('' when it is)."""
    return _probe_all(dtype)[name]


def record(kernel: str, dtype: torch.dtype | None = None) -> None:
    """Count one call of ``kernel`` (in ``dtype``) while :func:`recording` is active.

    A no-op otherwise; the name is formatted only while recording (this runs on the hot path).
    """
    if _recording:
        _counts[kernel if dtype is None else f"{kernel} ({dtype})"] += 1


@contextmanager
def recording() -> Iterator[Counter[str]]:
    """Count the kernels that run inside the block; yields the (live) counter."""
    global _recording
    _counts.clear()
    _recording = True
    try:
        yield _counts
    finally:
        _recording = False
