"""Image tests: chiml's built images run as containers under podman (`make images-test`).

They need root podman and the images `make images` built (tagged from services/images.yaml), so
they run only when CHIML_IMAGE_TESTS=1 (set by `make images-test`); a plain `pytest` run skips
them with that reason (the tests that need neither podman nor images run everywhere). With
CHIML_IMAGE_TESTS=1 a missing engine or image is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from podman_kubelet import Podman

from chiml.images import Catalog, load_catalog

ENABLED = os.environ.get("CHIML_IMAGE_TESTS") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "images: runs chiml's built images under podman (make images-test)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.images)
            needs_podman = {"podman", "built", "postgres"} & set(getattr(item, "fixturenames", ()))
            if needs_podman and not ENABLED:
                reason = "image tests run with `make images-test` (CHIML_IMAGE_TESTS=1)"
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run scripts/images_setup.sh (make images-setup)")
    engine = Podman()
    yield engine
    engine.cleanup()


@pytest.fixture(scope="session")
def built(catalog: Catalog, podman: Podman):
    """``built(name[, variant])``: the reference of a built image, failing the test if `make images`
    did not build it."""

    def ref(name: str, variant: str | None = None) -> str:
        reference = catalog.ref(name, variant)
        if not podman.image_exists(reference):
            pytest.fail(f"image {reference} is not built: run `make images`")
        return reference

    return ref


@pytest.fixture
def container_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder any container user can read and write (kubelet's emptyDir is 0777 too), outside
    /root so a non-root container user can reach it."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="chiml-img-", dir="/var/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


class Postgres:
    """A throwaway PostgreSQL 15 server on 127.0.0.1 (run as the postgres user: the server refuses
    root), with a password role, as CloudNativePG's `<cluster>-app` Secret would describe it."""

    user = "app"
    password = "test-password"

    def __init__(self) -> None:
        import tempfile

        from podman_kubelet import free_port

        self.dir = Path(tempfile.mkdtemp(prefix="chiml-pg-", dir="/var/tmp"))
        self.port = free_port()
        self._as_postgres = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password)
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        out = run([*self._as_postgres, shutil.which("initdb") or "initdb", "-D", str(data), "-U", "postgres",
                   "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"])
        if out.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.stderr.strip()[-500:]}")
        out = run([*self._as_postgres, shutil.which("pg_ctl") or "pg_ctl", "-D", str(data), "-w", "-l",
                   str(self.dir / "log"), "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start"])
        if out.returncode != 0:
            raise RuntimeError(f"postgres did not start: {out.stderr.strip()[-500:]}")
        self.sql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")

    def sql(self, statement: str, database: str = "postgres") -> str:
        out = run([*self._as_postgres, shutil.which("psql") or "psql", "-h", str(self.dir), "-p", str(self.port),
                   "-U", "postgres", "-d", database, "-tAc", statement])
        if out.returncode != 0:
            raise RuntimeError(f"psql {statement!r}: {out.stderr.strip()}")
        return out.stdout.strip()

    def database(self, name: str) -> str:
        self.sql(f"CREATE DATABASE {name} OWNER {self.user}")
        return name

    def stop(self) -> None:
        pg_ctl = shutil.which("pg_ctl") or "pg_ctl"
        run([*self._as_postgres, pg_ctl, "-D", str(self.dir / "data"), "-m", "fast", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if shutil.which("initdb") is None:
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH")
    server = Postgres()
    yield server
    server.stop()
