"""Profiles: how `up`/`down`/`status` and the lifecycle map onto a kind of infrastructure.

Each profile lives in its own module and is imported only when chosen, so the local profile
never imports cloud libraries.
"""

from __future__ import annotations

import importlib

from chiml.config import LoadedConfig
from chiml.profiles.base import Profile, ServiceStatus

_PROFILE_CLASSES = {
    "local": "chiml.profiles.local:LocalProfile",
    "chameleon": "chiml.profiles.chameleon:ChameleonProfile",
    "kubernetes": "chiml.profiles.kubernetes:KubernetesProfile",
}


def get_profile(loaded: LoadedConfig) -> Profile:
    """Instantiate the profile the config names."""
    module_name, class_name = _PROFILE_CLASSES[loaded.profile].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(loaded)


__all__ = ["Profile", "ServiceStatus", "get_profile"]
