"""A small SSH server (paramiko's server side) standing in for the Chameleon nodes.

The client under test is the real :class:`chiml.chameleon.ssh.ParamikoConnector`; only the
machines are fake. The "server" node answers commands from a table and forwards ``direct-tcpip``
channels (what ProxyJump uses) to the "agent" nodes it knows by private address, each of which is
another instance of this server on a loopback port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

Responder = Callable[[str], tuple[int, str, str]]


class _Interface(paramiko.ServerInterface):
    def __init__(self, node: FakeSSHNode) -> None:
        self.node = node

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == self.node.user and key.get_base64() == self.node.authorized.get_base64()
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple, destination: tuple) -> int:
        if (destination[0], destination[1]) not in self.node.forwards:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        self.node.forwarded.append(destination[0])
        self.node.pending_forwards[chanid] = destination
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode()
        self.node.commands.append(text)

        def run() -> None:
            # paramiko sends the exec request's success reply only after this method returns;
            # answering before it would make the client see the channel closed first.
            time.sleep(0.05)
            code, out, err = self.node.respond(text)
            channel.sendall(out.encode())
            channel.sendall_stderr(err.encode())
            channel.send_exit_status(code)
            channel.close()

        threading.Thread(target=run, daemon=True).start()
        return True


class FakeSSHNode:
    def __init__(self, authorized_key: paramiko.PKey, respond: Responder, user: str = "cc") -> None:
        self.authorized = authorized_key
        self.respond = respond
        self.user = user
        self.host_key = paramiko.RSAKey.generate(1024)
        self.commands: list[str] = []
        self.forwards: dict[tuple[str, int], int] = {}  # (private address, 22) -> local port
        self.forwarded: list[str] = []
        self.pending_forwards: dict[int, tuple] = {}
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        self.transports.append(transport)
        transport.add_server_key(self.host_key)
        try:
            transport.start_server(server=_Interface(self))
        except (paramiko.SSHException, EOFError):
            return
        while transport.is_active():
            channel = transport.accept(timeout=0.5)
            if channel is None:
                continue
            destination = self.pending_forwards.pop(channel.get_id(), None)
            if destination is not None:
                threading.Thread(target=self._relay, args=(channel, self.forwards[destination]), daemon=True).start()

    @staticmethod
    def _relay(channel: paramiko.Channel, port: int) -> None:
        upstream = socket.create_connection(("127.0.0.1", port))

        def pump(src: object, dst: object, recv: Callable[[int], bytes], send: Callable[[bytes], object]) -> None:
            try:
                while True:
                    data = recv(32768)
                    if not data:
                        break
                    send(data)
            except OSError:
                pass
            finally:
                for end in (src, dst):
                    with contextlib.suppress(OSError):
                        end.close()  # type: ignore[attr-defined]

        threading.Thread(target=pump, args=(channel, upstream, channel.recv, upstream.sendall), daemon=True).start()
        pump(upstream, channel, upstream.recv, channel.sendall)

    def known_host_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}"

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for transport in self.transports:
            transport.close()


def write_client_key(path: Path) -> paramiko.RSAKey:
    key = paramiko.RSAKey.generate(1024)
    key.write_private_key_file(str(path))
    return key
