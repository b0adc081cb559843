"""The Echo provider's spec: what llmplex reads to register it (kept light: no import of
the provider or the emulator, which the strings name)."""

from llmplex.capabilities import TEXT_ONLY
from llmplex.providers.spec import ProviderSpec

__all__ = ["KEY_ENV", "MODELS", "SPEC"]

#: the environment variable holding an Echo key
KEY_ENV = "ECHO_API_KEY"
#: the models the service serves: ``echo-1`` repeats, ``echo-loud`` repeats in capitals
MODELS = ("echo-1", "echo-loud")

SPEC = ProviderSpec(
    name="Echo",
    provider="llmplex_echo.provider:Echo",
    label="Echo (example plugin)",
    base_url="https://echo.invalid",
    key_env=(KEY_ENV,),
    capabilities=TEXT_ONLY.with_(system_message=True),
    models=MODELS,
    aliases={"loud": "echo-loud"},
    emulator="llmplex_echo.emulator:EchoEmulator",
    emulator_options={"api_key": "echo-emulated-key"},
)
