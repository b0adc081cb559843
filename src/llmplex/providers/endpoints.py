"""The named OpenAI-compatible services: data, not code.

Each :class:`Endpoint` becomes a provider class of the same name (``Groq``, ``Ollama``...)
through :func:`llmplex.providers.openai_compatible.endpoint_provider`. This module imports
nothing heavy, so the provider registry can list the names without loading aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..capabilities import Capabilities
from .spec import ProviderSpec

__all__ = ["Endpoint", "ENDPOINTS", "FULL", "SPECS"]

_JSON = frozenset({"json_object", "json_schema"})
#: the whole Chat Completions API (OpenAI itself, and the generic OpenAICompatible, which
#: forwards everything and lets the server decide)
FULL = Capabilities(
    tools="native",
    images=True,
    audio=True,
    files=True,
    response_format=_JSON,
    reasoning=True,
    n=True,
    logprobs=True,
    system_message=True,
)
_CHAT = Capabilities(tools="native", images=True, response_format=_JSON, system_message=True)
#: OpenAI fields that only OpenAI's own API takes
_OPENAI_ONLY = frozenset(
    {
        "store",
        "metadata",
        "service_tier",
        "prediction",
        "modalities",
        "audio",
        "web_search_options",
        "verbosity",
        "safety_identifier",
        "prompt_cache_key",
    }
)


@dataclass(frozen=True)
class Endpoint:
    """A named OpenAI-compatible service: where it is and where its key comes from."""

    name: str  # the provider class name; LLMPLEX_<NAME>_BASE_URL overrides base_url
    label: str
    base_url: str
    api_key_env: str  # the environment variable holding the key (optional when local)
    needs_auth: bool
    default_model: str
    local: bool
    url: str  # the service's home page
    #: what the service documents (fields it refuses in ``unsupported``)
    capabilities: Capabilities = FULL
    #: models it is known to serve besides ``default_model``, so that a bare name finds it
    #: before its upstream's list is discovered (:mod:`llmplex.providers.discovery`)
    models: tuple[str, ...] = ()
    #: whether it serves ``POST /embeddings`` (OpenAI's Embeddings API)
    embeddings: bool = False
    #: the embedding models it lists (a bare model name is routed by these); a local
    #: server serves whatever model it has loaded, named with its prefix
    embedding_models: tuple[str, ...] = ()


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint(
            "OpenAI",
            "OpenAI",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            True,
            "gpt-4o-mini",
            False,
            "https://platform.openai.com",
            FULL,
            ("gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano"),
            embeddings=True,
            embedding_models=(
                "text-embedding-3-small",
                "text-embedding-3-large",
                "text-embedding-ada-002",
            ),
        ),
        Endpoint(
            "OpenRouter",
            "OpenRouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            True,
            "openai/gpt-4o-mini",
            False,
            "https://openrouter.ai",
            _CHAT.with_(files=True, reasoning=True, logprobs=True, unsupported=_OPENAI_ONLY),
        ),
        # Groq: n must be 1; logprobs, top_logprobs and logit_bias are refused.
        Endpoint(
            "Groq",
            "Groq",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
            True,
            "llama-3.1-8b-instant",
            False,
            "https://groq.com",
            _CHAT.with_(reasoning=True, unsupported=_OPENAI_ONLY | {"logit_bias"}),
        ),
        Endpoint(
            "Together",
            "Together AI",
            "https://api.together.xyz/v1",
            "TOGETHER_API_KEY",
            True,
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            False,
            "https://www.together.ai",
            _CHAT.with_(reasoning=True, n=True, logprobs=True, unsupported=_OPENAI_ONLY),
            embeddings=True,
            embedding_models=("BAAI/bge-large-en-v1.5", "BAAI/bge-base-en-v1.5"),
        ),
        Endpoint(
            "DeepInfra",
            "DeepInfra",
            "https://api.deepinfra.com/v1/openai",
            "DEEPINFRA_API_KEY",
            True,
            "meta-llama/Meta-Llama-3.1-8B-Instruct",
            False,
            "https://deepinfra.com",
            _CHAT.with_(reasoning=True, n=True, logprobs=True, unsupported=_OPENAI_ONLY),
            embeddings=True,
            embedding_models=(
                "BAAI/bge-large-en-v1.5",
                "BAAI/bge-base-en-v1.5",
                "intfloat/e5-large-v2",
                "sentence-transformers/all-MiniLM-L6-v2",
            ),
        ),
        Endpoint(
            "Mistral",
            "Mistral AI",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            True,
            "mistral-small-latest",
            False,
            "https://mistral.ai",
            _CHAT.with_(n=True, unsupported=_OPENAI_ONLY | {"logit_bias", "user"}),
            embeddings=True,
            embedding_models=("mistral-embed",),
        ),
        # Local servers need no key; one is sent if its variable is set (e.g. vLLM --api-key).
        Endpoint(
            "Ollama",
            "Ollama (local)",
            "http://localhost:11434/v1",
            "OLLAMA_API_KEY",
            False,
            "llama3.2",
            True,
            "https://ollama.com",
            _CHAT.with_(reasoning=True, unsupported=_OPENAI_ONLY | {"logit_bias"}),
            embeddings=True,
        ),
        Endpoint(
            "vLLM",
            "vLLM (local)",
            "http://localhost:8000/v1",
            "VLLM_API_KEY",
            False,
            "Qwen/Qwen2.5-1.5B-Instruct",
            True,
            "https://docs.vllm.ai",
            _CHAT.with_(
                audio=True,
                reasoning=True,
                n=True,
                logprobs=True,
                unsupported=_OPENAI_ONLY - {"prompt_cache_key"},
            ),
            embeddings=True,
        ),
        # llama.cpp's server answers with its loaded model whatever the name says.
        Endpoint(
            "LlamaCpp",
            "llama.cpp server (local)",
            "http://localhost:8080/v1",
            "LLAMACPP_API_KEY",
            False,
            "default",
            True,
            "https://github.com/ggml-org/llama.cpp",
            _CHAT.with_(reasoning=True, logprobs=True, unsupported=_OPENAI_ONLY),
            embeddings=True,
        ),
        Endpoint(
            "LMStudio",
            "LM Studio (local)",
            "http://localhost:1234/v1",
            "LMSTUDIO_API_KEY",
            False,
            "qwen2.5-7b-instruct",
            True,
            "https://lmstudio.ai",
            _CHAT.with_(unsupported=_OPENAI_ONLY | {"logit_bias"}),
            embeddings=True,
        ),
    )
}


def _spec(e: Endpoint) -> ProviderSpec:
    # Every named endpoint is emulated by the OpenAI emulator (one for all of them).
    return ProviderSpec(
        name=e.name,
        provider=f"llmplex.providers.openai_compatible:{e.name}",
        label=e.label,
        base_url=e.base_url,
        key_env=(e.api_key_env,),
        capabilities=e.capabilities,
        models=tuple(dict.fromkeys((e.default_model, *e.models))),
        emulator="llmplex.emulators.openai:OpenAIEmulator",
        emulator_service="openai",
        emulator_path="/v1",
        emulator_options={"api_key": "sk-emulated"},
    )


#: the named endpoints' specs (:mod:`llmplex.providers.spec`), registered as one plugin
SPECS: tuple[ProviderSpec, ...] = tuple(_spec(e) for e in ENDPOINTS.values())
