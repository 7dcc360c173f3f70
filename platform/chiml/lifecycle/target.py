"""What `chiml train`/`chiml tune` run: a script path, or a ``module:function``.

A target is checked before anything is created on the platform (no run, no study), so a typo
leaves nothing behind. Invoking it runs the user's code in the current process: the train
runner is its own subprocess, and tuning workers run one trial after another in-process
(re-importing torch for every trial would cost seconds each).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import runpy
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiml.errors import ChimlError


@dataclass(frozen=True)
class Target:
    """A resolved target. ``script`` is an absolute path; ``module`` a dotted name or a .py path."""

    spec: str
    script: Path | None = None
    module: str | None = None
    function: str | None = None

    @property
    def label(self) -> str:
        """A short name for studies and run names (``train`` for ``examples/x/train.py``)."""
        if self.script is not None:
            return self.script.stem
        assert self.module is not None and self.function is not None
        return f"{Path(self.module).stem if self.module.endswith('.py') else self.module}.{self.function}"

    def invoke(self, argv: Sequence[str] = ()) -> Any:
        """Run the target here; returns the function's result (None for a script).

        A script runs as ``__main__`` with ``sys.argv`` set and its folder first on
        ``sys.path``, as ``python script.py`` would. ``SystemExit(0)``/``SystemExit(None)``
        count as success; any other exit code is raised as ``SystemExit``.
        """
        if self.script is not None:
            saved_argv, saved_path = sys.argv[:], sys.path[:]
            sys.argv = [str(self.script), *argv]
            sys.path.insert(0, str(self.script.parent))
            try:
                runpy.run_path(str(self.script), run_name="__main__")
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    raise
            finally:
                sys.argv, sys.path[:] = saved_argv, saved_path
            return None
        return self.load_function()()

    def source_file(self) -> Path | None:
        if self.script is not None:
            return self.script
        assert self.module is not None
        if self.module.endswith(".py"):
            return Path(self.module)
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        return Path(spec.origin) if spec is not None and spec.origin else None

    def declared_objective(self) -> tuple[str, str | None] | None:
        """``(metric, direction)`` of a literal ``ct.objective(...)`` call in the source, if any.

        Read statically: the study's direction must be known before any trial runs.
        """
        path = self.source_file()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8")) if path is not None else None
        except (OSError, SyntaxError, UnicodeDecodeError):
            return None
        for node in ast.walk(tree) if tree is not None else ():
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name != "objective":
                continue
            values = [a.value for a in node.args if isinstance(a, ast.Constant)]
            keywords = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            metric = values[0] if values else keywords.get("metric")
            direction = values[1] if len(values) > 1 else keywords.get("direction")
            if isinstance(metric, str):
                return metric, direction if isinstance(direction, str) else None
        return None

    def load_function(self) -> Callable[[], Any]:
        assert self.module is not None and self.function is not None
        if self.module.endswith(".py"):
            path = Path(self.module)
            spec = importlib.util.spec_from_file_location(f"chiml_target_{path.stem}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.parent))
            spec.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            module = importlib.import_module(self.module)
        func = getattr(module, self.function, None)
        if not callable(func):
            raise ChimlError(f"{self.spec}: {self.function!r} is not a function of {self.module}")
        return func


def resolve(spec: str, cwd: Path | None = None) -> Target:
    """Check ``spec`` and return the target; raises :class:`ChimlError` with what is wrong."""
    base = cwd or Path.cwd()
    spec = spec.strip()
    if not spec:
        raise ChimlError("no target given", hint="a script (train.py) or module:function")
    if ":" in spec and not Path(spec).exists():
        module, _, function = spec.rpartition(":")
        if not module or not function.isidentifier():
            raise ChimlError(f"{spec}: expected module:function")
        if module.endswith(".py"):
            path = (base / module).resolve()
            if not path.is_file():
                raise ChimlError(f"{spec}: no such file {path}")
            return Target(spec, module=str(path), function=function)
        top = module.split(".")[0]
        local = (base / top).is_dir() or (base / f"{top}.py").is_file()
        if not local and importlib.util.find_spec(top) is None:
            raise ChimlError(f"{spec}: module {module!r} not found", hint="run from the folder that holds it")
        return Target(spec, module=module, function=function)
    path = (base / spec).resolve()
    if not path.is_file():
        raise ChimlError(f"{spec}: no such script", hint="give a .py file or module:function")
    return Target(spec, script=path)
