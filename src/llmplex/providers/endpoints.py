"""The named OpenAI-compatible services: data, not code.

Each :class:`Endpoint` becomes a provider class of the same name (``Groq``, ``Ollama``...)
through :func:`llmplex.providers.openai_compatible.endpoint_provider`. This module imports
nothing heavy, so the provider registry can list the names without loading aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Endpoint", "ENDPOINTS"]


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


ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (
    Endpoint("OpenAI", "OpenAI", "https://api.openai.com/v1", "OPENAI_API_KEY", True,
             "gpt-4o-mini", False, "https://platform.openai.com"),
    Endpoint("OpenRouter", "OpenRouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY",
             True, "openai/gpt-4o-mini", False, "https://openrouter.ai"),
    Endpoint("Groq", "Groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY", True,
             "llama-3.1-8b-instant", False, "https://groq.com"),
    Endpoint("Together", "Together AI", "https://api.together.xyz/v1", "TOGETHER_API_KEY", True,
             "meta-llama/Llama-3.3-70B-Instruct-Turbo", False, "https://www.together.ai"),
    Endpoint("DeepInfra", "DeepInfra", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY",
             True, "meta-llama/Meta-Llama-3.1-8B-Instruct", False, "https://deepinfra.com"),
    Endpoint("Mistral", "Mistral AI", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", True,
             "mistral-small-latest", False, "https://mistral.ai"),
    # Local servers need no key; one is sent if its variable is set (e.g. vLLM --api-key).
    Endpoint("Ollama", "Ollama (local)", "http://localhost:11434/v1", "OLLAMA_API_KEY", False,
             "llama3.2", True, "https://ollama.com"),
    Endpoint("vLLM", "vLLM (local)", "http://localhost:8000/v1", "VLLM_API_KEY", False,
             "Qwen/Qwen2.5-1.5B-Instruct", True, "https://docs.vllm.ai"),
    # llama.cpp's server answers with its loaded model whatever the name says.
    Endpoint("LlamaCpp", "llama.cpp server (local)", "http://localhost:8080/v1",
             "LLAMACPP_API_KEY", False, "default", True, "https://github.com/ggml-org/llama.cpp"),
    Endpoint("LMStudio", "LM Studio (local)", "http://localhost:1234/v1", "LMSTUDIO_API_KEY",
             False, "qwen2.5-7b-instruct", True, "https://lmstudio.ai"),
)}
