"""Measuring: metrics through ir-measures, per-query values, paired significance tests."""

from eval.metrics import Evaluation, evaluate, parse_measures
from eval.significance import Comparison, compare, holm, paired_p_value

__all__ = ["Comparison", "Evaluation", "compare", "evaluate", "holm", "paired_p_value", "parse_measures"]
