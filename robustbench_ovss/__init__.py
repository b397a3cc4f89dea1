"""ovss-bench: robustness benchmark for training-free open-vocabulary segmentation on SAM 3."""

__version__ = "0.1.0"
