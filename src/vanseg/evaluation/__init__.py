"""Evaluation: the original's metric, the evaluation loop, the report and the confusion plot."""
