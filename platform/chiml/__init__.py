"""chiml: a SageMaker-like ML platform for Chameleon Cloud.

The public entry point for notebooks and scripts is :class:`chiml.Platform`::

    from chiml import Platform
    p = Platform.connect()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from chiml.sdk import Platform

__all__ = ["Platform", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy so that `import chiml` (done by every CLI call) stays cheap.
    if name == "Platform":
        from chiml.sdk import Platform

        return Platform
    raise AttributeError(name)
