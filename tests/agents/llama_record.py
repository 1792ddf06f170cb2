"""Record streams from the real llama.cpp server as fixtures for the tool-call accumulator (test_toolstream.py).

    .venv/bin/python -m tests.agents.llama_record      # needs .ci/build-llama to have run

Each recording is the raw SSE body of one streamed Chat Completions answer (``NAME.sse``) and, beside it,
the calls it must come out as (``NAME.expected.json``), written from this run and then read by a person
before being committed: a recording is only as good as its check.
"""

from __future__ import annotations

import json
import sys
import tempfile
import urllib.request
from pathlib import Path

from aictl.agents.connectors.toolstream import ToolCallAccumulator
from tests.agents.llama_fixtures import MODEL, start_server

OUT = Path(__file__).parent / "recorded"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Create or overwrite a text file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_files",
            "description": "List the files under a directory.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    },
]
CASES = {
    "llama_forced_write_file": {
        "messages": [{"role": "user", "content": 'Create the file hello.txt containing "hi" and a quote: "x".'}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "write_file"}},
        "max_tokens": 120,
    },
    "llama_forced_list_files": {
        "messages": [{"role": "user", "content": "List the files in the src directory."}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "list_files"}},
        "max_tokens": 60,
    },
    "llama_text_no_tools": {
        "messages": [{"role": "user", "content": "Say hello in five words."}],
        "max_tokens": 24,
        "stream_options": {"include_usage": True},  # ignored by llama.cpp: no usage chunk follows
    },
}


def record(url: str) -> None:
    OUT.mkdir(exist_ok=True)
    for name, body in CASES.items():
        payload = {"model": MODEL, "stream": True, "temperature": 0, **body}
        req = urllib.request.Request(
            f"{url}/chat/completions", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=300) as resp:
            raw = resp.read().decode()
        (OUT / f"{name}.sse").write_text(raw)
        acc = ToolCallAccumulator()
        for line in raw.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices") or []:
                    for d in (choice.get("delta") or {}).get("tool_calls") or []:
                        fn = d.get("function") or {}
                        acc.add(d.get("index"), d.get("id"), fn.get("name"), fn.get("arguments"))
        expected = [{"name": c.name, "input": c.input, "error": c.error} for c in acc.finish()]
        (OUT / f"{name}.expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {len(raw)} bytes, calls {json.dumps(expected, ensure_ascii=False)}", file=sys.stderr)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), build=False)
        try:
            record(server.url)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
