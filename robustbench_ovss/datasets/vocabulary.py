"""Dataset vocabularies: plain text files, one line per label id, aliases separated by commas.

The packaged files live in ``configs/vocab/<dataset>.txt`` (package data ``robustbench_ovss.configs``)
and hold exactly the prompt lists of the reference methods (DESIGN §7). A user may point a run at their
own file (``[datasets] vocab.NAME = "path"``); it must have one line per label id of the dataset.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import DataError

__all__ = ["load_vocabulary", "packaged_vocabulary", "parse_vocabulary", "resolve_vocabulary"]


def parse_vocabulary(text: str, source: str) -> list[list[str]]:
    """Parse vocabulary text into one alias list per line.

    Args:
        text: file contents; a trailing newline at the end of the file is allowed, any other empty
            line is an error (it would shift every later label id).
        source: file name used in error messages.

    Returns:
        ``list[list[str]]``: per label id, its aliases in file order (stripped, non-empty).
    """
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{source}: vocabulary file is empty; write one class per line (aliases separated by ', ')")
    out: list[list[str]] = []
    for no, line in enumerate(lines, start=1):
        aliases = [a.strip() for a in line.split(",")]
        if not line.strip():
            raise DataError(
                f"{source}:{no}: empty line in a vocabulary file; every line is one label id, remove it or name the class"
            )
        if any(not a for a in aliases):
            raise DataError(f"{source}:{no}: empty alias in {line.strip()!r}; separate aliases with ', ' and no stray commas")
        out.append(aliases)
    return out


def load_vocabulary(path: str | Path) -> list[list[str]]:
    """Read a vocabulary file (UTF-8): one alias list per line, aliases separated by commas.

    Raises:
        DataError: the file is missing, unreadable, empty, or has an empty line or alias.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{p}: vocabulary file not found; check the vocab path in the config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read vocabulary file ({exc}); save it as UTF-8 text") from None
    return parse_vocabulary(text, str(p))


def packaged_vocabulary(name: str) -> list[list[str]]:
    """The vocabulary shipped for dataset ``name`` (``configs/vocab/<name>.txt``)."""
    res = resources.files("robustbench_ovss.configs").joinpath("vocab", f"{name}.txt")
    if not res.is_file():
        raise DataError(f"no packaged vocabulary configs/vocab/{name}.txt; reinstall ovss-bench")
    return parse_vocabulary(res.read_text(encoding="utf-8"), f"configs/vocab/{name}.txt")


def resolve_vocabulary(dataset: str, default: list[list[str]], override: str | Path | None) -> list[list[str]]:
    """The classes a dataset exposes: ``default`` unless a user file ``override`` is given.

    The override must have exactly ``len(default)`` lines, one per label id, in label-id order.
    """
    if override is None or str(override) == "":
        return [list(a) for a in default]
    classes = load_vocabulary(override)
    if len(classes) != len(default):
        raise DataError(
            f"{override}: vocabulary has {len(classes)} lines but dataset {dataset!r} has {len(default)} label ids; "
            f"write exactly one line per label id (see configs/vocab/ for the default)"
        )
    return classes
