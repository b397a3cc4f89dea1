"""Model backends registered in ``robustbench_ovss.registry.BACKENDS`` (the SAM 3 wrapper)."""
