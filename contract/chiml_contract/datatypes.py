"""The V2 (Open Inference Protocol) datatypes, and how each maps to numpy.

This table is the single home of the mapping: the runtimes decode and encode tensors with it,
the control plane writes compiled-artifact specs with it, and metadata answers report it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Datatype:
    """One V2 datatype: its protocol name, the numpy dtype name, and bytes per element (0: variable)."""

    name: str
    numpy: str
    itemsize: int
    kind: str  # numpy's kind letter: b(ool) u(int) i(nt) f(loat) O(bject, BYTES)


DATATYPES: dict[str, Datatype] = {
    item.name: item
    for item in (
        Datatype("BOOL", "bool", 1, "b"),
        Datatype("UINT8", "uint8", 1, "u"),
        Datatype("UINT16", "uint16", 2, "u"),
        Datatype("UINT32", "uint32", 4, "u"),
        Datatype("UINT64", "uint64", 8, "u"),
        Datatype("INT8", "int8", 1, "i"),
        Datatype("INT16", "int16", 2, "i"),
        Datatype("INT32", "int32", 4, "i"),
        Datatype("INT64", "int64", 8, "i"),
        Datatype("FP16", "float16", 2, "f"),
        Datatype("FP32", "float32", 4, "f"),
        Datatype("FP64", "float64", 8, "f"),
        Datatype("BYTES", "object", 0, "O"),
    )
}
_BY_NUMPY = {item.numpy: item.name for item in DATATYPES.values()}
# numpy spellings that have no V2 twin of their own
_BY_NUMPY.update({"bytes": "BYTES", "str": "BYTES", "string": "BYTES", "unicode": "BYTES"})

#: MLflow column types (``ColSpec.type``) -> V2 datatype.
MLFLOW_COLUMN_TYPES: dict[str, str] = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


class UnknownDatatype(ValueError):
    """A name that is not a V2 datatype, or a numpy dtype that has none."""


def get(name: str) -> Datatype:
    """The V2 datatype called ``name`` (case-insensitive)."""
    try:
        return DATATYPES[name.upper()]
    except (KeyError, AttributeError):
        raise UnknownDatatype(
            f"unknown V2 datatype {name!r}: one of {', '.join(DATATYPES)}"
        ) from None


def from_numpy(dtype_name: str) -> str:
    """The V2 datatype of a numpy dtype name (``float32`` -> ``FP32``; strings -> ``BYTES``)."""
    name = str(dtype_name)
    if name in _BY_NUMPY:
        return _BY_NUMPY[name]
    if name.startswith(("<U", ">U", "|S", "<S", ">S", "U", "S")) and name.lstrip("<>|").lstrip("US").isdigit():
        return "BYTES"
    raise UnknownDatatype(f"numpy dtype {name} has no V2 datatype")


def can_cast_losslessly(source: str, target: str) -> bool:
    """Whether every value of V2 datatype ``source`` is exactly representable in ``target``.

    The rule numpy calls "safe" casting: booleans into anything numeric, an integer into a
    wider integer (unsigned into a strictly wider signed one), any integer of at most 16 bits
    (32 bits) into FP32 (FP64), a float into a wider float. BYTES only matches BYTES.
    """
    src, dst = get(source), get(target)
    if src.name == dst.name:
        return True
    if "O" in (src.kind, dst.kind):
        return False
    if src.kind == "b":
        return True
    if dst.kind == "b":
        return False
    if src.kind == "f":
        return dst.kind == "f" and dst.itemsize > src.itemsize
    if dst.kind == "f":
        # an integer's value fits in the float's mantissa (FP16: 11 bits, FP32: 24, FP64: 53)
        mantissa = {2: 11, 4: 24, 8: 53}[dst.itemsize]
        bits = src.itemsize * 8 - (1 if src.kind == "i" else 0)
        return bits <= mantissa
    if src.kind == dst.kind:
        return dst.itemsize > src.itemsize
    if src.kind == "u":  # unsigned into a wider signed integer
        return dst.itemsize > src.itemsize
    return False  # signed into unsigned loses negatives
