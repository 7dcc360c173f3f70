"""Install, upgrade and uninstall the platform's Helm releases, in order.

Contract (used by the kubernetes and chameleon profiles):

* :func:`install_platform` installs or upgrades every applicable release of helm/releases.yaml in
  order, each with ``--rollback-on-failure --wait`` so it is ready (or rolled back) when helm
  returns; a release whose chart version, values and (for our charts) chart files are unchanged
  is skipped; the first failure stops the run with the release's status and the recent warning
  events of its namespace. Progress is reported per release.
* :func:`uninstall_platform` uninstalls in reverse order, except the releases marked ``keep`` in
  helm/releases.yaml (their uninstall would destroy data: the KServe CRDs take every
  InferenceService with them, the PostgreSQL cluster takes its volumes); ``include_kept=True``
  removes those too.
* ``dry_run=True`` validates everything without touching the network (:func:`describe_plan`
  shows the plan).

What was installed is recorded per release under the ``kubernetes`` state key as soon as it
succeeds, so an interrupted run is resumed (not redone) by the next one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from chiml.cluster import ClusterDescription
from chiml.config import LoadedConfig
from chiml.errors import ChimlError, InvalidInputError
from chiml.images import load_catalog
from chiml.kube.helm import Helm, HelmError
from chiml.kube.kubeapi import KubeApi
from chiml.kube.releases import Release, ReleaseSet, load_releases
from chiml.kube.secrets import ensure_platform_secrets
from chiml.kube.values import RenderContext, load_values
from chiml.paths import repo_root
from chiml.plan import PlanSection
from chiml.progress import Progress, silent
from chiml.state import StateStore

STATE_KEY = "kubernetes"


@dataclass
class PlannedRelease:
    """A release resolved for one cluster: where its chart is, its final values, its fingerprint."""

    release: Release
    namespace: str
    chart_ref: str
    chart_name: str
    values_file: Path
    values: dict[str, Any]
    fingerprint: str

    @property
    def name(self) -> str:
        return self.release.name

    @property
    def helm_chart_label(self) -> str:
        """What `helm list` shows in its chart column: <chart name>-<chart version>."""
        return f"{self.chart_name}-{self.release.version}"


@dataclass
class Plan:
    releases: list[PlannedRelease]
    skipped: list[tuple[str, str]]  # (release, why)
    context: RenderContext
    release_set: ReleaseSet


@dataclass
class ReleaseResult:
    name: str
    version: str
    namespace: str
    action: str  # installed | upgraded | unchanged | would-install
    seconds: float = 0.0


@dataclass
class InstallResult:
    results: list[ReleaseResult] = field(default_factory=list)
    context: RenderContext | None = None


def helm_dir(loaded: LoadedConfig) -> Path:
    """Where releases.yaml, values/ and charts/ are (config, else the source checkout)."""
    configured = loaded.config.kubernetes.helm_dir
    if configured:
        path = Path(configured).expanduser()
        if not path.is_absolute() and loaded.path is not None:
            path = loaded.path.parent / path
        return path.resolve()
    root = repo_root()
    if root is None:
        raise InvalidInputError(
            "cannot find the helm/ directory (chiml is not running from a source checkout)",
            hint="set kubernetes.helm_dir in chiml.yaml to the checkout's helm/ directory",
        )
    return root / "helm"


def _chart_name(release: Release, release_set: ReleaseSet) -> str:
    if release.is_local:
        meta = yaml.safe_load((release_set.chart_path(release) / "Chart.yaml").read_text(encoding="utf-8"))
        return str(meta["name"])
    return release.chart.rstrip("/").rsplit("/", 1)[-1]


def fingerprint(release: Release, values: dict[str, Any], chart_digest: str | None) -> str:
    """Identity of what a release would be installed with: chart source, version, values, chart files."""
    doc = {
        "chart": release.chart,
        "repo": release.repo,
        "version": release.version,
        "values": values,
        "chart_digest": chart_digest,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def plan_platform(loaded: LoadedConfig, cluster: ClusterDescription, gpu: bool | None = None) -> Plan:
    """Resolve every release for this cluster; touches no network.

    ``gpu`` overrides ``cluster.has_gpu`` (a dry run that has not asked the cluster passes True
    so that GPU-only releases are listed, marked as such).
    """
    cfg = loaded.config.kubernetes
    release_set = load_releases(helm_dir(loaded))
    unknown = sorted(set(cfg.skip_releases) - {r.name for r in release_set})
    if unknown:
        raise InvalidInputError(f"kubernetes.skip_releases names unknown releases: {', '.join(unknown)}")
    context = RenderContext.for_cluster(cluster, cfg.namespace)
    # Our images' names come from services/images.yaml (the build's catalog), not the values files.
    catalog_file = release_set.helm_dir.parent / "services" / "images.yaml"
    catalog = load_catalog(catalog_file) if catalog_file.exists() else None
    planned, skipped = [], []
    applicable = release_set.applicable(cluster.has_gpu if gpu is None else gpu, cfg.skip_releases)
    for release in release_set:
        if release not in applicable:
            why = "skipped in chiml.yaml" if release.name in cfg.skip_releases else "no GPU nodes"
            skipped.append((release.name, why))
            continue
        values_file = release_set.values_path(release)
        values = load_values(values_file, context)
        if catalog is not None:
            values = catalog.apply(release.name, values)
        chart_ref = str(release_set.chart_path(release)) if release.is_local else release.chart
        planned.append(
            PlannedRelease(
                release=release,
                namespace=release.namespace_for(cfg.namespace),
                chart_ref=chart_ref,
                chart_name=_chart_name(release, release_set),
                values_file=values_file,
                values=values,
                fingerprint=fingerprint(release, values, release_set.chart_digest(release)),
            )
        )
    return Plan(planned, skipped, context, release_set)


def describe_plan(plan: Plan) -> PlanSection:
    """The plan as `chiml up --dry-run` shows it: the releases in install order, and what is left out."""
    rows = []
    for i, p in enumerate(plan.releases, 1):
        try:
            values_file = str(p.values_file.relative_to(plan.release_set.helm_dir.parent))
        except ValueError:
            values_file = str(p.values_file)
        when = "GPU nodes only" if p.release.when == "gpu" else "always"
        rows.append([str(i), p.name, p.release.describe_source(), p.release.version, p.namespace, values_file, when])
    lines = [f"not installed: {name} ({why})" for name, why in plan.skipped]
    lines.append(
        f"ingress domain: {plan.context.ingress_domain} (kubernetes.ingress_base_url); "
        f"storage class: {plan.context.storage_class}"
    )
    return PlanSection(
        "releases `chiml up` would install, in order",
        lines=lines,
        columns=["#", "release", "chart", "version", "namespace", "values file", "when"],
        rows=rows,
    )


def _up_to_date(helm: Helm, planned: PlannedRelease, listed: dict[str, Any] | None, recorded: dict[str, Any]) -> bool:
    """Unchanged = helm says deployed at this chart version, our record matches, and nobody edited its values."""
    if listed is None or listed.get("status") != "deployed":
        return False
    if listed.get("chart") != planned.helm_chart_label:
        return False
    if recorded.get("fingerprint") != planned.fingerprint:
        return False
    # catches `helm upgrade --set ...` done by hand since our last run
    return helm.user_values(planned.name, planned.namespace) == planned.values


def _failure(api: KubeApi | None, helm: Helm, planned: PlannedRelease, err: HelmError, since: datetime) -> ChimlError:
    """One line for the user; the status and events go in the hint (printed below it by the CLI)."""
    status = None
    with contextlib.suppress(HelmError):
        status = helm.status(planned.name, planned.namespace)
    state = status["info"]["status"] if status else "not installed (rolled back)"
    events: list[str] = []
    if api is not None:
        with contextlib.suppress(ChimlError):  # an unreachable API must not hide helm's own error
            events = api.warning_events(planned.namespace, since=since)
    detail = "; ".join(events[-5:]) if events else "no warning events"
    return ChimlError(
        f"release {planned.name} ({planned.release.describe_source()} {planned.release.version}) failed: "
        f"{err.stderr or err.message}",
        hint=f"release status: {state}; recent events in {planned.namespace}: {detail}",
    )


def _record(state: StateStore, update: Callable[[dict[str, Any]], None]) -> None:
    with state.edit() as doc:
        section = doc.setdefault(STATE_KEY, {})
        update(section)


def install_platform(
    loaded: LoadedConfig,
    cluster: ClusterDescription,
    dry_run: bool = False,
    *,
    helm: Helm | None = None,
    api: KubeApi | None = None,
    progress: Progress = silent,
    assume_gpu: bool | None = None,
    retry_delay_s: float = 5.0,
) -> InstallResult:
    """Install or upgrade the platform on ``cluster`` (see the module docstring).

    A release with ``retries`` in releases.yaml is tried again after ``retry_delay_s`` when it
    fails (the pause KServe's own installer makes between its two attempts).
    """
    plan = plan_platform(loaded, cluster, gpu=assume_gpu if dry_run else None)
    if dry_run:  # nothing touched: what would be installed (see describe_plan)
        would = [ReleaseResult(p.name, p.release.version, p.namespace, "would-install") for p in plan.releases]
        return InstallResult(would, plan.context)

    cfg = loaded.config.kubernetes
    state = StateStore(loaded.home)
    helm = helm or Helm(kubeconfig=cluster.kubeconfig, context=cfg.context)
    api = api or KubeApi.from_kubeconfig(cluster.kubeconfig, cfg.context)
    helm.check_version()

    say = progress
    _record(
        state,
        lambda s: s.update(
            {
                "namespace": cfg.namespace,
                "kubeconfig": cluster.kubeconfig,
                "context": cfg.context,
                "cluster": cluster.to_json(),
                "ingress_domain": plan.context.ingress_domain,
                "ingress_scheme": plan.context.ingress_scheme,
            }
        ),
    )
    say(f"generating credentials in namespace {cfg.namespace}")
    created = ensure_platform_secrets(api, cfg.namespace)
    if created:
        say(f"generated secrets: {', '.join(created)} (see `chiml status --show-secrets`)")

    listed_by_ns: dict[str, dict[str, dict[str, Any]]] = {}
    recorded_all = (state.get(STATE_KEY) or {}).get("releases", {})
    result = InstallResult(context=plan.context)
    total = len(plan.releases)
    for i, planned in enumerate(plan.releases, 1):
        label = f"[{i}/{total}] {planned.name} {planned.release.version}"
        if planned.namespace not in listed_by_ns:
            listed_by_ns[planned.namespace] = helm.releases(planned.namespace)
        listed = listed_by_ns[planned.namespace].get(planned.name)
        started = time.monotonic()
        if _up_to_date(helm, planned, listed, recorded_all.get(planned.name, {})):
            result.results.append(ReleaseResult(planned.name, planned.release.version, planned.namespace, "unchanged"))
            say(f"{label}: unchanged")
            continue
        action = "upgraded" if listed is not None else "installed"
        say(f"{label}: {'upgrading' if listed else 'installing'} and waiting for readiness")
        since = datetime.now(UTC)
        attempts = 1 + planned.release.retries
        for attempt in range(1, attempts + 1):
            try:
                out = helm.install_or_upgrade(
                    planned.name,
                    planned.chart_ref,
                    planned.values,
                    namespace=planned.namespace,
                    version=None if planned.release.is_local else planned.release.version,
                    repo=planned.release.repo,
                    timeout_s=planned.release.timeout_seconds(cfg.helm_timeout_scale),
                )
                break
            except HelmError as err:
                if attempt == attempts:
                    raise _failure(api, helm, planned, err, since) from None
                # --rollback-on-failure left nothing half-done: the next attempt starts clean
                say(f"{label}: attempt {attempt} failed ({err.stderr or err.message}); retrying")
                time.sleep(retry_delay_s)
        seconds = time.monotonic() - started
        revision = out.get("version") if isinstance(out, dict) else None

        def remember(section: dict[str, Any], planned: PlannedRelease = planned, revision: Any = revision) -> None:
            section.setdefault("releases", {})[planned.name] = {
                "namespace": planned.namespace,
                "chart": planned.release.describe_source(),
                "version": planned.release.version,
                "fingerprint": planned.fingerprint,
                "revision": revision,
                # position in releases.yaml: stable whatever subset a run installs
                "order": [r.name for r in plan.release_set].index(planned.name),
                # remembered so that `down` keeps it even if releases.yaml cannot be read then
                "keep": planned.release.keep,
                "updated": datetime.now(UTC).isoformat(),
            }

        _record(state, remember)
        result.results.append(ReleaseResult(planned.name, planned.release.version, planned.namespace, action, seconds))
        say(f"{label}: {action} in {seconds:.0f}s")
    _record(state, lambda s: s.update({"installed_at": datetime.now(UTC).isoformat()}))
    return result


def uninstall_platform(
    loaded: LoadedConfig,
    cluster: ClusterDescription,
    *,
    helm: Helm | None = None,
    progress: Progress = silent,
    include_kept: bool = False,
) -> list[str]:
    """Uninstall the releases chiml installed, in reverse install order; returns those removed.

    What survives a `down` (docs/kubernetes.md, "What `down` keeps"): the releases marked
    ``keep`` (the KServe CRDs with every InferenceService, the CloudNativePG operator and the
    PostgreSQL cluster with its volumes) stay installed unless ``include_kept`` is set; the
    SeaweedFS volumes (StatefulSet claims, which Kubernetes never deletes with the StatefulSet)
    and the generated Secrets stay in any case. A failure stops the run and leaves the rest
    recorded, so the next `down` resumes where this one stopped.
    """
    cfg = loaded.config.kubernetes
    state = StateStore(loaded.home)
    recorded: dict[str, Any] = (state.get(STATE_KEY) or {}).get("releases", {})
    # Reverse of the order they were installed in; releases.yaml's order for anything unrecorded.
    try:
        release_set: ReleaseSet | None = load_releases(helm_dir(loaded))
    except ChimlError:
        release_set = None
    order = [r.name for r in release_set] if release_set is not None else []
    names = sorted(recorded, key=lambda n: recorded[n].get("order", order.index(n) if n in order else 0), reverse=True)
    kept = _kept(recorded, release_set)
    if not include_kept:
        names = [n for n in names if n not in kept]

    say = progress

    removed: list[str] = []
    if names:
        helm = helm or Helm(kubeconfig=cluster.kubeconfig, context=cfg.context)
        for i, name in enumerate(names, 1):
            namespace = recorded[name]["namespace"]
            say(f"[{i}/{len(names)}] uninstalling {name}")
            try:
                existed = helm.uninstall(name, namespace)
            except HelmError as err:
                raise ChimlError(
                    f"uninstall of {name} failed: {err.stderr or err.message}",
                    hint="fix the cause and run `chiml down` again: it resumes with the releases left",
                ) from None
            _record(state, functools.partial(_forget, name=name))
            removed.append(name)
            say(f"{name}: {'uninstalled' if existed else 'already gone'}")
    left = sorted(n for n in kept if n in recorded and n not in removed)
    if left:
        say(f"kept (they hold data): {', '.join(left)}")
    return removed


def _kept(recorded: dict[str, Any], release_set: ReleaseSet | None) -> set[str]:
    """Releases `down` leaves installed: marked ``keep`` now, or when they were installed."""
    kept = {name for name, rec in recorded.items() if rec.get("keep")}
    if release_set is not None:
        kept |= {r.name for r in release_set if r.keep}
    return kept


def _forget(section: dict[str, Any], name: str) -> None:
    section.get("releases", {}).pop(name, None)
