"""The local profile: every service a supervised process on 127.0.0.1 under CHIML_HOME."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chiml.config import LoadedConfig
from chiml.errors import ChimlError, NotFoundError, NotSupportedError, UnreachableError
from chiml.local import jupyterlab
from chiml.local.layout import HomeLayout
from chiml.local.ports import port_is_free, port_owner
from chiml.local.postgres import SUPERUSER, ManagedPostgres, libpq_url
from chiml.local.services import LocalService, build_services, database_urls, write_optuna_dashboard_config
from chiml.local.supervisor import Supervisor
from chiml.profiles.base import Confirm, PlanSection, Profile, ServiceStatus, SmokeRun, UpPlan
from chiml.progress import Progress, silent

if TYPE_CHECKING:
    from chiml.serving.local import LocalEndpoints

class LocalProfile(Profile):
    """Local processes under supervisord."""

    name = "local"

    def __init__(self, loaded: LoadedConfig) -> None:
        super().__init__(loaded)
        self.layout = HomeLayout(self.home)
        self.supervisor = Supervisor(self.home)

    # ----------------------------------------------------------------- services
    def services(self) -> list[LocalService]:
        return build_services(self.loaded)

    def _check_ports(self, services: list[LocalService]) -> None:
        running = self.supervisor.all_info() if self.supervisor.is_running() else {}
        for service in services:
            info = running.get(service.name)
            if info and info.get("statename") in ("RUNNING", "STARTING"):
                continue  # ours already
            if not port_is_free(service.port):
                key = "postgresql" if service.name == "postgresql" else service.name
                raise ChimlError(
                    f"port {service.port} for {service.title} is already in use{port_owner(service.port)}",
                    hint=f"stop that process or set local.ports.{key} in chiml.yaml",
                )

    def _wait_healthy(self, services: list[LocalService], timeout: float, progress: Progress) -> None:
        deadline = time.monotonic() + timeout
        wall_start = int(time.time()) - 1
        pending = {service.name: service for service in services}
        last_detail: dict[str, str] = {}
        while pending:
            for name, service in list(pending.items()):
                ok, detail = service.check_health()
                last_detail[name] = detail
                if ok:
                    del pending[name]
                    progress(f"{service.title} is healthy")
                    continue
                info = self.supervisor.program_info(name)
                if info and info.get("statename") == "FATAL":
                    raise self._service_failed(service, f"exited repeatedly ({info.get('spawnerr') or 'see log'})")
                # A crash after `startsecs` never reaches FATAL (supervisord just respawns it), so
                # any non-zero exit since we began waiting counts as a failed start.
                if info and info.get("stop", 0) >= wall_start and info.get("exitstatus", 0) not in (0, None):
                    raise self._service_failed(service, f"exited with status {info['exitstatus']}")
            if not pending:
                break
            if time.monotonic() > deadline:
                name, service = next(iter(pending.items()))
                raise self._service_failed(service, f"not healthy after {timeout:.0f}s: {last_detail.get(name)}")
            time.sleep(0.25)

    def _service_failed(self, service: LocalService, why: str) -> ChimlError:
        log = self.supervisor.log_file(service.name)
        tail = ""
        if log.exists():
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            if lines:
                tail = lines[-1].strip()[:300]
        hint = f"log: {log}" + (f" — last line: {tail}" if tail else "")
        return ChimlError(f"{service.title} failed its health check: {why}", hint=hint)

    # ----------------------------------------------------------------- up / down
    def plan(self) -> UpPlan:
        rows = [[s.title, s.url, " ".join(s.program.command)] for s in self.services()]
        section = PlanSection("services `chiml up` would run (supervised processes on 127.0.0.1)",
                              columns=["service", "url", "command"], rows=rows)
        return UpPlan(self.name, [section])

    def up(self, progress: Progress = silent) -> list[ServiceStatus]:
        services = self.services()
        started_supervisor = False
        self.state.load()  # a corrupt state file stops us before anything starts
        self.layout.create()
        if not self.supervisor.is_running():
            # A supervisord that was killed leaves its programs holding their ports.
            reaped = self.supervisor.reap_orphans()
            if reaped:
                progress(f"stopped {reaped} process(es) left running by a supervisord that died")
        self._check_ports(services)
        try:
            local = self.config.local
            if local.database == "postgresql" and not local.postgresql.url:
                pg = ManagedPostgres(self.loaded)
                if not pg.initialized():
                    progress("initialising PostgreSQL cluster")
                pg.init()
            write_optuna_dashboard_config(self.loaded)
            if any(service.name == "jupyterlab" for service in services):
                jupyterlab.write_files(self.loaded)
            self.supervisor.write_config()
            # Drop program files of services no longer configured (endpoints are kept).
            wanted = {service.name for service in services}
            for name in self.supervisor.program_names():
                ours = {"postgresql", "mlflow", "optuna_dashboard", "tensorboard", "jupyterlab"}
                if name in ours and name not in wanted:
                    self.supervisor.program_file(name).unlink()
            # The database first: MLflow and Optuna need their databases to exist.
            database = [s for s in services if s.name == "postgresql"]
            for service in database:
                self.supervisor.write_program(service.program)
            if not self.supervisor.is_running():
                progress("starting supervisord")
                self.supervisor.start()
                started_supervisor = True
            if database:
                self.supervisor.apply()
                self._wait_healthy(database, local.health_timeout_s, progress)
                ManagedPostgres(self.loaded).create_databases()
            elif local.database == "postgresql":
                self._create_external_databases()
            if local.database == "postgresql":
                self._create_optuna_schema()
            for service in services:
                self.supervisor.write_program(service.program)
            self.supervisor.apply()
            self._wait_healthy([s for s in services if s not in database], local.health_timeout_s, progress)
        except BaseException:
            if started_supervisor:
                self.supervisor.shutdown()  # leave no stray process behind
            raise
        _mlflow_uri, _optuna_storage = database_urls(self.loaded)
        with self.state.edit() as doc:
            doc["local"] = {
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "database": self.config.local.database,
                "services": {s.name: {"url": s.url, "port": s.port} for s in services},
                "optuna_storage_kind": "journal" if self.config.local.database == "sqlite" else "rdb",
            }
        self._wait_endpoints(progress)
        return self.status()

    def _create_external_databases(self) -> None:
        import psycopg2

        base = self.config.local.postgresql.url or ""
        root = base.rstrip("/")
        try:
            conn = psycopg2.connect(libpq_url(root), connect_timeout=5)
        except psycopg2.OperationalError as err:
            raise UnreachableError(
                f"cannot connect to local.postgresql.url: {str(err).strip().splitlines()[0]}"
            ) from None
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for name in ("mlflow", "optuna"):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def _create_optuna_schema(self) -> None:
        # optuna-dashboard opens RDB storage with skip_table_creation: create the schema first.
        import optuna

        optuna.storages.RDBStorage(database_urls(self.loaded)[1]).engine.dispose()

    def _wait_endpoints(self, progress: Progress) -> None:
        """Endpoints restored from state come up with supervisord; wait briefly for them."""
        from chiml.serving.local import LocalEndpoints

        LocalEndpoints(self).wait_all_ready(progress=progress)

    def down(self, yes: bool = False, progress: Progress = silent, confirm: Confirm | None = None) -> None:
        progress("stopping services")
        self.supervisor.shutdown()
        with self.state.edit() as doc:
            if "local" in doc:
                doc["local"]["stopped_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                doc["local"].pop("started_at", None)

    # ----------------------------------------------------------------- status
    def status(self) -> list[ServiceStatus]:
        running = self.supervisor.is_running()
        info = self.supervisor.all_info() if running else {}
        result: list[ServiceStatus] = []
        for service in self.services():
            proc = info.get(service.name)
            if not running or proc is None:
                result.append(ServiceStatus(service.name, service.url, False, "stopped"))
                continue
            healthy, detail = service.check_health()
            state = proc.get("statename", "?")
            result.append(
                ServiceStatus(
                    service.name,
                    service.url,
                    healthy and state == "RUNNING",
                    detail if state == "RUNNING" else state.lower(),
                    pid=proc.get("pid") or None,
                )
            )
        return result + self._endpoint_statuses()

    def _endpoint_statuses(self) -> list[ServiceStatus]:
        """One line per model endpoint: its one URL (the front) and how many replicas serve."""
        try:
            rows = self.endpoints().health()
        except (ChimlError, ImportError):
            return []
        return [ServiceStatus(f"endpoint {name}", url, ok, detail) for name, url, ok, detail in rows]

    def logs(self, service: str, lines: int = 100, follow: bool = False) -> Iterator[str]:
        path = self.supervisor.log_file(service)
        known = [s.name for s in self.services()] + ["supervisord"]
        if not path.exists():
            endpoints = sorted(p.stem for p in self.supervisor.logs.glob("*.log"))
            raise NotFoundError(f"no log for {service!r}", hint=f"known logs: {', '.join(endpoints or known)}")
        with path.open("r", errors="replace") as handle:
            yield from handle.readlines()[-lines:]
            while follow:
                line = handle.readline()
                if line:
                    yield line
                else:
                    time.sleep(0.5)

    # ----------------------------------------------------------------- lifecycle wiring
    def _service_url(self, name: str) -> str:
        recorded = (self.state.get("local") or {}).get("services", {}).get(name)
        if recorded:
            return recorded["url"]
        port = self.config.local.ports.model_dump()[name]
        return f"http://127.0.0.1:{port}"

    def tracking_uri(self) -> str:
        # CHIML_TRACKING_URI points a command at another MLflow (tests use it for a throwaway server).
        return os.environ.get("CHIML_TRACKING_URI") or self._service_url("mlflow")

    def optuna_storage(self) -> str:
        return database_urls(self.loaded)[1]

    def tensorboard_logdir(self) -> str:
        self.layout.tensorboard_logdir.mkdir(parents=True, exist_ok=True)
        return str(self.layout.tensorboard_logdir)

    def secrets(self) -> dict[str, str]:
        """Generated credentials, for `chiml status --show-secrets`: the managed PostgreSQL's login
        (kept in CHIML_HOME/secrets/postgresql.json, owner-only); nothing for SQLite or an external URL."""
        local = self.config.local
        postgres = ManagedPostgres(self.loaded)
        if local.database != "postgresql" or local.postgresql.url or not postgres.secret_file.exists():
            return {}
        return {"postgresql_username": SUPERUSER, "postgresql_password": postgres.password()}

    def endpoints(self, connect: bool = True) -> LocalEndpoints:
        from chiml.serving.local import LocalEndpoints

        return LocalEndpoints(self)

    def smoke_args(self) -> SmokeRun:
        from chiml.paths import repo_root

        root = repo_root()
        if root is None:
            raise NotSupportedError("the smoke suite ships with the source checkout; run `chiml smoke` from it")
        env = {"CHIML_HOME": str(self.home)}
        if self.loaded.path:
            env["CHIML_CONFIG"] = str(self.loaded.path)
        return SmokeRun([str(root / "smoke_tests" / "local")], env)
