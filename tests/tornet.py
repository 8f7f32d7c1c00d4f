"""A private Tor network on 127.0.0.1 for end-to-end tests: 3 authorities, 3 relays, clients, onion hosts."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Linux picks outgoing source ports from 32768-60999; ports there can be taken by any
# connection between our choosing and binding them (FIELD-NOTES §6), so stay below.
PORT_LO, PORT_HI = 20000, 32000
LOOPBACK = "127.0.0.1"

# Options every node of the test network shares (FIELD-NOTES §6).
_TESTING_LINES = [
    "TestingTorNetwork 1",
    "PathsNeededToBuildCircuits 0.67",
    "TestingDirAuthVoteHSDir *",
    "TestingDirAuthVoteGuard *",
    "TestingDirAuthVoteExit *",
    "TestingMinExitFlagThreshold 0",
    "V3AuthNIntervalsValid 2",
    "ShutdownWaitLength 0",
    "GeoIPFile",
    "GeoIPv6File",
]

_AUTHORITY_LINES = [
    "AuthoritativeDirectory 1",
    "V3AuthoritativeDirectory 1",
    "AssumeReachable 1",
    "V3AuthVotingInterval 10",
    "V3AuthVoteDelay 2",
    "V3AuthDistDelay 2",
    "TestingV3AuthInitialVotingInterval 10",
    "TestingV3AuthInitialVoteDelay 2",
    "TestingV3AuthInitialDistDelay 2",
    "ExitRelay 0",
    "ExitPolicy reject *:*",
]


class PortPicker:
    """Free loopback ports below the ephemeral range, never the same one twice."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._used: set[int] = set()

    def __call__(self) -> int:
        for _ in range(1000):
            port = self._rng.randrange(PORT_LO, PORT_HI)
            if port in self._used:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind((LOOPBACK, port))
                except OSError:
                    continue
            self._used.add(port)
            return port
        raise RuntimeError("no free loopback port found")


