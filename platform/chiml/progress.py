"""How library code reports progress: a callback taking one line of text.

Library code never prints or draws; long operations take ``progress: Progress`` (default
:func:`silent`) and call it with short human-readable lines ("waiting for mlflow", "trial 3/20
done"). Only the CLI renders them (a spinner on a terminal, plain lines when piped); a notebook
may pass ``print`` or a logger's ``info``.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def silent(_line: str) -> None:
    """The default progress callback: report nothing."""
