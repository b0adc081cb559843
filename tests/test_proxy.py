"""Every provider through a real proxy server (pproxy: HTTP and SOCKS5 on one port).

The proxy runs as a separate process started by the test; its connection log proves the
traffic went through it. A wrong proxy gives a clear connection error naming the proxy,
without its password.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmplex.emulators import Script, get_emulator, serve
from llmplex.emulators.ai2 import EMULATED_TOKEN
from llmplex.errors import ProviderConnectionError
from llmplex.providers import get_provider
from llmplex.providers.legacy import h2o as legacy_h2o

ANSWER = "Through the proxy, intact: Привет 😀"
USER, PASSWORD = "proxyuser", "s3cret-pw"

CASES = {
    "AllenAI": ("allenai", "olmo-3.1-32b-instruct", {"api_key": EMULATED_TOKEN}),
    "Replicate": ("replicate", "meta/meta-llama-3-8b-instruct", {"api_key": "r8_test"}),
    "OpenAssistant": (
        "openassistant",
        "OA_SFT_Llama_30B_6",
        {"cookies": {"next-auth.session-token": "session-1"}},
    ),
    "H2o": ("h2o", "falcon-7b", {}),
    "OpenAI": ("openai", "gpt-4o-mini", {"api_key": "sk-test"}),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A pproxy process; ``log()`` is what it printed (one line per tunnelled connection)."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.port = free_port()
        self.log_path = tmp / "pproxy.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pproxy",
                "-v",
                "-l",
                f"http+socks5://127.0.0.1:{self.port}#{USER}:{PASSWORD}",
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"pproxy did not start: {self.log()}") from None
                time.sleep(0.05)

    def url(self, scheme: str) -> str:
        return f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait_for(self, text: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                return log
            time.sleep(0.02)
        return log

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    server = Proxy(tmp_path_factory.mktemp("proxy"))
    yield server
    server.stop()


@pytest.mark.parametrize("scheme", ["http", "socks5"])
@pytest.mark.parametrize("name", list(CASES))
async def test_every_provider_through_the_proxy(proxy, name, scheme):
    emulator_name, model, options = CASES[name]
    with serve(get_emulator(emulator_name)(Script(ANSWER))) as emu:
        base = emu.url + "/v1" if name == "OpenAI" else emu.url
        text = await get_provider(name).create_async(
            model, "Hi", base_url=base, proxy=proxy.url(scheme), **options
        )
        port = emu.url.rsplit(":", 1)[1]
        log = proxy.wait_for(f"-> 127.0.0.1:{port}")
    assert text == ANSWER
    # pproxy logs "<protocol> <client> -> <target>" for each tunnelled connection
    tunnelled = [line for line in log.splitlines() if line.endswith(f"-> 127.0.0.1:{port}")]
    assert tunnelled and all(line.startswith(f"{scheme} ") for line in tunnelled), log


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_legacy_module_through_the_proxy(proxy, scheme):
    with serve(get_emulator("h2o")(Script(ANSWER))) as emu:
        tokens = list(
            legacy_h2o._create_completion(
                "falcon-40b",
                [{"role": "user", "content": "Hi"}],
                True,
                base_url=emu.url,
                proxy=proxy.url(scheme),
            )
        )
        port = emu.url.rsplit(":", 1)[1]
        log = proxy.wait_for(f"-> 127.0.0.1:{port}")
    assert "".join(tokens) == ANSWER
    assert f"{scheme} " in log and f"-> 127.0.0.1:{port}" in log


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_wrong_proxy_is_a_clear_error_without_the_password(scheme):
    dead = f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{free_port()}"
    with serve(get_emulator("openai")(Script(ANSWER))) as emu:
        with pytest.raises(ProviderConnectionError) as info:
            await get_provider("OpenAI").create_async(
                "gpt-4o-mini", "Hi", base_url=emu.url + "/v1", api_key="sk-test", proxy=dead
            )
    message = str(info.value)
    assert "proxy" in message and f"127.0.0.1:{dead.rsplit(':', 1)[1]}" in message
    assert PASSWORD not in message and PASSWORD not in repr(info.value)
    assert info.value.provider == "OpenAI"


@pytest.mark.parametrize("scheme", ["http", "socks5"])
async def test_wrong_proxy_password_is_refused(tmp_path, scheme):
    # "-a 0": pproxy otherwise trusts an address for a month once it authenticated.
    strict = Proxy(tmp_path, "-a", "0")
    try:
        bad = f"{scheme}://{USER}:wrong-pw@127.0.0.1:{strict.port}"
        with serve(get_emulator("openai")(Script(ANSWER))) as emu:
            with pytest.raises(ProviderConnectionError) as info:
                await get_provider("OpenAI").create_async(
                    "gpt-4o-mini", "Hi", base_url=emu.url + "/v1", api_key="sk-test", proxy=bad
                )
        assert emu.requests == []
    finally:
        strict.stop()
    assert "proxy" in str(info.value) and "wrong-pw" not in str(info.value)


async def test_unsupported_proxy_scheme_is_a_typed_error():
    from llmplex.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="unsupported proxy 'ftp://u:\\*\\*\\*@h:1'"):
        await get_provider("OpenAI").create_async(
            "gpt-4o-mini",
            "Hi",
            base_url="http://127.0.0.1:9/v1",
            api_key="k",
            proxy="ftp://u:pw@h:1",
        )
