"""Client and AsyncClient against the emulators: every provider, stream and non-stream,
OpenAI-shaped objects, limits, models, conversations (memory and SQLite, two processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from contextlib import ExitStack

import pytest

from llmplex import AsyncClient, Client
from llmplex.conversations import ConversationNotFoundError, MemoryStore, SQLiteStore
from llmplex.emulators import Script, get_emulator, serve
from llmplex.emulators.ai2 import EMULATED_TOKEN
from llmplex.errors import InvalidRequestError, ModelNotFoundError
from llmplex.providers import get_provider
from llmplex.routing import Router

ANSWER = "The capital of France is Paris. Привет, 你好 😀!"
QUESTION = "What is the capital of France?"

# provider name -> (emulator name, model, extra options besides base_url)
CASES = {
    "AllenAI": ("allenai", "olmo-3.1-32b-instruct", {"api_key": EMULATED_TOKEN}),
    "Replicate": ("replicate", "meta/meta-llama-3-8b-instruct", {"api_key": "r8_test"}),
    "OpenAssistant": (
        "openassistant",
        "OA_SFT_Llama_30B_6",
        {"cookies": {"next-auth.session-token": "session-1"}},
    ),
    "H2o": ("h2o", "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-40b-v1", {}),
    "OpenAI": ("openai", "gpt-4o-mini", {"api_key": "sk-test"}),
}


def options_for(name: str, emulator) -> dict:
    base = emulator.url + "/v1" if name == "OpenAI" else emulator.url
    return {"base_url": base, **CASES[name][2]}


@pytest.fixture
def services():
    """Every emulator, served, all answering ANSWER."""
    with ExitStack() as stack:
        served = {}
        for name, (emulator, _, _) in CASES.items():
            served[name] = stack.enter_context(serve(get_emulator(emulator)(Script(ANSWER))))
        yield served


def client_for(services, cls=AsyncClient, **kwargs):
    options = {name: options_for(name, emu) for name, emu in services.items()}
    return cls(provider_options=options, store=kwargs.pop("store", MemoryStore()), **kwargs)


@pytest.mark.parametrize("name", list(CASES))
async def test_same_answer_as_the_provider_called_directly(services, name):
    _, model, _ = CASES[name]
    provider = get_provider(name)
    direct = await provider.create_async(model, QUESTION, **options_for(name, services[name]))
    assert direct == ANSWER

    client = client_for(services)
    completion = await client.chat.completions.create(model=f"{name}:{model}", messages=QUESTION)
    assert completion.choices[0].message.content == direct
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.provider == name
    assert completion.object == "chat.completion"
    assert (
        completion.usage.total_tokens
        == (completion.usage.prompt_tokens + completion.usage.completion_tokens)
        > 0
    )

    stream = await client.chat.completions.create(
        model=model,
        provider=name,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == direct
    assert len(chunks) > 2  # really streamed
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is not None
    assert all(c.object == "chat.completion.chunk" and c.provider == name for c in chunks)


@pytest.mark.parametrize("name", ["Replicate", "H2o", "OpenAI"])
def test_sync_client_same_answer(services, name):
    _, model, _ = CASES[name]
    client = client_for(services, cls=Client)
    completion = client.chat.completions.create(model=f"{name.lower()}:{model}", messages=QUESTION)
    assert completion.choices[0].message.content == ANSWER
    chunks = list(
        client.chat.completions.create(model=f"{name}:{model}", messages=QUESTION, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER


async def test_sync_client_inside_a_running_event_loop(services):
    # As in Jupyter: sync code called while an event loop runs in this thread.
    client = client_for(services, cls=Client)
    completion = client.chat.completions.create(
        model="replicate:meta/meta-llama-3-8b-instruct", messages=QUESTION
    )
    assert completion.choices[0].message.content == ANSWER


async def test_objects_have_attribute_access_and_model_dump(services):
    client = client_for(services)
    completion = await client.chat.completions.create(model="openai:gpt-4o-mini", messages="Hi")
    data = completion.model_dump()
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": ANSWER,
        "refusal": None,
        "tool_calls": None,
        "reasoning_content": None,
    }
    assert data["object"] == "chat.completion" and data["provider"] == "OpenAI"
    assert data["system_fingerprint"] == "fp_0ba0d124f1" and data["service_tier"] == "default"
    assert json.loads(completion.model_dump_json())["id"] == completion.id
    assert completion.id.startswith("chatcmpl-")


async def test_provider_reported_usage_is_used(services):
    # The OpenAI emulator reports usage (words); the estimate would differ.
    client = client_for(services)
    completion = await client.chat.completions.create(
        model="openai:gpt-4o-mini", messages="one two"
    )
    assert completion.usage.prompt_tokens == 2
    assert completion.usage.completion_tokens == len(ANSWER.split())
    assert completion.usage.estimated is False


def unlimited(emulator):
    """A provider class whose service enforces neither max_tokens nor stop (the client must),
    served by the OpenAI emulator."""
    from llmplex.providers import OpenAICompatible
    from llmplex.providers.endpoints import FULL

    cls = type(
        "Unlimited",
        (OpenAICompatible,),
        {
            "capabilities": FULL.with_(max_tokens=False, stop=False),
            "default_base_url": emulator.url + "/v1",
        },
    )
    return cls


async def test_max_tokens_counts_tokens_not_chunks_where_the_service_cannot(services):
    client = client_for(services)
    provider = unlimited(services["OpenAI"])
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", provider=provider, messages="Hi", max_tokens=3
    )
    # 3 tokens ~ 12 UTF-8 bytes: "The capital " — several chunks, cut mid-chunk.
    assert completion.choices[0].message.content == ANSWER.encode()[:12].decode()
    assert completion.choices[0].finish_reason == "length"
    # the stream was closed before the service's usage came: the usage is an estimate
    assert completion.usage.completion_tokens == 3 and completion.usage.estimated
    # the limit was not sent to a service that does not take it
    assert "max_tokens" not in services["OpenAI"].requests_to("/chat/completions")[0].json


async def test_a_native_max_tokens_is_left_to_the_service(services):
    # The service cuts at 2 tokens (its own words) and reports usage: the client neither
    # cuts the answer to 8 bytes nor replaces the usage by an estimate.
    client = client_for(services)
    completion = await client.chat.completions.create(
        model="openai:gpt-4o-mini", messages="Hi", max_tokens=2
    )
    assert completion.choices[0].message.content == "The capital"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2 and not completion.usage.estimated
    assert services["OpenAI"].requests_to("/chat/completions")[0].json["max_tokens"] == 2
    await client.chat.completions.create(
        model="replicate:meta/meta-llama-3-8b-instruct", messages="Hi", max_tokens=3
    )
    assert (
        services["Replicate"].requests_to("/predictions", "POST")[0].json["input"]["max_tokens"]
        == 3
    )  # Llama 3's own name for it


async def test_stop_truncates_even_across_chunks_where_the_service_cannot(services):
    client = client_for(services)
    stream = await client.chat.completions.create(
        model="openassistant:OA_SFT_Llama_30B_6", messages="Hi", stream=True, stop=["is Par"]
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "The capital of France "
    assert chunks[-1].choices[0].finish_reason == "stop"
    # a service that takes stop sequences gets them
    await client.chat.completions.create(model="h2o:falcon-40b", messages="Hi", stop=["is Par"])
    generate = [r for r in services["H2o"].requests if r.json and "inputs" in r.json][-1]
    assert generate.json["parameters"]["stop"] == ["is Par"]


async def test_a_provider_closed_early_after_answering_is_healthy(services):
    # It failed once (cooling down), then answered until the client's stop sequence ended
    # the stream early: its failure record is cleared.
    client = client_for(services)
    provider = unlimited(services["OpenAI"])
    client.router.record_failure(provider.get_name(), RuntimeError("earlier failure"))
    assert client.router.status()["Unlimited"]["cooling_down"]
    completion = await client.chat.completions.create(
        model="gpt-4o-mini", provider=provider, messages="Hi", stop=["France"]
    )
    assert completion.choices[0].finish_reason == "stop"
    status = client.router.status()["Unlimited"]
    assert not status["cooling_down"] and status["consecutive_failures"] == 0


async def test_stopping_early_closes_the_upstream(services):
    emu = services["OpenAssistant"]
    emu.script = Script(ANSWER, delay=0.05)
    client = client_for(services)
    stream = await client.chat.completions.create(
        model="openassistant:OA_SFT_Llama_30B_6", messages="Hi", stream=True
    )
    async for _chunk in stream:
        break
    await stream.aclose()
    assert emu.requests_to("/api/chat", "DELETE")  # the upstream chat was deleted


async def test_messages_validation_and_unknown_models(services):
    client = client_for(services)
    with pytest.raises(InvalidRequestError, match=r"messages\[0\]\.role"):
        await client.chat.completions.create(
            model="openai:gpt-4o-mini", messages=[{"role": "robot", "content": "x"}]
        )
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        await client.chat.completions.create(model="openai:gpt-4o-mini", messages="x", max_tokens=0)
    with pytest.raises(ModelNotFoundError) as info:
        await client.chat.completions.create(model="olmo-3.1-32b-instrukt", messages="x")
    print(info.value)  # shown with -s: the message a user sees
    assert "olmo-3.1-32b-instruct" in str(info.value)
    assert "olmo-3.1-32b-instruct" in info.value.suggestions
    with pytest.raises(ModelNotFoundError) as info:
        await client.chat.completions.create(model="allenai:gpt-5", messages="x")
    assert info.value.provider == "AllenAI" and "olmo-3.1-32b-instruct" in str(info.value)


async def test_not_working_providers_only_when_named(services):
    client = client_for(services)
    # "olmo-3.1-think" is an AllenAI alias only, and AllenAI is not working without
    # credentials in the environment.
    with pytest.raises(ModelNotFoundError) as info:
        await client.chat.completions.create(model="olmo-3.1-think", messages="x")
    assert "allenai:olmo-3.1-think" in str(info.value)
    completion = await client.chat.completions.create(model="allenai:olmo-3.1-think", messages="x")
    assert completion.choices[0].message.content == ANSWER
    # ... or when the router is told to include them
    client.router.include_not_working = True
    completion = await client.chat.completions.create(model="olmo-3.1-think", messages="x")
    assert completion.provider == "AllenAI"


async def test_models_list_names_providers(services):
    client = client_for(services)
    models = await client.models.list(all=True)
    table = {m.id: m.providers for m in models}
    assert table["olmo-3.1-32b-instruct"] == ["AllenAI"]
    assert "Replicate" in table["meta/meta-llama-3-70b-instruct"]
    assert table["gpt-4o-mini"][0] == "OpenAI"
    assert models.object == "list" and models.data[0].object == "model"
    # by default only what can be routed now: H2o is marked not working; AllenAI works
    # with its (emulator's) token configured
    routable = {m.id: m for m in await client.models.list()}
    falcon = "h2oai/h2ogpt-gm-oasst1-en-2048-falcon-7b-v3"
    assert falcon not in routable and routable["gpt-4o-mini"].available
    assert routable["olmo-3.1-32b-instruct"].available
    [h2o] = [m for m in models if m.id == falcon]
    assert not h2o.available and h2o.reason == "H2o: marked not working"


# -- conversations -----------------------------------------------------------------------


async def test_conversation_keeps_history_and_native_state(services):
    ai2 = services["AllenAI"]
    client = client_for(services)
    conversation = await client.conversations.create()
    first = await client.chat.completions.create(
        model="allenai:olmo-3.1-32b-instruct", messages="Hello", conversation=conversation
    )
    assert first.conversation_id == conversation.id
    # no model: the conversation goes on with the one it used
    again = await client.chat.completions.create(messages="And then?", conversation=conversation.id)
    assert again.provider == "AllenAI"
    stored = await client.conversations.get(conversation.id)
    assert [m["content"] for m in stored.messages] == ["Hello", ANSWER, "And then?", ANSWER]
    # The second turn continued the Ai2 thread: only the new text, with the parent.
    first, second = ai2.requests_to("/v5/threads/chat")
    assert second.form["content"] == "And then?" and second.form.get("parent")
    assert second.form["parent"] in ai2.messages
    assert second.headers["Authorization"] == first.headers["Authorization"]


async def test_conversation_survives_a_switch_of_provider(services):
    client = client_for(services)
    conversation = await client.conversations.create(
        messages=[{"role": "system", "content": "Be brief."}]
    )
    await client.chat.completions.create(
        model="allenai:olmo-3.1-32b-instruct", messages="Turn one", conversation=conversation
    )
    await client.chat.completions.create(
        model="openai:gpt-4o-mini", messages="Turn two", conversation=conversation
    )
    sent = services["OpenAI"].requests_to("/chat/completions")[0].json["messages"]
    assert [m["content"] for m in sent] == ["Be brief.", "Turn one", ANSWER, "Turn two"]
    # Back on Ai2: its thread does not know turn two, so the whole history is sent anew.
    await client.chat.completions.create(
        model="allenai:olmo-3.1-32b-instruct", messages="Turn three", conversation=conversation
    )
    third = services["AllenAI"].requests_to("/v5/threads/chat")[-1]
    assert "parent" not in third.form
    assert "Turn one" in third.form["content"] and "Turn two" in third.form["content"]
    stored = await client.conversations.get(conversation.id)
    assert len(stored.messages) == 7 and stored.provider == "AllenAI"


async def test_unknown_conversation_is_a_clear_error(services):
    client = client_for(services)
    with pytest.raises(ConversationNotFoundError, match="conv_nope"):
        await client.chat.completions.create(
            model="openai:gpt-4o-mini", messages="x", conversation="conv_nope"
        )


def test_conversation_continued_in_a_second_process(services, tmp_path):
    db = tmp_path / "conversations.sqlite3"
    client = client_for(services, cls=Client, store=SQLiteStore(db))
    conversation = client.conversations.create()
    client.chat.completions.create(
        model="openai:gpt-4o-mini", messages="First question", conversation=conversation
    )
    client.store.close()
    script = textwrap.dedent("""
        import sys
        from llmplex import Client
        from llmplex.conversations import SQLiteStore
        client = Client(store=SQLiteStore(sys.argv[1]),
                        provider_options={"OpenAI": {"base_url": sys.argv[2],
                                                       "api_key": "sk-test"}})
        answer = client.chat.completions.create(model="openai:gpt-4o-mini",
                                                messages="Second question",
                                                conversation=sys.argv[3])
        print(answer.choices[0].message.content)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script, str(db), services["OpenAI"].url + "/v1", conversation.id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ANSWER
    sent = services["OpenAI"].requests_to("/chat/completions")[1].json["messages"]
    assert [m["content"] for m in sent] == ["First question", ANSWER, "Second question"]
    store = SQLiteStore(db)
    assert len(store.get(conversation.id).messages) == 4
    store.close()