@dataclass
class Node:
    """One tor process of the network."""

    name: str
    role: str
    directory: Path
    lines: list[str]
    or_port: int = 0
    dir_port: int = 0
    socks_port: int = 0
    control_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def torrc(self) -> Path:
        return self.directory / "torrc"

    @property
    def log(self) -> Path:
        return self.directory / "notice.log"

    @property
    def cookie(self) -> Path:
        return self.directory / "control_auth_cookie"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class TorNetwork:
    """Build, start in phases (FIELD-NOTES §6), and stop a loopback Tor network."""

    base: Path
    tor: str = "tor"
    ports: PortPicker = field(default_factory=PortPicker)
    authorities: list[Node] = field(default_factory=list)
    relays: list[Node] = field(default_factory=list)
    others: list[Node] = field(default_factory=list)
    dir_authority_lines: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    # -- configuration --------------------------------------------------------------

    def join_lines(self) -> list[str]:
        """Lines a tor of our own needs to use this network (onionchat's extra_torrc)."""
        return ["TestingTorNetwork 1", "PathsNeededToBuildCircuits 0.67", "GeoIPFile", "GeoIPv6File",
                *self.dir_authority_lines]

    def _base_lines(self, node: Node) -> list[str]:
        return [
            f"Nickname {node.name}",
            f"DataDirectory {node.directory}",
            f"PidFile {node.directory / 'pid'}",
            f"Log notice file {node.log}",
            "RunAsDaemon 0",
            "SafeLogging 0",
            # The network must never outlive the test run, even if pytest is killed.
            f"__OwningControllerProcess {os.getpid()}",
            *_TESTING_LINES,
            *self.dir_authority_lines,
        ]

    def _new_node(self, name: str, role: str) -> Node:
        directory = self.base / name
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        return Node(name=name, role=role, directory=directory, lines=[])

    def _make_authorities(self, count: int) -> None:
        for i in range(count):
            node = self._new_node(f"auth{i}", "authority")
            node.or_port, node.dir_port, node.control_port = self.ports(), self.ports(), self.ports()
            keys = node.directory / "keys"
            keys.mkdir(mode=0o700, exist_ok=True)
            subprocess.run(
                ["tor-gencert", "--create-identity-key", "-m", "12", "-a", f"{LOOPBACK}:{node.dir_port}",
                 "-i", str(keys / "authority_identity_key"), "-s", str(keys / "authority_signing_key"),
                 "-c", str(keys / "authority_certificate"), "--passphrase-fd", "0"],
                input=b"\n", check=True, capture_output=True, cwd=node.directory)
            cert = (keys / "authority_certificate").read_text()
            match = re.search(r"^fingerprint ([0-9A-F]{40})$", cert, re.M)
            assert match, cert
            v3ident = match.group(1)
            empty = node.directory / "empty-torrc"
            empty.write_text("")
            out = subprocess.run(
                [self.tor, "--list-fingerprint", "--orport", "1", "--datadirectory", str(node.directory),
                 "-f", str(empty), "--quiet"], check=True, capture_output=True, text=True).stdout
            fingerprint = "".join(out.split()[1:])
            assert re.fullmatch(r"[0-9A-F]{40}", fingerprint), out
            self.dir_authority_lines.append(
                f"DirAuthority {node.name} orport={node.or_port} no-v2 v3ident={v3ident} "
                f"{LOOPBACK}:{node.dir_port} {fingerprint}")
            self.authorities.append(node)
        for node in self.authorities:
            node.lines = [*self._base_lines(node), *_AUTHORITY_LINES, "Address 127.0.0.1",
                          f"ORPort {LOOPBACK}:{node.or_port}", f"DirPort {LOOPBACK}:{node.dir_port}",
                          f"ContactInfo {node.name}@test.invalid", "SocksPort 0",
                          f"ControlPort {LOOPBACK}:{node.control_port}", "CookieAuthentication 1"]

    def _make_relays(self, count: int) -> None:
        for i in range(count):
            node = self._new_node(f"relay{i}", "relay")
            node.or_port, node.dir_port = self.ports(), self.ports()
            node.lines = [*self._base_lines(node), "Address 127.0.0.1", "AssumeReachable 1",
                          f"ORPort {LOOPBACK}:{node.or_port}", f"DirPort {LOOPBACK}:{node.dir_port}",
                          f"ContactInfo {node.name}@test.invalid",
                          "ExitRelay 0", "ExitPolicy reject *:*", "SocksPort 0"]
            self.relays.append(node)

    # -- processes --------------------------------------------------------------------

    def _launch(self, node: Node) -> None:
        node.torrc.write_text("\n".join(node.lines) + "\n")
        node.proc = subprocess.Popen([self.tor, "-f", str(node.torrc), "--quiet"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float, nodes: list[Node]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in nodes:
                if not node.running():
                    raise RuntimeError(f"tor node {node.name} exited while waiting for {what}:\n"
                                       + node.log_text()[-3000:])
            if ready():
                return
            time.sleep(0.25)  # polling a condition with a deadline
        logs = "\n".join(f"--- {n.name}\n{n.log_text()[-1500:]}" for n in nodes)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")

    def consensus(self) -> str:
        """The current consensus as served by the first authority ('' if none yet)."""
        auth = self.authorities[0]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy from env
        try:
            with opener.open(f"http://{LOOPBACK}:{auth.dir_port}/tor/status-vote/current/consensus",
                             timeout=5) as resp:
                return bytes(resp.read()).decode("ascii", "replace")
        except OSError:
            return ""

    def _consensus_ready(self) -> bool:
        text = self.consensus()
        wanted = {n.name for n in self.relays}
        flags: dict[str, set[str]] = {}
        current = ""
        for line in text.splitlines():
            if line.startswith("r "):
                current = line.split()[1]
            elif line.startswith("s ") and current:
                flags[current] = set(line.split()[1:])
        return all(name in flags and {"HSDir", "Guard", "Running"} <= flags[name] for name in wanted)

    def start(self, authorities: int = 3, relays: int = 3, timeout: float = 150.0) -> None:
        """Authorities first, then relays once a consensus exists, then wait for relay flags."""
        t0 = time.monotonic()
        self._make_authorities(authorities)
        self._make_relays(relays)
        for node in self.authorities:
            self._launch(node)
        self._wait("a first consensus", lambda: bool(self.consensus()), timeout, self.authorities)
        self.timings["first consensus"] = time.monotonic() - t0
        for node in self.relays:
            self._launch(node)
        self._wait("relays listed with HSDir and Guard", self._consensus_ready, timeout,
                   self.authorities + self.relays)
        self.timings["network ready"] = time.monotonic() - t0

    def add_client(self, name: str, *, auth_dir: Path | None = None, control: bool = False,
                   timeout: float = 60.0, wait: bool = True) -> Node:
        """A tor with a SocksPort (and ClientOnionAuthDir if given), bootstrapped unless ``wait`` is False."""
        node = self._new_node(name, "client")
        node.socks_port = self.ports()
        # ExtendedErrors: report onion failures (e.g. 0xF4, client auth missing) as Tor Browser sees them.
        node.lines = [*self._base_lines(node), f"SocksPort {LOOPBACK}:{node.socks_port} ExtendedErrors"]
        if auth_dir is not None:
            node.lines.append(f"ClientOnionAuthDir {auth_dir}")
        if control:
            node.control_port = self.ports()
            node.lines += [f"ControlPort {LOOPBACK}:{node.control_port}", "CookieAuthentication 1"]
        self._start_other(node, timeout, wait)
        return node

    def add_host(self, name: str, timeout: float = 60.0, wait: bool = True, extra: list[str] | None = None) -> Node:
        """A tor with a cookie-authenticated ControlPort and no SocksPort, to host onions."""
        node = self._new_node(name, "host")
        node.control_port = self.ports()
        node.lines = [*self._base_lines(node), "SocksPort 0",
                      f"ControlPort {LOOPBACK}:{node.control_port}", "CookieAuthentication 1", *(extra or [])]
        self._start_other(node, timeout, wait)
        return node

    def _start_other(self, node: Node, timeout: float, wait: bool) -> None:
        self.others.append(node)
        self._launch(node)
        if wait:
            self.wait_ready(node, timeout)

    def wait_ready(self, node: Node, timeout: float = 60.0) -> None:
        """Wait until ``node`` has bootstrapped to 100%."""
        self._wait(f"{node.name} to bootstrap", lambda: "Bootstrapped 100%" in node.log_text(), timeout, [node])

    def all_nodes(self) -> Iterator[Node]:
        yield from self.others
        yield from self.relays
        yield from self.authorities

    def reload_node(self, node: Node) -> None:
        """SIGHUP one tor we started (re-reads torrc, onion auth files); by PID, never via a controller."""
        assert node.proc is not None and node.proc.poll() is None, node.name
        node.proc.send_signal(signal.SIGHUP)

    def stop_node(self, node: Node) -> None:
        """Stop one tor we started, by its PID: TERM, then KILL if it lingers."""
        proc = node.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        """Stop every tor of the network: TERM to all at once, then wait, then KILL what lingers."""
        running = [n.proc for n in self.all_nodes() if n.proc is not None and n.proc.poll() is None]
        for proc in running:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@contextlib.contextmanager
def running_network(base: Path, tor: str = "tor") -> Iterator[TorNetwork]:
    """A started network that is stopped, node by node, on exit."""
    net = TorNetwork(base=base, tor=tor)
    try:
        net.start()
        yield net
    finally:
        net.stop()
