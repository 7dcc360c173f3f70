"""One way to open the platform's Optuna storage, whatever the backend.

The local profile's default (SQLite) hands out the path of an Optuna *journal file*: SQLite
with parallel writers hits "database is locked", the journal file backend appends with a file
lock and serves many worker processes. PostgreSQL-backed platforms hand out a URL for Optuna's
RDB storage.
"""

from __future__ import annotations

from pathlib import Path

from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

_RDB_SCHEMES = ("postgresql://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://", "sqlite:///")


def is_rdb_url(url_or_path: str) -> bool:
    return url_or_path.startswith(_RDB_SCHEMES)


def open_storage(url_or_path: str) -> BaseStorage:
    """Return an Optuna storage for a database URL or a journal file path.

    The journal uses :class:`JournalFileOpenLock` (an ``O_EXCL`` lock file) rather than the
    default symlink lock: both work on local disks, but open-lock also works on file systems
    without symlinks (some NFS/SMB mounts that a shared CHIML_HOME may live on).
    """
    if is_rdb_url(url_or_path):
        # pool_pre_ping: a worker that idles through a long trial must not die on a dropped connection.
        return RDBStorage(url_or_path, engine_kwargs={"pool_pre_ping": True})
    path = Path(url_or_path.removeprefix("journal://")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def describe_storage(url_or_path: str) -> str:
    """A printable form of the storage (no password)."""
    if is_rdb_url(url_or_path):
        from sqlalchemy.engine import make_url

        return make_url(url_or_path).render_as_string(hide_password=True)
    return str(Path(url_or_path).expanduser())


__all__ = ["describe_storage", "is_rdb_url", "open_storage"]
