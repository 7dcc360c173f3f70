"""How library code reports progress (a callback taking one line of text) and asks before an
irreversible step (a callback answering a question).

Library code never prints or draws; long operations take ``progress: Progress`` (default
:func:`silent`) and call it with short human-readable lines ("waiting for mlflow", "trial 3/20
done"). Only the CLI renders them (a spinner on a terminal, plain lines when piped); a notebook
may pass ``print`` or a logger's ``info``.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]

#: Asked before an irreversible step with the question; True goes ahead. Library code that has
#: none refuses the step instead of reading a terminal.
Confirm = Callable[[str], bool]


def silent(_line: str) -> None:
    """The default progress callback: report nothing."""
