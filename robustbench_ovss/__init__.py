"""ovss-bench: robustness benchmark for training-free open-vocabulary segmentation on SAM 3."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# The subpackages methods, corruptions and configs live in the checkout's top-level folders (pyproject
# maps them into this package on install). When this package is imported from a source checkout
# rather than from an install - the checkout on sys.path, e.g. a script run from it - those folders
# sit beside this one: let the import system find them there, so nothing depends on how it was found.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "methods").is_dir() and (_checkout / "pyproject.toml").is_file() and all(
    (_checkout / sub / "__init__.py").is_file() for sub in ("methods", "corruptions")
):
    __path__.append(str(_checkout))  # type: ignore[name-defined]  # noqa: F821
del _checkout
