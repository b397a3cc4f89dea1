"""Benchmarks: loaders registered in ``robustbench_ovss.registry.DATASETS`` (see ``base.Dataset``)."""

from .base import Dataset

__all__ = ["Dataset"]
