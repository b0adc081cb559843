"""The README's claims that are data: its table of what each provider supports is the
providers' declared capabilities (what routing reads), row by row."""

from __future__ import annotations

from pathlib import Path

from llmplex.providers import get_provider

README = Path(__file__).resolve().parents[1] / "README.md"
# names as the README writes them -> provider names
ALIASES = {
    "`OpenAICompatible` (any server)": "OpenAICompatible",
    "llama.cpp": "LlamaCpp",
    "LM Studio": "LMStudio",
}


def capability_rows() -> dict[str, list[str]]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| provider | tools |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name in cells[0].split(", "):
            rows[ALIASES.get(name, name)] = cells[1:]
    return rows


def yes(cell: str, name: str) -> bool:
    """A cell is "yes", "no", or a list of the providers of the row it holds for
    ("emulated" is "no": llmplex does it, not the service)."""
    if cell == "emulated":
        return False
    if cell in ("yes", "no"):
        return cell == "yes"
    listed = [ALIASES.get(n, n) for n in cell.split(", ")]
    return name in listed


def test_the_capability_table_is_the_declared_capabilities():
    rows = capability_rows()
    assert len(rows) == 15  # every registered provider, once
    for name, (tools, images, audio_files, json_output, reasoning, n, logprobs) in rows.items():
        caps = get_provider(name).capabilities
        assert yes(tools, name) == (caps.tools != "none"), name
        # what llmplex emulates for a service is what the table says it emulates
        emulated = {"tools"} if tools == "emulated" else set()
        if json_output == "emulated":
            emulated |= {"json_object", "json_schema"}
        assert emulated == set(caps.emulated()), name
        assert yes(images, name) == caps.images, name
        audio, _, files = audio_files.partition(" / ")
        assert yes(audio, name) == caps.audio, name
        assert yes(files or audio, name) == caps.files, name
        formats = (
            set()
            if json_output in ("no", "emulated")
            else {
                {"schema": "json_schema", "object": "json_object"}[f]
                for f in json_output.split(", ")
            }
        )
        assert formats == caps.response_format, name
        assert yes(reasoning, name) == caps.reasoning, name
        assert yes(n.replace("`", ""), name) == caps.n, name
        assert yes(logprobs, name) == caps.logprobs, name
