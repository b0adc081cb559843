"""The old synchronous H2O gpt-gm module: ``_create_completion`` yields tokens.

A thin layer over :class:`llmplex.providers.h2o.H2o`: the same exchange, HTTP session
and stream decoder, run on llmplex's background event loop through
:func:`llmplex.bridge.iterate` (so it also works inside a running event loop). What
differs is the legacy prompt and the initial ``GET /`` the old module made.

Keyword arguments: ``base_url``, ``proxy``, ``timeout`` and the TGI generation
parameters (``temperature``, ``truncate``, ``max_new_tokens``, ``do_sample``,
``repetition_penalty``, ``return_full_text``, ...); anything else is ignored.
"""

import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ...bridge import iterate
from ...http.session import DEFAULT_TIMEOUT
from ...prompt import validate_messages
from ..h2o import H2o, build_parameters

__all__ = [
    "url",
    "model",
    "models",
    "supports_stream",
    "needs_auth",
    "params",
    "_create_completion",
]

url = "https://gpt-gm.h2o.ai"
#: the short model names this module accepts (full ids are accepted too)
model = ["falcon-40b", "falcon-7b", "llama-13b"]
#: short name -> model id on the service
models = {short: H2o.model_aliases[short] for short in model}
supports_stream = True
needs_auth = False

END_OF_TEXT = "<|endoftext|>"
# Kept word for word from the original module, typo included: models were prompted so.
_INSTRUCTION = (
    "instruction: this is a conversation beween, a user and an AI assistant, "
    "respond to the latest message, referring to the conversation if needed\n"
)


def legacy_prompt(messages: Sequence[Mapping[str, Any]] | str) -> str:
    """The prompt the old module sent: the instruction, ``role: content`` lines, ``assistant:``."""
    lines = "".join(f"{m['role']}: {m['content']}\n" for m in validate_messages(messages))
    return f"{_INSTRUCTION}{lines}assistant:"


def _create_completion(
    model: str, messages: list[dict[str, str]], stream: bool, **kwargs: Any
) -> Iterator[str]:
    """Yield the answer's tokens (a plain generator); ``stream=False`` yields it whole.

    ``model`` is a short name (``falcon-40b``, ``falcon-7b``, ``llama-13b``) or a model
    id. Closing the generator early stops the request and deletes the conversation.
    """
    model_id = H2o.get_model(model)
    prompt = legacy_prompt(messages)
    parameters = build_parameters(kwargs)
    chunks = iterate(
        lambda: H2o.stream_prompt(
            model_id,
            prompt,
            parameters,
            proxy=kwargs.get("proxy"),
            timeout=kwargs.get("timeout", DEFAULT_TIMEOUT),
            base_url=kwargs.get("base_url"),
            get_root_first=True,
        )
    )
    try:
        tokens: Iterator[str] = (c for c in chunks if isinstance(c, str))
        if not stream:
            text = []
            for token in tokens:
                if token == END_OF_TEXT:
                    break
                text.append(token)
            yield "".join(text)
            return
        for token in tokens:
            if token == END_OF_TEXT:  # special tokens are dropped already; a plain one too
                break
            yield token
    finally:
        chunks.close()  # cancels an unfinished request and waits for the DELETE


def _describe(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


params = "llmplex.providers.legacy.h2o supports: ({})".format(
    ", ".join(
        f"{name}: {_describe(p.annotation)}"
        for name, p in inspect.signature(_create_completion).parameters.items()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
)
