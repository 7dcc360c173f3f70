"""Running Terraform: a thin wrapper around ``terraform -json`` with streamed progress.

python-terraform 0.10.1 (2019, unmaintained) is not used for the runs themselves: its
``destroy()`` always adds ``-force``, which Terraform >= 0.15 rejects; it cannot stream output
(so no progress during a 20-minute bare-metal apply); ``output()`` returns None on error and
``raise_on_error`` defaults to False. Instead every call here runs the binary directly, reads
Terraform's machine-readable UI stream (``-json``) line by line for progress and diagnostics,
and checks the return code.

Each deployment has its own working directory under CHIML_HOME (a copy of the root module,
terraform/, with its modules, plus its state), so state is never in the source tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError

Progress = Callable[[str], None]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class TerraformResult:
    returncode: int
    errors: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    plain: str = ""  # non-JSON output (e.g. of `output -json`, `version -json`)


def _diagnostic_text(event: dict[str, Any]) -> str:
    diag = event.get("diagnostic") or {}
    summary = diag.get("summary") or event.get("@message", "")
    detail = (diag.get("detail") or "").strip().splitlines()
    address = diag.get("address")
    where = f" ({address})" if address else ""
    return f"{summary}{where}" + (f": {detail[0]}" if detail else "")


class Terraform:
    """One working directory, one root configuration."""

    def __init__(self, workdir: Path, binary: str | None = None, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.binary = binary or shutil.which("terraform") or ""
        self.env = {**os.environ, **(env or {}), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
        if not self.binary:
            raise ChimlError("terraform not found on PATH", hint="`make tools` installs the pinned terraform")

    @staticmethod
    def prepare(source: Path, workdir: Path) -> Path:
        """Copy the root module (``source``: its *.tf files and its modules/) into ``workdir``.

        Copying (not pointing at the source tree) keeps .terraform/ and the state out of git and
        lets a later checkout change the modules without touching a running deployment until the
        next `up`. A workdir that already holds a deployment keeps its .terraform/, lock file and
        state; only the configuration is replaced. Working directories made when the modules
        were copied beside the root (``workdir/../modules``) are moved to this layout.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        for child in workdir.rglob("*"):
            keep = ".terraform" in child.parts or child.name.startswith((".terraform", "terraform.tfstate"))
            if child.is_file() and not keep and child.suffix in (".tf", ".tftpl"):
                child.unlink()
        for tf in source.glob("*.tf"):
            shutil.copy2(tf, workdir / tf.name)
        # Never carry over what a hand-run `terraform init/apply` left in the source tree.
        ignore = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*", "*.tfvars*", "*.tfplan")
        shutil.copytree(source / "modules", workdir / "modules", dirs_exist_ok=True, ignore=ignore)
        old_modules = workdir.parent / "modules"
        if old_modules.is_dir():
            shutil.rmtree(old_modules)
        return workdir

    def _run(self, args: list[str], progress: Progress | None = None, stream_json: bool = True) -> TerraformResult:
        cmd = [self.binary, *args]
        try:
            proc = subprocess.Popen(
                cmd, cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        except OSError as err:
            raise ChimlError(f"cannot run terraform ({self.binary}): {err}") from None
        result = TerraformResult(returncode=-1)
        plain: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if not stream_json:
                plain.append(line)
                continue
            try:
                event = json.loads(line)
            except ValueError:
                plain.append(line)
                continue
            kind = event.get("type")
            if kind == "diagnostic" and event.get("@level") == "error":
                result.errors.append(_diagnostic_text(event))
            elif kind == "change_summary":
                result.summary = event.get("@message", "")
            elif kind == "outputs" and all("value" in v for v in (event.get("outputs") or {}).values()):
                result.outputs = {k: v["value"] for k, v in event["outputs"].items()}
            if progress and kind in ("apply_start", "apply_progress", "apply_complete", "apply_errored",
                                     "change_summary", "refresh_start"):
                progress(event.get("@message", ""))
        stderr = proc.stderr.read()
        result.returncode = proc.wait()
        if result.returncode != 0 and not result.errors:
            # Flag errors and the like are plain text on stderr even with -json.
            raw = _ANSI.sub("", stderr + "\n" + "\n".join(plain))
            text = [ln.strip(" │╷╵") for ln in raw.splitlines()]
            noise = ("CLI configuration", "terraformrc", "Warning:", "For more help")
            text = [ln for ln in text if ln and not any(n in ln for n in noise) and not ln.endswith(" -help")]
            result.errors.append(" ".join(text[:4]) or f"exit code {result.returncode}")
        result.plain = "\n".join(plain)
        return result

    def _check(self, what: str, result: TerraformResult) -> TerraformResult:
        if result.returncode != 0:
            raise ChimlError(f"terraform {what} failed: {'; '.join(result.errors)}")
        return result

    def version(self) -> str:
        result = self._check("version", self._run(["version", "-json"], stream_json=False))
        try:
            return json.loads(result.plain)["terraform_version"]
        except (ValueError, KeyError):
            raise ChimlError(f"cannot parse `terraform version -json`: {result.plain[:200]!r}") from None

    def init(self, progress: Progress | None = None) -> None:
        if progress:
            progress("terraform init (providers)")
        self._check("init", self._run(["init", "-input=false", "-no-color"], stream_json=False))

    def plan(self, var_file: Path, progress: Progress | None = None) -> TerraformResult:
        return self._check("plan", self._run(["plan", "-input=false", "-json", f"-var-file={var_file}"], progress))

    def apply(self, var_file: Path, progress: Progress | None = None) -> TerraformResult:
        return self._check(
            "apply", self._run(["apply", "-auto-approve", "-input=false", "-json", f"-var-file={var_file}"], progress)
        )

    def destroy(self, var_file: Path, progress: Progress | None = None, refresh: bool = True) -> TerraformResult:
        """Destroy everything in the state.

        Never ``-force`` (removed in Terraform 0.15): ``-auto-approve`` is the non-interactive flag.
        ``refresh=False`` is for a lease that has already ended: Blazar deleted the instances, and
        refreshing them (and the port looked up by instance) would fail; deleting what is already
        gone is a no-op for the provider.
        """
        args = ["destroy", "-auto-approve", "-input=false", "-json", f"-var-file={var_file}"]
        if not refresh:
            args.append("-refresh=false")
        return self._check("destroy", self._run(args, progress))

    def state_list(self) -> list[str]:
        """Addresses of every resource instance in the state (`terraform state list`)."""
        if not self.has_resources():
            return []  # the real command fails without a state file
        result = self._check("state list", self._run(["state", "list"], stream_json=False))
        return [line.strip() for line in result.plain.splitlines() if line.strip()]

    def forget(self, addresses: list[str], progress: Progress | None = None) -> None:
        """Drop resources from the state without touching them (`terraform state rm`).

        For what Blazar removes by itself when a lease ends: destroying it afterwards fails.
        """
        if not addresses:
            return
        if progress:
            progress(f"terraform state rm {' '.join(addresses)} (removed by Blazar with the lease)")
        self._check("state rm", self._run(["state", "rm", *addresses], stream_json=False))

    def output(self) -> dict[str, Any]:
        result = self._check("output", self._run(["output", "-json"], stream_json=False))
        try:
            data = json.loads(result.plain or "{}")
        except ValueError:
            raise ChimlError("terraform output -json did not return JSON") from None
        return {key: value["value"] for key, value in data.items()}

    def has_resources(self) -> bool:
        """Whether the state holds anything (read from the state file: no provider needed)."""
        state = self.workdir / "terraform.tfstate"
        if not state.is_file():
            return False
        try:
            return bool(json.loads(state.read_text(encoding="utf-8")).get("resources"))
        except ValueError:
            return True  # unreadable state: assume something is there, never claim it is clean
