"""Our charts' pods for real: rendered with helm/values (and the images from services/images.yaml,
as `chiml up` sets them), run under podman as a kubelet would, ready by their readinessProbe.
The ClusterServingRuntimes' pods are in test_serving_runtimes.py, the MLflow chart's in
test_mlflow_image.py."""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
import yaml
from charts import REPO, render
from podman_kubelet import HOST_LOOPBACK, Kubelet, PodFailed, pods_of

from chiml.images import load_catalog


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.loads(response.read())


def _dig(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_values_name_exactly_the_images_the_build_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The image lines in helm/values and our charts' defaults are what services/images.yaml
    builds, and no chiml image is named anywhere in helm/ that the build does not make."""
    monkeypatch.delenv("CHIML_IMAGE_REGISTRY", raising=False)
    catalog = load_catalog()
    checked = 0
    owners = [owner for image in catalog.images.values() for owner in (image, *image.variants)]
    for owner in owners:  # an image, or a variant naming its own tag (the trainer's notebooks builds)
        for release, keys in owner.helm.items():
            sources = [REPO / "helm" / "values" / f"{release}.yaml", REPO / "helm" / "charts" / release / "values.yaml"]
            for dotted in keys:
                expected = catalog.helm_settings(release)[dotted]
                found = [(p, _dig(yaml.safe_load(p.read_text()) or {}, dotted)) for p in sources if p.exists()]
                named = [(p, v) for p, v in found if v is not None]
                for path, value in named:
                    where = f"{path.relative_to(REPO)}: {dotted}"
                    assert str(value) == expected, f"{where} is {value!r}, the build makes {expected!r}"
                    checked += 1
    assert checked >= 10
    built = {catalog.repository(name) for name in catalog.images}
    pattern = re.compile(re.escape(catalog.registry) + r"/[a-z0-9-]+")
    for path in (REPO / "helm").rglob("*.yaml"):
        for repository in pattern.findall(path.read_text()):
            assert repository in built, f"{path.relative_to(REPO)} names {repository}, which no Dockerfile builds"


def test_optuna_dashboard_pod_shows_a_study(catalog, podman, built, postgres) -> None:
    import optuna

    built("optuna-dashboard")
    database = postgres.database("optuna")
    url = f"postgresql+psycopg2://{postgres.user}:{postgres.password}@127.0.0.1:{postgres.port}/{database}"
    study = optuna.create_study(study_name="image-test-study", storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=3)
    values = yaml.safe_load((REPO / "helm" / "values" / "optuna-dashboard.yaml").read_text())["storage"]
    chart = yaml.safe_load((REPO / "helm" / "charts" / "optuna-dashboard" / "values.yaml").read_text())["storage"]
    manifests = render("optuna-dashboard", catalog, overrides={"storage.port": postgres.port})
    (pod,) = pods_of(manifests)
    kubelet = Kubelet(podman, secrets={values["existingSecret"]: {chart["usernameKey"]: postgres.user,
                                                                 chart["passwordKey"]: postgres.password}},
                      hosts={values["host"]: HOST_LOOPBACK})
    running = kubelet.run(pod)
    try:
        port = running.ports["optuna-dashboard"][8080]
        studies = _get(port, "/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["image-test-study"]
        detail = _get(port, f"/api/studies/{studies[0]['study_id']}")
        assert len(detail["trials"]) == 3
    finally:
        kubelet.stop(running)


def test_tensorboard_pod_shows_a_runs_scalars(catalog, podman, built) -> None:
    """The chart's pod with its log root in a folder (no S3 server here) holding one run's events.

    The chart's schema only takes s3://, gs:// or file:// URIs, and TensorBoard without
    TensorFlow reads local paths and s3:// only, so the rendered --logdir is swapped for the
    plain path of the folder standing in for the bucket."""
    from tensorboard.summary import Writer  # noqa: F401 (tensorboard is in the venv)
    from torch.utils.tensorboard import SummaryWriter

    built("tensorboard")
    tmp = podman.tmpdir()
    logs = tmp / "logs" / "exp" / "run-1"
    logs.mkdir(parents=True)
    writer = SummaryWriter(str(logs))
    for step in range(5):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.close()
    for path in [tmp, *tmp.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    manifests = render("tensorboard", catalog, overrides={"logdir.reloadInterval": 1})
    (pod,) = pods_of(manifests)
    (container,) = pod.spec["containers"]
    logdir = [a for a in container["args"] if a.startswith("--logdir=s3://")]
    assert len(logdir) == 1, container["args"]
    container["args"] = [("--logdir=/tmp/logs" if a in logdir else a) for a in container["args"]]
    pod.extra_volumes["tmp"] = (tmp, False)  # the pod's /tmp emptyDir, with the log root in it
    values = yaml.safe_load((REPO / "helm" / "charts" / "tensorboard" / "values.yaml").read_text())["logdir"]
    keys = {values["accessKeyKey"]: "k", values["secretKeyKey"]: "s"}
    kubelet = Kubelet(podman, secrets={values["existingSecret"]: keys})
    running = kubelet.run(pod)
    try:
        port = running.ports["tensorboard"][6006]
        deadline = time.monotonic() + 90
        while "exp/run-1" not in (runs := _get(port, "/data/runs")):
            assert time.monotonic() < deadline, f"TensorBoard lists no run exp/run-1, only {runs}"
            time.sleep(2)
        points = _get(port, "/data/plugin/scalars/scalars?run=exp/run-1&tag=loss")
        assert [p[1] for p in points] == [0, 1, 2, 3, 4]
        assert points[-1][2] == pytest.approx(0.2)
    finally:
        kubelet.stop(running)


@pytest.mark.parametrize("release", ["optuna-dashboard", "tensorboard"])
def test_chart_naming_an_image_the_build_did_not_make_fails(release: str, catalog, podman) -> None:
    """A chart and a build that disagree (here: the tag) cannot pass: the pod never starts."""
    manifests = render(release, catalog, overrides={"image.tag": catalog.version + "-other"})
    (pod,) = pods_of(manifests)
    kubelet = Kubelet(podman, secrets={"postgres-cluster-app": {"username": "u", "password": "p"},
                                       "chiml-s3": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}})
    with pytest.raises(PodFailed, match="ErrImagePull"):
        kubelet.run(pod)


def test_tensorrt_runtime_cannot_be_built_here_and_says_why(catalog) -> None:
    from chiml import images
    from chiml.errors import ChimlError

    reason = catalog.get("serving-tensorrt").unbuildable
    assert reason and "nvcr.io" in reason
    with pytest.raises(ChimlError, match=r"serving-tensorrt cannot be built here: .*nvcr\.io"):
        images.build(["serving-tensorrt"], catalog=catalog, offline=True)

