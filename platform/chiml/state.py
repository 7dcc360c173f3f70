"""Versioned, locked, atomically written state under CHIML_HOME.

State is a JSON document with a ``version``; each capability keeps its own top-level key
(``local``, ``endpoints``, ``chameleon``, ``kubernetes`` ...). Writes go through a temp file
and ``os.replace`` so a crash never leaves half a file, and a file lock serialises writers
(the CLI, the SDK in a notebook and tuning workers may all touch it).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from chiml.errors import StateError

STATE_VERSION = 1

# version N -> function turning a version-N document into version N+1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _migrate(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    version = doc.get("version")
    if not isinstance(version, int):
        raise StateError(f"state file {path} has no version: move it aside to start afresh")
    if version > STATE_VERSION:
        raise StateError(
            f"state file {path} is version {version}, newer than this chiml ({STATE_VERSION}): upgrade chiml"
        )
    while version < STATE_VERSION:
        doc = MIGRATIONS[version](doc)
        version += 1
        doc["version"] = version
    return doc


class StateStore:
    """The state document of one CHIML_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "state.json"
        self._lock = FileLock(str(home / "state.json.lock"), timeout=30)

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"version": STATE_VERSION}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise StateError(
                f"state file {self.path} is corrupt ({err.__class__.__name__}: {err}); "
                "move it aside (services still running must then be stopped by hand)"
            ) from None
        if not isinstance(doc, dict):
            raise StateError(f"state file {self.path} is corrupt: not a JSON object")
        return _migrate(doc, self.path)

    def _write(self, doc: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        # Writers hold the lock, so any temp file here now was left by a writer that was killed.
        for stale in self.home.glob(".state.*"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.home)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, indent=2, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self) -> dict[str, Any]:
        """A snapshot of the whole document."""
        if not self.path.exists():
            return {"version": STATE_VERSION}
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock:
            return self._read()

    def get(self, key: str, default: Any = None) -> Any:
        return self.load().get(key, default)

    @contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under the lock; nothing is written if the block raises."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock:
            doc = self._read()
            yield doc
            doc["version"] = STATE_VERSION
            self._write(doc)

    def set(self, key: str, value: Any) -> None:
        with self.edit() as doc:
            doc[key] = value

    def delete(self, key: str) -> None:
        with self.edit() as doc:
            doc.pop(key, None)
