"""Open the Optuna storage the platform offers, whatever its kind.

The local SQLite default is Optuna's journal *file* (SQLite locks under parallel writers);
PostgreSQL gives an RDB URL. Heartbeats let a crashed worker's trial be marked failed
instead of hanging RUNNING forever.
"""

from __future__ import annotations

from typing import Any


def open_optuna_storage(url_or_path: str, heartbeat_interval: int | None = None) -> Any:
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    if "://" in url_or_path:
        kwargs: dict[str, Any] = {}
        if heartbeat_interval:
            kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": heartbeat_interval * 3}
        return RDBStorage(url_or_path, engine_kwargs={"pool_pre_ping": True}, **kwargs)
    del optuna  # only RDB storage takes heartbeats; the journal marks stale trials by itself
    return JournalStorage(JournalFileBackend(url_or_path))
