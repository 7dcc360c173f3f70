"""Reaching the nodes: SSH to the server's floating IP, and to agents through it (jump host).

Only the server has a floating IP; agents sit on the node network and are reached with a
``direct-tcpip`` channel opened through the server's SSH connection (what ``ProxyJump`` does).
Host keys are trusted on first use and pinned in a per-deployment known_hosts file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from chiml.errors import InvalidInputError


class NodeShell(Protocol):
    """Run a command on one node."""

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str, str]: ...

    def close(self) -> None: ...


class Connector(Protocol):
    """Opens shells on the server (host=None) or on an agent by its private address."""

    def connect(self, host: str | None = None) -> NodeShell: ...


@dataclass
class SSHTarget:
    user: str
    key_path: Path
    jump_host: str  # the server's floating IP
    known_hosts: Path
    connect_timeout_s: float = 15.0
    port: int = 22  # of the jump host; agents are always reached on 22 through it


class _ParamikoShell:
    def __init__(self, client: Any, closers: list[Any]) -> None:
        self._client = client
        self._closers = closers

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str, str]:
        _, stdout, stderr = self._client.exec_command(command, timeout=timeout)
        out = stdout.read().decode("utf-8", "replace")
        err = stderr.read().decode("utf-8", "replace")
        return stdout.channel.recv_exit_status(), out, err

    def close(self) -> None:
        for closer in [self._client, *self._closers]:
            # closing a dead connection must not mask the real error
            with contextlib.suppress(Exception):
                closer.close()


class ParamikoConnector:
    """The real connector (paramiko)."""

    def __init__(self, target: SSHTarget) -> None:
        import paramiko

        self.target = target
        path = target.key_path.expanduser()
        if not path.is_file():
            raise InvalidInputError(
                f"SSH private key {target.key_path} not found",
                hint="set chameleon.ssh_private_key to the key matching chameleon.key_name",
            )
        try:
            self._key = paramiko.PKey.from_path(path)
        except paramiko.PasswordRequiredException:
            raise InvalidInputError(
                f"SSH private key {path} is passphrase-protected", hint="use an unencrypted key for chiml"
            ) from None
        except (paramiko.SSHException, ValueError) as err:
            raise InvalidInputError(f"cannot read SSH private key {path}: {err}") from None

    def _client(self, host: str, sock: Any = None, port: int = 22) -> Any:
        import paramiko

        client = paramiko.SSHClient()
        self.target.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        self.target.known_hosts.touch(mode=0o600, exist_ok=True)
        client.load_host_keys(str(self.target.known_hosts))
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(
            host,
            port=port,
            username=self.target.user,
            # An explicit key object: with key_filename paramiko tries every key class and reports
            # the last parse error ("expected OPENSSH key") instead of "authentication failed".
            pkey=self._key,
            timeout=self.target.connect_timeout_s,
            banner_timeout=self.target.connect_timeout_s,
            auth_timeout=self.target.connect_timeout_s,
            sock=sock,
            allow_agent=False,
            look_for_keys=False,
        )
        client.save_host_keys(str(self.target.known_hosts))
        return client

    def connect(self, host: str | None = None) -> NodeShell:
        jump = self._client(self.target.jump_host, port=self.target.port)
        if host is None:
            return _ParamikoShell(jump, [])
        transport = jump.get_transport()
        channel = transport.open_channel("direct-tcpip", (host, 22), ("127.0.0.1", 0))
        return _ParamikoShell(self._client(host, sock=channel), [channel, jump])


def render_ssh_config(target: SSHTarget, server_name: str, agents: list[dict[str, Any]]) -> str:
    """An OpenSSH config naming every node, for `ssh -F` and the smoke tests' SSH backend."""
    common = (
        f"    User {target.user}\n"
        f"    IdentityFile {target.key_path.expanduser()}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {target.known_hosts}\n"
        "    StrictHostKeyChecking accept-new\n"
    )
    port = f"    Port {target.port}\n" if target.port != 22 else ""
    blocks = [f"Host {server_name}\n    HostName {target.jump_host}\n{port}{common}"]
    for agent in agents:
        blocks.append(
            f"Host {agent['name']}\n    HostName {agent['private_ip']}\n    ProxyJump {server_name}\n{common}"
        )
    return "# Written by chiml for this deployment; regenerated by `chiml up`.\n" + "\n".join(blocks)
