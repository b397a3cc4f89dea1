"""Test-only plugins of the harness tests (importable as ``harness_plugins`` with tests/ on the path)."""
