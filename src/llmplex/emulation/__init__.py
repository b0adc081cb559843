"""Tool calling and JSON output for text-only providers, by prompt.

A text-only service takes a prompt and answers with text. To serve ``tools`` and
``response_format`` anyway, llmplex adds an instruction to the prompt, renders the tool
history as text, and parses the answer into real tool calls or validated JSON. This package
is the pure, synchronous core of that; the stream wrapper that calls providers, retries and
reports the result lives above it.

:mod:`.schema`       JSON Schema validation (the subset tools and strict mode use)
:mod:`.tools`        the tool instruction, history rendering, the streaming call parser
:mod:`.json_output`  the ``response_format`` instruction, JSON extraction and checking

The submodules are imported on use, so importing this package costs nothing.
"""
