"""One way to open the platform's Optuna storage, whatever the backend.

The local profile's default (SQLite) hands out the path of an Optuna *journal file*: SQLite
with parallel writers hits "database is locked", the journal file backend appends with a file
lock and serves many worker processes. PostgreSQL-backed platforms hand out a URL for Optuna's
RDB storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

_RDB_SCHEMES = ("postgresql://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://", "sqlite:///")


def is_rdb_url(url_or_path: str) -> bool:
    return url_or_path.startswith(_RDB_SCHEMES)


@dataclass(frozen=True)
class Heartbeat:
    """Optuna's heartbeat: a worker records one every ``interval`` seconds while a trial runs; a
    RUNNING trial without one for ``grace`` seconds is failed by the next worker that asks for a
    trial, on any host, and ``on_stale`` is called for it."""

    interval: int
    grace: int
    on_stale: Callable[[Any, Any], None] | None = None


def open_storage(url_or_path: str, heartbeat: Heartbeat | None = None) -> BaseStorage:
    """Return an Optuna storage for a database URL or a journal file path.

    The journal uses :class:`JournalFileOpenLock` (an ``O_EXCL`` lock file) rather than the
    default symlink lock: both work on local disks, but open-lock also works on file systems
    without symlinks (some NFS/SMB mounts that a shared CHIML_HOME may live on). Only the
    database storage keeps heartbeats (Optuna's journal storage has none).
    """
    if is_rdb_url(url_or_path):
        beat: dict[str, Any] = {}
        if heartbeat is not None:
            beat = {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace,
                    "heartbeat_stale_trial_callback": heartbeat.on_stale}
        # pool_pre_ping: a worker that idles through a long trial must not die on a dropped connection.
        return RDBStorage(url_or_path, engine_kwargs={"pool_pre_ping": True}, **beat)
    path = Path(url_or_path.removeprefix("journal://")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def describe_storage(url_or_path: str) -> str:
    """A printable form of the storage (no password)."""
    if is_rdb_url(url_or_path):
        from sqlalchemy.engine import make_url

        return make_url(url_or_path).render_as_string(hide_password=True)
    return str(Path(url_or_path).expanduser())


__all__ = ["Heartbeat", "describe_storage", "is_rdb_url", "open_storage"]
