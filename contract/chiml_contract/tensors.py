"""``TensorSpec``: one named tensor of a model's interface (the only class of that name in chiml)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chiml_contract import datatypes


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: V2 datatype and shape, ``-1`` marking a dynamic dimension (the batch axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "datatype", datatypes.get(self.datatype).name)
        object.__setattr__(self, "shape", tuple(int(dim) for dim in self.shape))
        if any(dim < -1 for dim in self.shape):
            raise ValueError(f"tensor {self.name!r}: dimensions are sizes or -1, not {list(self.shape)}")

    @classmethod
    def of_numpy(cls, name: str, dtype: Any, shape: Sequence[int]) -> TensorSpec:
        """From a numpy dtype (or its name): ``TensorSpec.of_numpy("x", "float32", [-1, 4])``."""
        return cls(name, datatypes.from_numpy(str(getattr(dtype, "name", dtype))), tuple(shape))

    @property
    def dtype(self) -> str:
        """The numpy dtype name (``float32``); BYTES is ``object``."""
        return datatypes.get(self.datatype).numpy

    @property
    def numpy_dtype(self) -> Any:
        import numpy as np  # the control plane reads specs without needing numpy at import time

        return np.dtype(self.dtype)

    def shape_matches(self, shape: Sequence[int]) -> bool:
        """Same rank, and every fixed dimension equal."""
        return len(shape) == len(self.shape) and all(
            want == -1 or want == got for want, got in zip(self.shape, shape, strict=True)
        )

    def to_metadata(self) -> dict[str, Any]:
        """The V2 metadata form: ``{"name", "datatype", "shape"}``."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        """Either form: V2 metadata (``datatype``) or a format-1 ``chiml-runtime.json`` entry (``dtype``)."""
        if "datatype" in data:
            return cls(str(data["name"]), str(data["datatype"]), tuple(data["shape"]))
        return cls.of_numpy(str(data["name"]), str(data["dtype"]), data["shape"])

    def to_json(self) -> dict[str, Any]:
        """The ``chiml-runtime.json`` form (numpy dtype name, as format 1 readers expect)."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def shape_text(shape: Sequence[int]) -> str:
    """``[1, 64]``: how shapes appear in error messages."""
    return "[" + ", ".join(str(dim) for dim in shape) + "]"
