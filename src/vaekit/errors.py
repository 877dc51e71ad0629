"""User-facing errors: one class whose message names the problem and the fix.

The CLI prints these as a short paragraph (no traceback unless --debug); library users can
catch them as ``vaekit.VaekitError``.
"""

from __future__ import annotations


class VaekitError(Exception):
    """An error caused by input the user can fix; the message says what and how."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\nFix: {fix}")


class ConfigError(VaekitError):
    """A config key, value or combination that cannot work."""


class DataError(VaekitError):
    """Data that cannot be read or is not what the model needs."""


class CheckpointError(VaekitError):
    """A model/run folder or checkpoint that is missing, corrupt, foreign or incompatible."""


class DownloadError(VaekitError):
    """A data file that could not be downloaded or failed its checksum."""


class DiskFullError(VaekitError):
    """The disk filled up while vaekit wrote a file; the previous version of the file is intact."""


class DivergenceError(VaekitError):
    """Training kept producing non-finite losses or gradients, even after rolling back."""
