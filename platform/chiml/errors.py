"""The one exception type users see.

Every failure that a user can act on is raised as :class:`ChimlError`; the CLI prints its
message as a single line (plus an optional hint) and exits non-zero, never a traceback.
"""

from __future__ import annotations


class ChimlError(Exception):
    """A failure with a message meant for the user."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(ChimlError):
    """chiml.yaml (or an override) is missing, unreadable or invalid."""


class StateError(ChimlError):
    """The state file under CHIML_HOME is corrupt or from an unknown version."""
