"""The exceptions users see, and the few kinds callers tell apart.

Every failure that a user can act on is raised as :class:`ChimlError` or one of its kinds; the
CLI prints its message as a single line (plus an optional hint) and exits non-zero, never a
traceback. Like kserve's and MLflow's error classes, the kinds exist so that callers (and tests)
branch on a type instead of matching message text; each maps to the HTTP status a REST front
would answer with.
"""

from __future__ import annotations


class ChimlError(Exception):
    """A failure with a message meant for the user."""

    http_status = 500

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InvalidInputError(ChimlError):
    """An argument, file or request that chiml cannot accept as given."""

    http_status = 400


class NotFoundError(ChimlError):
    """The named thing (endpoint, model version, run, release, lease) does not exist."""

    http_status = 404


class AlreadyExistsError(ChimlError):
    """Creating something whose name is already taken."""

    http_status = 409


class NotSupportedError(ChimlError):
    """The operation exists, but not on this profile, runtime or machine."""

    http_status = 501


class UnreachableError(ChimlError):
    """A service chiml needs (MLflow, the cluster, Blazar, an endpoint) did not answer."""

    http_status = 503


class ConfigError(InvalidInputError):
    """chiml.yaml (or an override) is missing, unreadable or invalid."""


class StateError(ChimlError):
    """The state file under CHIML_HOME is corrupt or from an unknown version."""
