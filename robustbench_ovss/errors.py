"""User-facing errors.

Anything a user can cause (a bad config key, a missing file, an unknown name) raises an
:class:`OvssError`. The CLI prints its message as one line and exits with status 2, so the message
must name the file or key and say what to do; no traceback is shown.
"""

from __future__ import annotations


class OvssError(Exception):
    """Base class of errors caused by user input; the message is shown as one line."""

    exit_code = 2


class ConfigError(OvssError):
    """An invalid run configuration: unknown key, wrong type, bad value."""


class UnknownNameError(OvssError, KeyError):
    """A name that is not in a registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(OvssError):
    """A dataset on disk that is missing, incomplete or malformed."""


class CheckpointError(OvssError):
    """A model checkpoint that cannot be found, read or matched to the architecture."""


class MethodOutputError(OvssError):
    """A method returned a prediction that violates the Method contract."""


class CorruptionError(OvssError):
    """An unknown corruption, a severity outside 1..5, or a corruption cache mismatch."""
