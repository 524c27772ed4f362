"""Evaluation: the original's metric, test-time inference protocols and folder prediction."""

from vanseg.evaluation.inference import (
    InferenceProtocol,
    pass_input,
    predict_mask,
    predict_probs,
    predict_probs_tensor,
    resolve_protocol,
    set_eval_seed,
)
from vanseg.evaluation.metrics import SegmentationMetrics, metrics_from_confusion, round_results

__all__ = [
    "InferenceProtocol",
    "SegmentationMetrics",
    "metrics_from_confusion",
    "pass_input",
    "predict_mask",
    "predict_probs",
    "predict_probs_tensor",
    "resolve_protocol",
    "round_results",
    "set_eval_seed",
]
