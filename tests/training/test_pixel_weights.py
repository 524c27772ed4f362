"""Class weights and OHEM against mmseg 0.x's formulas, re-stated here as its code reads.

mmseg 0.x: ``decode_head.losses`` resizes the logits to the label size, asks the sampler for
``seg_weight``, then ``CrossEntropyLoss`` calls ``cross_entropy`` ->
``F.cross_entropy(pred, label, weight=class_weight, reduction='none', ignore_index=...)`` and
``weight_reduce_loss(loss, weight=seg_weight.float(), reduction='mean')``, i.e.
``(loss * weight).mean()``. ``class_weight`` is ``cls_score.new_tensor(self.class_weight)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vanseg.models.heads.base import resize
from vanseg.training.module import segmentation_loss
from vanseg.training.pixel_weights import OhemSampler, sampler_from_options

IGNORE = 255


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 6, 5, generator=gen) * 3
    mask = torch.randint(0, 4, (2, 12, 10), generator=gen)
    mask[0, :3] = IGNORE
    return logits, mask


def _mmseg_ohem_sample(seg_logit, seg_label, thresh, min_kept, ignore_index, loss_fn):
    """``OHEMPixelSampler.sample`` as mmseg 0.x writes it (seg_label is (B, 1, H, W))."""
    with torch.no_grad():
        seg_label = seg_label.squeeze(1).long()
        batch_kept = min_kept * seg_label.size(0)
        valid_mask = seg_label != ignore_index
        seg_weight = seg_logit.new_zeros(size=seg_label.size())
        valid_seg_weight = seg_weight[valid_mask]
        if thresh is not None:
            seg_prob = F.softmax(seg_logit, dim=1)
            tmp_seg_label = seg_label.clone().unsqueeze(1)
            tmp_seg_label[tmp_seg_label == ignore_index] = 0
            seg_prob = seg_prob.gather(1, tmp_seg_label).squeeze(1)
            sort_prob, sort_indices = seg_prob[valid_mask].sort()
            if sort_prob.numel() > 0:
                min_threshold = sort_prob[min(batch_kept, sort_prob.numel() - 1)]
            else:
                min_threshold = 0.0
            threshold = max(min_threshold, thresh)
            valid_seg_weight[seg_prob[valid_mask] < threshold] = 1.0
        else:
            losses = loss_fn(seg_logit, seg_label)
            _, sort_indices = losses[valid_mask].sort(descending=True)
            valid_seg_weight[sort_indices[:batch_kept]] = 1.0
        seg_weight[valid_mask] = valid_seg_weight
        return seg_weight


def _mmseg_loss(logits, mask, class_weight=None, sampler=None):
    seg_logit = resize(logits, mask.shape[-2:]).float()
    cw = None if class_weight is None else seg_logit.new_tensor(class_weight)

    def ce_none(pred, label):
        return F.cross_entropy(pred, label, weight=cw, reduction="none", ignore_index=IGNORE)

    seg_weight = None
    if sampler is not None:
        seg_weight = _mmseg_ohem_sample(
            seg_logit, mask.unsqueeze(1), sampler[0], sampler[1], IGNORE, ce_none
        )
    loss = ce_none(seg_logit, mask)
    if seg_weight is not None:
        loss = loss * seg_weight.float()
    return loss.mean()


def test_defaults_unchanged() -> None:
    logits, mask = _inputs()
    plain = F.cross_entropy(resize(logits, mask.shape[-2:]).float(), mask, ignore_index=IGNORE,
                            reduction="none").mean()  # fmt: skip
    assert torch.equal(segmentation_loss(logits, mask, IGNORE), plain)


def test_class_weight_divides_by_pixel_count() -> None:
    logits, mask = _inputs()
    weights = [0.5, 2.0, 1.0, 3.0]
    ours = segmentation_loss(logits, mask, IGNORE, class_weight=weights)
    assert torch.equal(ours, _mmseg_loss(logits, mask, class_weight=weights))
    torch_mean = F.cross_entropy(
        resize(logits, mask.shape[-2:]), mask, weight=torch.tensor(weights), ignore_index=IGNORE
    )
    assert not torch.allclose(ours, torch_mean)  # not PyTorch's sum-of-weights mean


def test_class_weight_valid_pixels_divides_by_labelled_count() -> None:
    logits, mask = _inputs()
    weights = [0.5, 2.0, 1.0, 3.0]
    ours = segmentation_loss(logits, mask, IGNORE, "valid_pixels", class_weight=weights)
    # mmseg >= 0.23 avg_non_ignore: avg_factor = numel - ignored count
    expected = _mmseg_loss(logits, mask, class_weight=weights) * mask.numel()
    expected = expected / (mask != IGNORE).sum()
    torch.testing.assert_close(ours, expected)


@pytest.mark.parametrize("thresh, min_kept", [(0.7, 10), (0.3, 0), (0.9, 1000), (None, 25)])
def test_ohem_matches_mmseg(thresh: float | None, min_kept: int) -> None:
    logits, mask = _inputs(1)
    ours = segmentation_loss(logits, mask, IGNORE, sampler=OhemSampler(thresh, min_kept))
    assert torch.equal(ours, _mmseg_loss(logits, mask, sampler=(thresh, min_kept)))
    plain = segmentation_loss(logits, mask, IGNORE)
    assert ours <= plain  # pixels are dropped, the divisor stays


def test_ohem_with_class_weight_matches_mmseg() -> None:
    logits, mask = _inputs(2)
    weights = [1.0, 0.2, 4.0, 1.5]
    for thresh in (0.6, None):
        ours = segmentation_loss(
            logits, mask, IGNORE, class_weight=weights, sampler=OhemSampler(thresh, 30)
        )
        assert torch.equal(ours, _mmseg_loss(logits, mask, weights, (thresh, 30)))


def test_weighted_loss_ignores_banded_flag() -> None:
    logits, mask = _inputs()
    weights = [0.5, 2.0, 1.0, 3.0]
    banded = segmentation_loss(logits, mask, IGNORE, banded=True, class_weight=weights)
    assert torch.equal(banded, segmentation_loss(logits, mask, IGNORE, class_weight=weights))


def test_sampler_options() -> None:
    assert sampler_from_options(None) is None
    assert sampler_from_options({"type": "ohem", "thresh": 0.7, "min_kept": 5}) == OhemSampler(
        0.7, 5
    )
    with pytest.raises(ValueError, match="module.sampler"):
        sampler_from_options({"type": "focal"})


@pytest.mark.slow
def test_compiled_loss_supports_class_weight_and_ohem() -> None:
    import vanseg
    from vanseg.training.module import loss_terms

    torch.manual_seed(0)
    model = vanseg.build_model("van_test", "light_ham", 4, overrides=["head.channels=32"])
    images, mask = torch.randn(2, 3, 64, 64), torch.randint(0, 4, (2, 64, 64))
    mask[0, :5] = IGNORE
    options = {"class_weight": [1.0, 2.0, 0.5, 1.0], "sampler": OhemSampler(0.7, 100)}
    torch.manual_seed(1)
    eager = loss_terms(model, images, mask, IGNORE, "all_pixels", False, **options)["decode"]
    torch.manual_seed(1)
    compiled = torch.compile(loss_terms)(model, images, mask, IGNORE, "all_pixels", **options)
    torch.testing.assert_close(compiled["decode"], eager)


def test_config_checks_class_weight_length_and_values() -> None:
    from vanseg.config.checks import check_train_config
    from vanseg.config.compose import compose_config
    from vanseg.errors import ConfigError

    base = ["data=synthetic"]  # 8 classes
    check_train_config(compose_config([*base, "module.class_weight=[1,1,1,1,1,1,1,2]"]), gpus=0)
    for bad, message in (("[1,2]", "2 values"), ("[1,1,1,1,1,1,1,-1]", "numbers >= 0")):
        with pytest.raises(ConfigError, match=message) as err:
            check_train_config(compose_config([*base, f"module.class_weight={bad}"]), gpus=0)
        assert "\n" not in str(err.value)
