"""chiml.yaml: one pydantic-validated document, one section per concern.

Sections live in their own modules so that each capability owns its settings. A file is
optional: with none, the local defaults apply. Validation errors become one line naming the
field and the problem (:class:`chiml.errors.ConfigError`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from chiml.config.base import Section
from chiml.config.chameleon import ChameleonConfig
from chiml.config.kubernetes import KubernetesConfig
from chiml.config.local import LocalConfig
from chiml.config.optimize import OptimizeConfig
from chiml.config.serving import ServingConfig
from chiml.config.training import TrainingConfig
from chiml.errors import ConfigError
from chiml.paths import find_config, find_home

ProfileName = Literal["local", "chameleon", "kubernetes"]
PROFILES: tuple[str, ...] = ("local", "chameleon", "kubernetes")


class ChimlConfig(Section):
    """The whole chiml.yaml."""

    profile: ProfileName = Field("local", description="which profile `up` brings up")
    local: LocalConfig = LocalConfig()
    chameleon: ChameleonConfig = ChameleonConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    serving: ServingConfig = ServingConfig()
    training: TrainingConfig = TrainingConfig()
    optimize: OptimizeConfig = OptimizeConfig()


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus where it came from and where its state lives."""

    config: ChimlConfig
    path: Path | None
    home: Path

    @property
    def profile(self) -> str:
        return self.config.profile


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line: the first failing field's dotted path and pydantic's message."""
    first = err.errors()[0]
    # a key is shown as written unless it holds what would break the line (repr: '\n' -> "'\\n'")
    location = ".".join(str(part) if str(part).isprintable() and str(part) else repr(part)
                        for part in first["loc"]) or "(top level)"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {location}: {first['msg']}{more}"


def parse_config(data: object, source: str = "chiml.yaml") -> ChimlConfig:
    """Validate a parsed YAML document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, not {type(data).__name__}")
    try:
        return ChimlConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(
    config: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    cwd: Path | None = None,
) -> LoadedConfig:
    """Find, read and validate the config; ``profile`` overrides the file's choice."""
    path = find_config(config, cwd=cwd)
    data: object = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}): save it as UTF-8") from None
    cfg = parse_config(data, source=str(path) if path else "defaults")
    if profile is not None:
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
        cfg = cfg.model_copy(update={"profile": profile})
    return LoadedConfig(config=cfg, path=path, home=find_home(path, cwd=cwd))


__all__ = [
    "PROFILES",
    "ChameleonConfig",
    "ChimlConfig",
    "KubernetesConfig",
    "LoadedConfig",
    "LocalConfig",
    "OptimizeConfig",
    "ServingConfig",
    "TrainingConfig",
    "load_config",
    "parse_config",
]
