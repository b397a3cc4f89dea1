"""Fixtures for tests, benchmarks and docs: fake benchmark trees and fake run directories.

Nothing at run time imports this package (``tests/test_packaging.py`` checks that a demo run does
not); it ships inside the package so that benchmarks and plugin authors' tests can build the same
fixtures without the repository's tests/ folder.

- :mod:`.fake_datasets`: tiny trees in the exact layouts of the real benchmarks;
- :mod:`.fake_runs`: run directories with plausible, deterministic numbers, for report tests;
- :mod:`.method_labels`: a method's labels on given images with a given backend (speed-up oracles).
"""
