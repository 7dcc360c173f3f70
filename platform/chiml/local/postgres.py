"""A PostgreSQL cluster under CHIML_HOME for MLflow and Optuna (``local.database: postgresql``).

The server binaries refuse to run as root. On a user's machine chiml runs them as that user;
as root (CI, containers) it runs them as the ``postgres`` system user, whose data directory
must be reachable by it: when CHIML_HOME sits somewhere it cannot traverse (e.g. /root), the
cluster lives under /var/lib/chiml/<id> and CHIML_HOME/data/postgresql links to it.
Unix sockets are disabled; the server listens on 127.0.0.1 only, with a generated password.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from chiml.config import LoadedConfig
from chiml.errors import ChimlError, InvalidInputError, UnreachableError
from chiml.local.layout import HomeLayout
from chiml.local.supervisor import Program

DATABASES = ("mlflow", "optuna")
SUPERUSER = "chiml"


def sqlalchemy_url(url: str) -> str:
    """Name the psycopg2 driver explicitly: SQLAlchemy 2.1 defaults postgresql:// to psycopg 3."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url


def libpq_url(url: str) -> str:
    """The same URL as libpq (psycopg2.connect) spells it."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgresql") else url


def find_bin_dir(configured: str | None) -> Path:
    """The folder holding initdb and postgres."""
    if configured:
        folder = Path(configured)
        if not ((folder / "initdb").exists() and (folder / "postgres").exists()):
            raise InvalidInputError(f"local.postgresql.bin_dir {folder} holds no initdb/postgres binaries")
        return folder
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(os.path.realpath(found)).parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise ChimlError(
        "PostgreSQL server binaries (initdb, postgres) not found",
        hint="install PostgreSQL (e.g. apt-get install postgresql) or set local.postgresql.bin_dir",
    )


def _run_as_user() -> str | None:
    """The system user to run the server as when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ChimlError("running as root needs a 'postgres' system user to run PostgreSQL") from None
    return "postgres"


def _traversable_by(path: Path, user: str) -> bool:
    entry = pwd.getpwnam(user)
    for folder in [path, *path.parents]:
        if not folder.exists():
            continue
        stat = folder.stat()
        if stat.st_uid == entry.pw_uid:
            continue
        if not stat.st_mode & 0o001:
            return False
    return True


@dataclass
class ManagedPostgres:
    """The cluster chiml runs itself."""

    loaded: LoadedConfig

    def __post_init__(self) -> None:
        self.layout = HomeLayout(self.loaded.home)
        self.port = self.loaded.config.local.ports.postgresql
        self.user = _run_as_user()
        self.secret_file = self.layout.secrets / "postgresql.json"

    @property
    def data_dir(self) -> Path:
        link = self.layout.postgres_link
        if link.is_symlink() or link.exists():
            return link.resolve()
        if self.user is not None and not _traversable_by(link.parent, self.user):
            digest = hashlib.sha1(str(self.loaded.home).encode()).hexdigest()[:12]
            return Path("/var/lib/chiml") / digest / "postgresql"
        return link

    def password(self) -> str:
        if self.secret_file.exists():
            return json.loads(self.secret_file.read_text())["password"]
        self.layout.secrets.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(24)
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"user": SUPERUSER, "password": value}, handle)
        return value

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}:{quote(self.password(), safe='')}@127.0.0.1:{self.port}/{database}"

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _as_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *cmd] if self.user else cmd

    def init(self) -> None:
        """initdb once; safe to call again."""
        if self.initialized():
            return
        bin_dir = find_bin_dir(self.loaded.config.local.postgresql.bin_dir)
        data = self.data_dir
        data.mkdir(parents=True, exist_ok=True)
        pwfile = data.parent / ".pwfile"
        # Created 0600 from the start: write-then-chmod would leave it world-readable for a moment.
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.password() + "\n")
        try:
            if self.user:
                entry = pwd.getpwnam(self.user)
                for path in (data, pwfile):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            data.chmod(0o700)
            pwfile.chmod(0o600)
            result = subprocess.run(
                self._as_user(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        SUPERUSER,
                        f"--pwfile={pwfile}",
                        "--auth-local=scram-sha-256",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--no-instructions",
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)  # never leave half a cluster behind
            raise ChimlError(f"initdb failed: {(result.stderr or result.stdout).strip().splitlines()[-1]}")
        link = self.layout.postgres_link
        if data != link and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(data)

    def program(self) -> Program:
        bin_dir = find_bin_dir(self.loaded.config.local.postgresql.bin_dir)
        return Program(
            name="postgresql",
            command=[
                str(bin_dir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=100",
                "-c",
                "shared_buffers=64MB",
            ],
            directory=self.data_dir,
            user=self.user,
            priority=100,
            stopsignal="INT",  # "fast" shutdown: roll back clients, checkpoint, exit
            stopwaitsecs=60,
        )

    def create_databases(self, timeout: float = 60.0) -> None:
        """Create the mlflow and optuna databases if missing (the server must run)."""
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = psycopg2.connect(libpq_url(self.url("postgres")), connect_timeout=3)
                break
            except psycopg2.OperationalError as err:
                if time.monotonic() > deadline:
                    raise UnreachableError(f"PostgreSQL did not accept connections: {str(err).strip()}") from None
                time.sleep(0.5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for name in DATABASES:
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
