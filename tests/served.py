"""A real ``llmplex serve`` subprocess for tests: clean environment, scratch home, its
log in a file, its URL once it answers ``/health``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

BIN = Path(sys.executable).parent
SRC = Path(__file__).resolve().parents[1] / "src"
#: seconds a server may take to start or stop before the test fails (never a timing assert)
PATIENCE = 60.0


def clean_environ(home: Path, **extra: str) -> dict[str, str]:
    """This environment without llmplex settings or service keys, with a scratch home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LLMPLEX_", "PROMETHEUS_", "OTEL_"))
        and not re.search(r"_(API_KEY|API_TOKEN|KEY)$", k)
    }
    for name in ("config", "data", "cookies"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(SRC),
        LLMPLEX_CONFIG=str(home / "config" / "config.toml"),
        LLMPLEX_DATA_DIR=str(home / "data"),
        LLMPLEX_COOKIES_DIR=str(home / "cookies"),
    )
    (home / "config" / "config.toml").touch()
    env.update(extra)
    return env


class Served:
    """``llmplex serve --port 0 *args`` until :meth:`stop` (SIGTERM, then its exit)."""

    def __init__(self, home: Path, *args: str, env: dict[str, str]) -> None:
        self.log_path = home / "serve.log"
        with open(self.log_path, "w") as out:
            self.process = subprocess.Popen(
                [str(BIN / "llmplex"), "serve", "--port", "0", *args],
                env=env,
                text=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        found = self.wait_for(r"serving .* at http://127\.0\.0\.1:(\d+)/v1")
        self.port = int(found.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_healthy()

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` in the log, waiting for it to appear."""
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log)
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(
                    f"llmplex serve exited ({self.process.returncode}):\n{self.log}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the server's log:\n{self.log}")

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"the server never answered /health:\n{self.log}")

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        return self.process.wait(timeout=PATIENCE)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.terminate()
        try:
            return self.wait()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
