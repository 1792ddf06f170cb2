"""aictl's tool loop against the bare SDK: what one turn costs on top of the streamed request itself.

For each API connector (anthropic, openai chat, openai responses, ollama) against the fake provider on
127.0.0.1 (tests/fakeprovider, TCP_NODELAY): runs of T turns where the model calls list_files each turn
and then says "done", through the connector (events, transcript, usage, tool run, retry wrapper,
stream watch thread), against the same number of streamed requests made with the SDK directly and
drained. Also the import time of each SDK and of the connector module (which must not import it).
Prints one JSON object.

    python bench/api_loop.py [--turns 20] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit, git_state, log, machine, ms_stats

VARIANTS = {
    "anthropic": ("anthropic", "claude-haiku-4-5", {}, "anthropic_api"),
    "openai-chat": ("openai", "gpt-4.1-mini", {"api": "chat"}, "openai_api"),
    "openai-responses": ("openai", "gpt-4.1-mini", {"api": "responses"}, "openai_api"),
    "ollama": ("ollama", "llama3.2:3b", {}, "ollama_api"),
}
TOOL = {"name": "list_files", "description": "list", "parameters": {"type": "object", "properties": {}}}


def import_s(stmt: str) -> float:
    code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    return float(out.stdout.strip())


def bare_requests(name: str, url: str, model: str, n: int) -> None:
    """n streamed requests with the SDK itself, each drained, as the floor the loop runs on."""
    msgs = [{"role": "user", "content": "list"}]
    if name == "anthropic":
        import anthropic

        c = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0)
        tools = [{"name": TOOL["name"], "description": TOOL["description"], "input_schema": TOOL["parameters"]}]
        for _ in range(n):
            with c.messages.stream(model=model, max_tokens=100, messages=msgs, tools=tools) as s:
                s.get_final_message()
    elif name.startswith("openai"):
        import openai

        c = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
        for _ in range(n):
            if name == "openai-chat":
                stream = c.chat.completions.create(
                    model=model,
                    messages=msgs,
                    stream=True,
                    stream_options={"include_usage": True},
                    tools=[{"type": "function", "function": TOOL}],
                )
            else:
                stream = c.responses.create(
                    model=model,
                    input=msgs,
                    stream=True,
                    store=False,
                    tools=[{"type": "function", "strict": False, **TOOL}],
                )
            for _event in stream:
                pass
    else:
        import ollama

        c = ollama.Client(host=url)
        for _ in range(n):
            for _part in c.chat(
                model=model, messages=msgs, stream=True, tools=[{"type": "function", "function": TOOL}]
            ):
                pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    from aictl.agents.connectors import get_connector
    from aictl.agents.connectors.base import RunContext
    from aictl.domain.models import AIRecord
    from aictl.sandbox import SandboxSpec, get_sandbox
    from tests.fakeprovider import FakeProvider, reply, tool

    os.environ.setdefault("ANTHROPIC_API_KEY", "bench")
    os.environ.setdefault("OPENAI_API_KEY", "bench")
    out: dict = {"turns": args.turns, "runs": args.runs, "imports_s": {}, "connectors": {}}
    for sdk in ("anthropic", "openai", "ollama"):
        out["imports_s"][sdk] = round(import_s(f"import {sdk}"), 3)
    out["imports_s"]["aictl connector modules"] = round(
        import_s(
            "import aictl.agents.connectors.anthropic_api, aictl.agents.connectors.openai_api, "
            "aictl.agents.connectors.ollama_api"
        ),
        3,
    )
    for name, (connector, model, config, _module) in VARIANTS.items():
        log(f"{name}: {args.runs} runs of {args.turns} turns")
        loop, bare = [], []
        with FakeProvider() as fp, tempfile.TemporaryDirectory() as d:
            (Path(d) / "a.txt").write_text("a\n")
            ai = AIRecord(id="bench", connector=connector, model=model, config={"base_url": fp.url, **config})
            bare_requests(name, fp.url, model, 2)  # warm: imports, first connection
            for _ in range(args.runs):
                fp.script(*[reply(tools=[tool("list_files", {})]) for _ in range(args.turns - 1)], reply(text="done"))
                ctx = RunContext(
                    task=None,
                    workdir=Path(d),
                    sandbox=get_sandbox("local"),
                    spec=SandboxSpec(),
                    ai=ai,
                    prompt="list the files",
                    max_turns=args.turns,
                )
                t = time.perf_counter()
                res = get_connector(connector).run(ctx)
                loop.append((time.perf_counter() - t) / args.turns)
                assert res.ok and res.usage["turns"] == args.turns, res.error
                fp.script(*[reply(tools=[tool("list_files", {})]) for _ in range(args.turns)])
                t = time.perf_counter()
                bare_requests(name, fp.url, model, args.turns)
                bare.append((time.perf_counter() - t) / args.turns)
        out["connectors"][name] = {"aictl_loop_per_turn": ms_stats(loop), "bare_sdk_per_request": ms_stats(bare)}
    out["machine"] = machine(git_state())
    emit(out)


if __name__ == "__main__":
    main()
