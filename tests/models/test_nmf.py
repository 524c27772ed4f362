"""NMF2D and the Hamburger: the original's numbers, step counts, gradients, switches, AMP."""

from __future__ import annotations

import pytest
import torch

from tests.models.mmseg_reference import nmf as reference_nmf
from vanseg.models import NMF2D


def _input(b: int = 2, c: int = 32, h: int = 6, w: int = 5) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(1))


def _count_bmm_nodes(t: torch.Tensor) -> int:
    seen, stack, n = set(), [t.grad_fn], 0
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        n += type(fn).__name__ == "BmmBackward0"
        stack.extend(f for f, _ in fn.next_functions)
    return n


def test_same_numbers_as_the_original_for_the_same_seed() -> None:
    x = _input()
    nmf = NMF2D(rank=8).eval()
    torch.manual_seed(0)
    ours = nmf(x)
    torch.manual_seed(0)
    theirs = reference_nmf(x, rank=8, steps=7)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_output_is_non_negative_and_shaped_like_the_input() -> None:
    out = NMF2D(rank=4).eval()(_input())
    assert out.shape == (2, 32, 6, 5)
    assert (out >= 0).all()


def test_reconstruction_error_falls_with_steps() -> None:
    x = _input(c=64, h=8, w=8)
    errors = []
    for steps in (0, 1, 3, 7, 20):
        torch.manual_seed(0)
        out = NMF2D(rank=16, eval_steps=steps).eval()(x)
        errors.append((out - x).norm().item())
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors


def test_full_backprop_by_default_and_one_step_gradient_switch() -> None:
    x = _input().requires_grad_()
    # docs/reference.md §3.8: 40 bmm backward nodes for one train-mode call with 6 steps.
    assert _count_bmm_nodes(NMF2D(rank=8).train()(x)) == 40
    # one-step gradient: only the last coefficient update and the reconstruction
    out = NMF2D(rank=8, one_step_grad=True).train()(x)
    assert _count_bmm_nodes(out) == 2
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_train_and_eval_step_counts() -> None:
    calls = {"n": 0}

    class Counting(NMF2D):
        def _update_bases(self, *args):
            calls["n"] += 1
            return super()._update_bases(*args)

    nmf = Counting(rank=4)
    nmf.train()(_input())
    assert calls["n"] == 6
    calls["n"] = 0
    nmf.eval()(_input())
    assert calls["n"] == 7


def test_random_bases_by_default_and_deterministic_eval_switch() -> None:
    x = _input()
    default = NMF2D(rank=8).eval()
    assert not torch.equal(default(x), default(x))
    seeded = NMF2D(rank=8, eval_seed=3).eval()
    torch.manual_seed(0)
    a = seeded(x)
    torch.manual_seed(123)
    b = seeded(x)
    assert torch.equal(a, b)
    # the seed applies to evaluation only; training keeps fresh bases
    seeded.train()
    assert not torch.equal(seeded(x), seeded(x))


def test_bases_come_from_the_cpu_generator_and_do_not_consume_others() -> None:
    nmf = NMF2D(rank=8).eval()
    torch.manual_seed(0)
    nmf(_input())
    after = torch.rand(1)
    torch.manual_seed(0)
    torch.rand(2 * 32 * 8)  # exactly the one draw of the original: (B, D, R)
    assert torch.equal(after, torch.rand(1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_runs_in_float32_under_autocast(dtype: torch.dtype) -> None:
    x = _input().to(dtype)
    nmf = NMF2D(rank=8).eval()
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=dtype):
        out = nmf(x)
    torch.manual_seed(0)
    expected = nmf(x.float()).to(dtype)
    assert out.dtype == dtype
    assert torch.equal(out, expected)


def test_channels_last_input_gives_the_same_reconstruction_in_that_layout() -> None:
    nmf = NMF2D(rank=4, eval_seed=0).eval()
    x = torch.rand(2, 16, 5, 7)
    with torch.no_grad():
        plain = nmf(x)
        nhwc = nmf(x.contiguous(memory_format=torch.channels_last))
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc, plain, rtol=1e-5, atol=1e-6)
