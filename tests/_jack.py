"""A real JACK server for tests: ``jackd --no-realtime -d dummy`` under a unique server name.

Usage from any test module::

    from _jack import jack_server  # noqa: F401  (the pytest fixture)

    def test_x(jack_server):
        env = jack_server.env            # JACK_DEFAULT_SERVER=<name> for child processes
        jack_server.connect("a:out", "b:in")

The unique name keeps parallel test runs (and other users of the machine) apart.  Clients must be
started with ``jack_server.env`` (PortAudio scans JACK when sounddevice is imported, so audio tests
import sounddevice in a child process started after the server).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest


class JackServer:
    def __init__(self, rate: int = 48000, period: int = 256):
        self.name = f"momu-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rate, self.period = rate, period
        self.env = {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1",
                    "JACK_NO_START_SERVER": "1"}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> "JackServer":
        if shutil.which("jackd") is None:
            pytest.fail("jackd not installed: apt-get install jackd2 (CI installs it)")
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jackd exited: {self.proc.stderr.read()[-2000:]}")
            if "system:playback_1" in self.ports():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("jackd did not come up")

    def ports(self) -> list[str]:
        r = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, text=True, timeout=10)
        return r.stdout.split("\n") if r.returncode == 0 else []

    def connect(self, src: str, dst: str) -> None:
        r = subprocess.run(["jack_connect", src, dst], env=self.env, capture_output=True, text=True, timeout=10)
        if r.returncode != 0 and "already" not in r.stderr:
            raise RuntimeError(f"jack_connect {src} {dst}: {r.stderr.strip()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture(scope="module")
def jack_server():
    srv = JackServer().start()
    try:
        yield srv
    finally:
        srv.stop()