def test_sqlite_store_concurrent_writers_lose_nothing(tmp_path):
    db = tmp_path / "c.sqlite3"
    store = SQLiteStore(db)
    conversation = store.create()
    store.close()
    script = textwrap.dedent("""
        import sys
        from llmplex.conversations import SQLiteStore
        store = SQLiteStore(sys.argv[1])
        for i in range(40):
            store.append(sys.argv[2], [{"role": "user", "content": f"{sys.argv[3]}-{i}"}])
        store.close()
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(db), conversation.id, tag])
        for tag in ("a", "b", "c")
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    store = SQLiteStore(db)
    contents = [m["content"] for m in store.get(conversation.id).messages]
    store.close()
    assert sorted(contents) == sorted(f"{t}-{i}" for t in "abc" for i in range(40))
    for tag in "abc":  # each writer's own order is kept
        mine = [c for c in contents if c.startswith(tag)]
        assert mine == [f"{tag}-{i}" for i in range(40)]


def test_memory_store_returns_copies():
    store = MemoryStore()
    conversation = store.create(model="m")
    conversation.messages.append({"role": "user", "content": "not saved"})
    assert store.get(conversation.id).messages == []
    store.delete(conversation.id)
    with pytest.raises(ConversationNotFoundError):
        store.get(conversation.id)


def test_client_repr_hides_secrets(services):
    client = client_for(services)
    assert "sk-test" not in repr(client) and "session-1" not in repr(client)
    assert "r8_test" not in repr(Router())
