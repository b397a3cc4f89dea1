"""Corruptions (installed as ``robustbench_ovss.corruptions``)."""
