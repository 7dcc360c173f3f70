"""The model to optimize: a registered MLflow model version, downloaded, with its signature and
held-out inputs (the input example logged with it, or a sample the user gives)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chiml.errors import ChimlError, InvalidInputError, NotSupportedError
from chiml.lifecycle.mlflow_client import ModelURI, client, resolve_model_version

SUPPORTED_FLAVORS = ("pytorch", "sklearn")
@dataclass
class InputSpec:
    name: str
    dtype: str
    shape: list[int]
    columns: list[str] | None = None  # a column-based (DataFrame) signature


@dataclass
class SourceModel:
    """A registered model version, downloaded locally."""

    uri: str
    name: str
    version: str
    run_id: str | None
    local_dir: Path
    flavor: str
    inputs: list[InputSpec]
    sample: dict[str, np.ndarray]
    sample_origin: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def pinned_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _schema_inputs(signature: Any) -> list[InputSpec]:
    schema = signature.inputs
    if schema.is_tensor_spec():
        specs = []
        for index, item in enumerate(schema.inputs):
            name = item.name or ("input" if len(schema.inputs) == 1 else f"input_{index}")
            shape = [int(dim) for dim in item.shape]
            if shape:
                shape[0] = -1  # the batch axis is always dynamic
            specs.append(InputSpec(name, np.dtype(item.type).name, shape))
        return specs
    names = [item.name for item in schema.inputs]
    columns: list[str] | None = None if any(name is None for name in names) else names
    # column signatures are fed to the compiled model as one float32 matrix
    return [InputSpec("input", "float32", [-1, len(schema.inputs)], columns=columns)]


def _as_arrays(value: Any, inputs: list[InputSpec]) -> dict[str, np.ndarray]:
    import pandas as pd

    if isinstance(value, dict):
        arrays = {str(k): np.asarray(v) for k, v in value.items()}
        if len(inputs) == 1 and len(arrays) == 1:
            return {inputs[0].name: next(iter(arrays.values()))}
        return arrays
    if isinstance(value, pd.DataFrame):
        columns = inputs[0].columns
        frame = value[columns] if columns and set(columns) <= set(value.columns) else value
        return {inputs[0].name: frame.to_numpy()}
    return {inputs[0].name: np.asarray(value)}


def load_sample_file(path: Path, inputs: list[InputSpec] | None) -> dict[str, np.ndarray]:
    """A user's held-out inputs: .npy (one input), .npz (named inputs) or .csv (one matrix)."""
    if not path.is_file():
        raise InvalidInputError(f"sample file not found: {path}")
    first = inputs[0].name if inputs else "input"
    try:
        if path.suffix == ".npy":
            return {first: np.load(path)}
        if path.suffix == ".npz":
            with np.load(path) as data:
                arrays = {name: data[name] for name in data.files}
            if len(arrays) == 1 and inputs and len(inputs) == 1:
                return {first: next(iter(arrays.values()))}
            return arrays
        if path.suffix == ".csv":
            import pandas as pd

            return {first: pd.read_csv(path).to_numpy()}
    except (OSError, ValueError) as err:
        raise InvalidInputError(f"cannot read sample {path}: {err}") from None
    raise InvalidInputError(f"sample {path} must be .npy, .npz or .csv")


def finish_sample(sample: dict[str, np.ndarray], inputs: list[InputSpec], origin: str) -> dict[str, np.ndarray]:
    """Cast the held-out inputs to the model's dtypes and check names and shapes."""
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in sample:
            raise InvalidInputError(f"{origin} has no input {spec.name!r} (it has {sorted(sample)})")
        try:
            array = np.asarray(sample[spec.name], dtype=spec.dtype)
        except (TypeError, ValueError) as err:
            raise InvalidInputError(f"{origin}: input {spec.name!r} is not {spec.dtype}: {err}") from None
        if array.ndim == len(spec.shape) - 1:
            array = array[None, ...]
        if array.ndim != len(spec.shape) or any(e not in (-1, a) for e, a in zip(spec.shape, array.shape,
                                                                                    strict=True)):
            raise InvalidInputError(f"{origin}: input {spec.name!r} has shape {list(array.shape)}, "
                                    f"the signature says {spec.shape}")
        out[spec.name] = np.ascontiguousarray(array)
    return out


def resolve_source(tracking_uri: str, model_uri: str, workdir: Path, sample_path: Path | None = None) -> SourceModel:
    """Find, download and describe the model version; fail before anything is written to MLflow."""
    import mlflow
    from mlflow.models import Model

    ref = ModelURI.parse(model_uri)
    mlflow_client = client(tracking_uri)
    version = resolve_model_version(mlflow_client, ref)
    local_dir = workdir / "source"
    local_dir.mkdir(parents=True, exist_ok=True)
    pinned = f"models:/{ref.name}/{version.version}"
    try:
        # the version's storage location, not the models:/ URI: that one would be resolved
        # against mlflow's process-global registry URI rather than this platform's
        location = mlflow_client.get_model_version_download_uri(ref.name, version.version)
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(local_dir),
                                                        tracking_uri=tracking_uri))
    except Exception as err:
        raise ChimlError(f"cannot download {pinned}: {err}") from None
    mlmodel = Model.load(str(path))
    flavor = next((name for name in SUPPORTED_FLAVORS if name in mlmodel.flavors), None)
    if flavor is None:
        flavors = ", ".join(sorted(k for k in mlmodel.flavors if k != "python_function")) or "pyfunc only"
        raise NotSupportedError(
            f"{model_uri} is a {flavors} model: chiml optimize handles PyTorch and scikit-learn models"
        )

    if mlmodel.signature is not None:
        inputs = _schema_inputs(mlmodel.signature)
    elif sample_path is not None:
        raw = load_sample_file(sample_path, None)
        inputs = [InputSpec(name, np.asarray(a).dtype.name if np.asarray(a).dtype.kind == "f" else "float32",
                            [-1, *np.asarray(a).shape[1:]]) for name, a in raw.items()]
    else:
        raise InvalidInputError(f"{model_uri} has no signature: chiml cannot know its input shapes",
                                hint="log the model with a signature (or input_example), or pass --sample FILE")

    if sample_path is not None:
        sample, origin = load_sample_file(sample_path, inputs), f"sample {sample_path}"
    else:
        example = mlmodel.load_input_example(str(path)) if mlmodel.saved_input_example_info else None
        if example is None:
            raise InvalidInputError(f"{model_uri} has no input example to check the compiled model against",
                                    hint="log the model with input_example=..., or pass --sample FILE (.npy/.npz/.csv)")
        sample, origin = _as_arrays(example, inputs), "the model's input example"
    sample = finish_sample(sample, inputs, origin)
    return SourceModel(uri=model_uri, name=ref.name, version=str(version.version), run_id=version.run_id,
                       local_dir=path, flavor=flavor, inputs=inputs, sample=sample, sample_origin=origin,
                       tags=dict(version.tags or {}))
