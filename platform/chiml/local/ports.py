"""Ports on 127.0.0.1: is one free, and who holds it (for the error message)."""

from __future__ import annotations

import socket

import psutil

LOOPBACK = "127.0.0.1"


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the servers use it: a listener blocks the bind, TIME_WAIT leftovers don't.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str:
    """`` by NAME (pid N)`` for the process listening on ``port``, else "" (best effort: may need privileges)."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f" by {proc.name()} (pid {conn.pid})"
    except (psutil.Error, OSError):
        pass
    return ""
