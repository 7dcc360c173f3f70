"""The helm process boundary, through pyhelm3.

pyhelm3 0.5.8 already speaks helm 4 where it matters: atomic upgrades are sent as
``--rollback-on-failure`` (helm 4 renamed ``--atomic``, which now only prints a deprecation
warning) and ``--wait`` is sent bare (helm 4's ``--wait`` takes a strategy; bare means
"watcher"). Two pyhelm3 calls are avoided on purpose: ``list(all=True)`` sends ``--all``, which
helm 4 removed ("unknown flag"), and ``install_or_upgrade(disable_validation=True)`` splits its
flag into characters. Values always go in as JSON on stdin, so they never touch the disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pyhelm3 import Command
from pyhelm3 import errors as helm_errors

from chiml.errors import ChimlError
from chiml.tools import HELM_VERSION, find_tool, parse_version

T = TypeVar("T")


class HelmError(ChimlError):
    """helm exited non-zero; ``stderr`` holds its last line (helm's own error)."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


def _stderr_line(err: helm_errors.Error) -> str:
    text = err.stderr.decode("utf-8", "replace") if isinstance(err.stderr, bytes) else str(err.stderr)
    lines = [line for line in text.strip().splitlines() if not line.startswith("Flag --")]
    return lines[-1].removeprefix("Error: ") if lines else f"helm exited {err.returncode}"


class Helm:
    """One helm executable against one cluster."""

    def __init__(
        self,
        kubeconfig: str | None = None,
        context: str | None = None,
        executable: str | None = None,
    ) -> None:
        self.executable = executable or find_tool("helm")
        self._command = Command(
            executable=self.executable,
            kubeconfig=Path(kubeconfig) if kubeconfig else None,
            kubecontext=context,
            default_timeout="5m",
            history_max_revisions=10,
        )

    @staticmethod
    def _run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coro)

    def _call(self, what: str, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._run(coro)
        except helm_errors.Error as err:
            line = _stderr_line(err)
            raise HelmError(f"{what}: {line}", stderr=line) from None
        except FileNotFoundError:
            raise HelmError(f"{what}: helm not found at {self.executable} (run `make tools`)") from None

    # ----------------------------------------------------------------- queries
    def version(self) -> str:
        return self._call("helm version", self._command.version()).strip()

    def check_version(self) -> None:
        """Refuse a helm whose major version differs from the one chiml pins (flags differ)."""
        found = parse_version(self.version())
        want = parse_version(HELM_VERSION)
        if found is None or want is None or found[0] != want[0]:
            raise ChimlError(
                f"helm at {self.executable} is {self.version()}, chiml needs helm {HELM_VERSION.split('.')[0]}.x",
                hint="run `make tools` and put .tools/bin first on PATH",
            )

    def releases(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Every release in a namespace, whatever its state, by name (helm list -o json)."""
        rows = self._call(
            f"helm list -n {namespace}",
            self._command.list(
                namespace=namespace,
                include_deployed=True,
                include_failed=True,
                include_pending=True,
                include_superseded=False,
                include_uninstalling=True,
            ),
        )
        return {row["name"]: row for row in rows or []}

    def user_values(self, name: str, namespace: str) -> dict[str, Any]:
        return self._call(f"helm get values {name}", self._command.get_values(name, namespace=namespace))

    def status(self, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self._run(self._command.status(name, namespace=namespace))
        except helm_errors.ReleaseNotFoundError:
            return None
        except helm_errors.Error as err:
            raise HelmError(f"helm status {name}: {_stderr_line(err)}") from None

    def chart_metadata(self, chart: str, *, version: str, repo: str | None) -> dict[str, Any]:
        """The Chart.yaml of a published chart version (`helm show chart`): pulls it, touches no cluster."""
        return self._call(
            f"helm show chart {chart} {version}", self._command.show_chart(chart, repo=repo, version=version)
        )

    # ----------------------------------------------------------------- changes
    def install_or_upgrade(
        self,
        name: str,
        chart: str,
        values: dict[str, Any],
        *,
        namespace: str,
        version: str | None,
        repo: str | None,
        timeout_s: int,
    ) -> dict[str, Any]:
        """`helm upgrade --install --rollback-on-failure --wait`: all-or-nothing, ready when it returns."""
        return self._call(
            f"release {name}",
            self._command.install_or_upgrade(
                name,
                chart,
                values,
                atomic=True,
                atomic_arg="--rollback-on-failure",
                cleanup_on_fail=True,
                create_namespace=True,
                namespace=namespace,
                repo=repo,
                version=version,
                timeout=f"{timeout_s}s",
                wait=True,
                # values are complete each time: never merge with what a previous run left
                reset_values=True,
            ),
        )

    def uninstall(self, name: str, namespace: str, timeout_s: int = 300) -> bool:
        """Uninstall and wait for the resources to go; False if there was no such release."""
        try:
            self._run(self._command.uninstall(name, namespace=namespace, wait=True, timeout=f"{timeout_s}s"))
        except helm_errors.ReleaseNotFoundError:
            return False
        except helm_errors.Error as err:
            raise HelmError(f"uninstall {name}: {_stderr_line(err)}") from None
        return True
