"""Evaluation helpers: labelled data sets that install offline, for quality checks."""

from corral.eval.datasets import LabelledText, bbc_news

__all__ = ["LabelledText", "bbc_news"]
