"""Start a supervised program after stopping what an earlier run of it left behind.

supervisord watches one PID per program. When that process dies abruptly (SIGKILL, the
out-of-memory killer) its own children can survive it: ``mlflow server`` runs uvicorn as a
child, which keeps serving on the port, so every restart fails with "address already in use"
while the health check is answered by an unsupervised orphan. supervisord therefore starts each
program as ``python -m chiml.local.exec_program NAME -- COMMAND...``: this stops every live
process tagged with the same program (``CHIML_PROGRAM`` and ``CHIML_SUPERVISOR`` are inherited
through fork and exec) and then *execs* the command, so the PID supervisord watches is the
service itself and nothing of this wrapper stays.
"""

from __future__ import annotations

import contextlib
import os
import sys

import psutil


def leftovers(supervisor: str, program: str) -> list[psutil.Process]:
    """Live processes of an earlier run of this program (never this process or its parents)."""
    spared = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in spared:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("CHIML_SUPERVISOR") == supervisor and env.get("CHIML_PROGRAM") == program:
            found.append(proc)
    return found


def stop(processes: list[psutil.Process], timeout: float = 10.0) -> None:
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(processes, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m chiml.local.exec_program NAME -- COMMAND [ARG...]")
    name, command = argv[0], argv[2:]
    supervisor = os.environ.get("CHIML_SUPERVISOR")
    os.environ["CHIML_PROGRAM"] = name
    if supervisor:
        left = leftovers(supervisor, name)
        if left:
            print(f"chiml: stopping {len(left)} process(es) left by an earlier run of {name}", flush=True)
            stop(left)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
