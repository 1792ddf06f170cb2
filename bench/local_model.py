"""A local model through aictl's openai connector against the bare openai SDK, same server, same run.

Starts the real llama.cpp server (llama-cpp-python 0.3.36 with Gemma 3 270M, built and cached by
.ci/build-llama; see tests/agents/llama_fixtures.py) on loopback and alternates, R times each:

* **aictl**: `OpenAIConnector().run(ctx)`, no tools offered, streamed (``stream=true``, every setting
  given so no probe is made), temperature 0 and ``max_tokens`` N: the tool loop, its events,
  transcript, usage, retry wrapper and stream watcher, and a new SDK client per run, as a task run has;
* **bare**: ``client.chat.completions.create(stream=True)`` with the same messages, temperature and
  max_tokens, drained, on one client made beforehand.

Both generate the same tokens (temperature 0, same prompt: checked, ``same_text``), so tokens/s through
aictl relative to bare is bare's wall time over aictl's. Time to first token: from the call to the first
streamed text (aictl: the loop's first `LoopRun.delta`); the overhead is aictl's median minus bare's.

The model's own time on a shared 2-core machine varies more between runs than aictl costs, so the same
measurement is repeated (10 R runs) against a server that answers at once (the fake provider): there
what is left of the time to first token is aictl's own. Prints one JSON object.

    .venv/bin/python bench/local_model.py [--runs 5] [--max-tokens 128] [--threads 1] [--skip-llama]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import emit, git_state, log, machine

PROMPT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,"  # Gemma 270M continues the count: ~55 tokens


def measure(url: str, model: str, runs: int, max_tokens: int, before_each=lambda: None) -> dict:
    """R alternating runs, bare then aictl, against the server at url; medians and samples."""
    import openai

    from aictl.agents.connectors.base import RunContext
    from aictl.agents.connectors.openai_api import OpenAIConnector
    from aictl.domain.models import AIRecord
    from aictl.sandbox import SandboxSpec, get_sandbox

    client = openai.OpenAI(api_key="none", base_url=url, max_retries=0)
    messages = [{"role": "user", "content": PROMPT}]
    config = {
        "base_url": url,
        "api_key_env": "LLAMA_BENCH_KEY",
        "stream": True,
        "stream_usage": False,
        "tool_choice": "omit",
        "max_tokens_param": "max_tokens",
        "max_tokens": max_tokens,
        "temperature": 0,
        "truncated": "continue",
        "max_turns": 1,
    }
    ai = AIRecord(id="bench", connector="openai", model=model, config=config)

    def bare() -> tuple[float, float, str, int]:
        t = time.perf_counter()
        ttft, chunks, text = None, 0, []
        stream = client.chat.completions.create(
            model=model, messages=messages, stream=True, temperature=0, max_tokens=max_tokens
        )
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    ttft = ttft or time.perf_counter()
                    chunks += 1
                    text.append(choice.delta.content)
        return time.perf_counter() - t, (ttft or t) - t, "".join(text), chunks

    def through_aictl(workdir: Path) -> tuple[float, float, str]:
        FIRST.clear()
        ctx = RunContext(
            task=None,
            workdir=workdir,
            sandbox=get_sandbox("local"),
            spec=SandboxSpec(timeout_s=600),
            ai=ai,
            prompt=PROMPT,
            allowed_tools=[],
        )
        t = time.perf_counter()
        result = OpenAIConnector().run(ctx)
        wall = time.perf_counter() - t
        text = next((e["text"] for e in result.events if e["type"] == "message"), "")
        return wall, (FIRST[0] if FIRST else t) - t, text

    rows: dict[str, list[float]] = {"aictl_s": [], "bare_s": [], "aictl_ttft_s": [], "bare_ttft_s": []}
    tokens, same = 0, True
    with tempfile.TemporaryDirectory() as tmp:
        before_each()
        bare()  # warm-up: model load, prompt cache, imports, first connection
        before_each()
        through_aictl(Path(tmp))
        for i in range(runs):
            log(f"run {i + 1}/{runs}")
            before_each()
            b_wall, b_ttft, b_text, tokens = bare()
            before_each()
            a_wall, a_ttft, a_text = through_aictl(Path(tmp))
            same = same and a_text == b_text
            rows["bare_s"].append(b_wall)
            rows["aictl_s"].append(a_wall)
            rows["bare_ttft_s"].append(b_ttft)
            rows["aictl_ttft_s"].append(a_ttft)
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "tokens_per_run": tokens,
        "same_text": same,
        "bare_tokens_per_s": round(tokens / med["bare_s"], 2),
        "aictl_tokens_per_s": round(tokens / med["aictl_s"], 2),
        "aictl_over_bare_tokens_per_s": round(med["bare_s"] / med["aictl_s"], 3),
        "ttft_ms": {"bare": round(med["bare_ttft_s"] * 1000, 2), "aictl": round(med["aictl_ttft_s"] * 1000, 2)},
        "ttft_overhead_ms": round((med["aictl_ttft_s"] - med["bare_ttft_s"]) * 1000, 2),
        # Best runs: on a loaded machine the fastest run of each is the least disturbed one.
        "best": {
            "aictl_over_bare_tokens_per_s": round(min(rows["bare_s"]) / min(rows["aictl_s"]), 3),
            "ttft_overhead_ms": round((min(rows["aictl_ttft_s"]) - min(rows["bare_ttft_s"])) * 1000, 2),
        },
        "samples_s": {k: [round(x, 4) for x in v] for k, v in rows.items()},
    }


FIRST: list[float] = []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-llama", action="store_true", help="only the instant fake server")
    args = ap.parse_args()

    from aictl.agents.connectors import toolloop
    from tests.agents.llama_fixtures import MODEL, VERSION, start_server
    from tests.fakeprovider import FakeProvider, reply

    os.environ.setdefault("LLAMA_BENCH_KEY", "none")
    original_delta = toolloop.LoopRun.delta

    def timed_delta(self: toolloop.LoopRun, text: str) -> None:
        if not FIRST:
            FIRST.append(time.perf_counter())
        original_delta(self, text)

    toolloop.LoopRun.delta = timed_delta  # type: ignore[method-assign]
    out: dict = {"runs": args.runs, "max_tokens": args.max_tokens, "prompt": PROMPT}
    if not args.skip_llama:
        with tempfile.TemporaryDirectory() as tmp:
            server = start_server(Path(tmp), threads=args.threads, build=False)
            try:
                log(f"llama.cpp server, {args.runs} runs")
                out["llama_cpp"] = {
                    "server": f"llama-cpp-python {VERSION}, {MODEL} Q4_K_M, {args.threads} thread(s)",
                    **measure(server.url, MODEL, args.runs, args.max_tokens),
                }
            finally:
                server.stop()
    # The same loop against a server that answers at once (the fake provider, 50 streamed pieces): what is
    # left is aictl's own cost, without the model's time and its noise.
    with FakeProvider(owned_by="me", consume=lambda rec: True) as fp:
        text = "".join(f"{n}, " for n in range(16, 66))

        def script() -> None:
            fp.script(reply(text=text))

        log(f"instant fake server, {args.runs * 10} runs")
        out["instant_server"] = {
            "server": "tests/fakeprovider on loopback (no model time)",
            **measure(fp.url + "/v1", "gpt-5.5", args.runs * 10, args.max_tokens, before_each=script),
        }
    out["goals"] = {"tokens_per_s_ratio": ">= 0.95", "ttft_overhead_ms": "< 20"}
    out["machine"] = machine()
    out["git"] = git_state()
    emit(out)


if __name__ == "__main__":
    main()
