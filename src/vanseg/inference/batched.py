"""Forward passes of several images as one batch, where the head allows it.

A pass's network input depends only on its image and the protocol
(`vanseg.inference.preprocess.pass_inputs`), so passes of equal input size, of one image (the
flipped twin of a scale) or of several, can run as one batch. Whether that changes the result
depends on the head:

* Heads without NMF (UperNet, Semantic FPN): every layer works per image in eval mode, so each
  image's logits are those of batch 1 up to float rounding. They are not bit for bit the same:
  the convolution kernels block their work by batch size (measured on CPU: up to about 1e-6 of
  the logits), so a mask pixel can differ only where two classes tie within that rounding.
* Ham heads (Light-Ham, HamNet): `NMF2D.init_bases` draws the bases of a whole batch at once,
  ``torch.rand((B, D, R))``; with ``eval_seed`` the first image gets the numbers of batch 1 but
  the others get the following numbers of the same stream, so their masks change. These heads
  always run at batch 1 (:func:`usable_batch_size`).

With ``batch_size=1`` every pass runs alone, in the protocol's order, image after image:
exactly the forwards that `vanseg.inference.passes.predict_mask` makes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from vanseg.errors import ConfigError
from vanseg.inference.passes import pass_logits
from vanseg.inference.protocol import InferenceProtocol
from vanseg.models.layers.matrix_decomposition import NMF2D

__all__ = ["Passes", "batch_exact", "run_passes", "usable_batch_size"]

log = logging.getLogger("vanseg")

#: The passes of one image: ``(flipped, tensor)`` in the protocol's order.
Passes = list[tuple[bool, torch.Tensor]]


def batch_exact(model: nn.Module) -> bool:
    """True if each image's output does not depend on the other images of its batch."""
    return not any(isinstance(m, NMF2D) for m in model.modules())


def usable_batch_size(model: nn.Module, batch_size: int) -> int:
    """``batch_size`` checked, or 1 for a head whose output depends on the batch (Ham heads).

    Raises:
        ConfigError: ``batch_size`` is not a positive integer.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size > 1 and not batch_exact(model):
        log.warning(
            "batch_size=%d ignored: the Ham heads draw their NMF bases per batch, so a batch "
            "would change the masks; running batch 1",
            batch_size,
        )
        return 1
    return batch_size


@torch.no_grad()
def run_passes(
    model: nn.Module,
    images: Sequence[Passes],
    protocol: InferenceProtocol,
    device: torch.device,
    batch_size: int = 1,
) -> list[Passes]:
    """``(flipped, logits)`` of every pass of every image, at the network input size.

    Args:
        model: The forward module (eval mode, on ``device``).
        images: The prepared passes of each image (inputs ``(1, 3, h, w)``).
        protocol: Its ``mode``, ``crop`` and ``stride`` run each batch.
        device: Where the inputs go.
        batch_size: Passes per forward; passes are grouped by input size, in order of first
            appearance. 1 runs them one by one in the given order.
    """
    out: list[Passes] = [[] for _ in images]
    if batch_size == 1:
        for i, passes in enumerate(images):
            for flip, inputs in passes:
                out[i].append((flip, pass_logits(model, inputs.to(device), protocol)))
        return out
    groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for i, passes in enumerate(images):
        for j, (_, inputs) in enumerate(passes):
            groups.setdefault(tuple(inputs.shape), []).append((i, j))
    results: dict[tuple[int, int], torch.Tensor] = {}
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            batch = torch.cat([images[i][j][1] for i, j in chunk]).to(device)
            logits = pass_logits(model, batch, protocol)  # (len(chunk), K, h, w)
            for k, key in enumerate(chunk):
                results[key] = logits[k : k + 1]
    for i, passes in enumerate(images):
        out[i] = [(flip, results[(i, j)]) for j, (flip, _) in enumerate(passes)]
    return out
