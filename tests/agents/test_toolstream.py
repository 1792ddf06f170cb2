"""The streamed tool-call accumulator: OpenAI's shape, the quirks real servers show, and hostile input.

Streams recorded from the real llama.cpp server (llama-cpp-python 0.3.36, tests/agents/recorded/) are replayed
chunk by chunk; the fake provider's quirk variants go through the real SDK in test_openai_compat.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aictl.agents.connectors.toolstream import MAX_CALLS, ToolCallAccumulator, parse_arguments

RECORDED = Path(__file__).parent / "recorded"


def feed(deltas: list[dict]) -> list:
    acc = ToolCallAccumulator()
    for d in deltas:
        fn = d.get("function") or {}
        acc.add(d.get("index"), d.get("id"), fn.get("name"), fn.get("arguments"))
    return acc.finish()


def test_openai_shape_id_and_name_once_then_argument_pieces():
    calls = feed(
        [
            {"index": 0, "id": "call_1", "function": {"name": "write_file", "arguments": ""}},
            {"index": 0, "function": {"arguments": '{"path": "a.'}},
            {"index": 0, "function": {"arguments": 'txt", "content": "hi"}'}},
        ]
    )
    assert [(c.id, c.name, c.input, c.error) for c in calls] == [
        ("call_1", "write_file", {"path": "a.txt", "content": "hi"}, None)
    ]


def test_repeated_id_and_name_in_every_chunk_are_not_appended():
    args = '{"path": "a.txt", "content": "hi"}'
    deltas = [
        {"index": 0, "id": "call_x", "function": {"name": "write_file", "arguments": args[i : i + 3]}}
        for i in range(0, len(args), 3)
    ]
    (call,) = feed(deltas)
    assert call.name == "write_file" and call.id == "call_x" and call.input == {"path": "a.txt", "content": "hi"}


def test_arguments_split_anywhere_including_escapes_and_multibyte_text():
    args = json.dumps({"path": "ü.txt", "content": 'say "hi"\n\tüñí'})
    (call,) = feed(
        [{"index": 0, "id": "c", "function": {"name": "write_file"}}]
        + [{"index": 0, "function": {"arguments": ch}} for ch in args]
    )
    assert call.input == {"path": "ü.txt", "content": 'say "hi"\n\tüñí'}


def test_calls_interleaved_by_index_come_out_in_first_seen_order():
    a, b = json.dumps({"path": "a"}), json.dumps({"path": "b"})
    deltas = [
        {"index": 1, "id": "c1", "function": {"name": "read_file", "arguments": ""}},
        {"index": 0, "id": "c0", "function": {"name": "list_files", "arguments": ""}},
    ]
    for i in range(max(len(a), len(b))):
        deltas.append({"index": 0, "function": {"arguments": b[i : i + 1]}})
        deltas.append({"index": 1, "function": {"arguments": a[i : i + 1]}})
    calls = feed(deltas)
    assert [(c.id, c.name, c.input) for c in calls] == [
        ("c1", "read_file", {"path": "a"}),
        ("c0", "list_files", {"path": "b"}),
    ]


def test_a_server_that_resends_the_whole_text_so_far():
    (call,) = feed(
        [
            {"index": 0, "id": "c", "function": {"name": "write_file", "arguments": '{"path"'}},
            {"index": 0, "function": {"arguments": '{"path": "a.txt"'}},
            {"index": 0, "function": {"arguments": '{"path": "a.txt", "content": ""}'}},
            {"index": 0, "function": {"arguments": '{"path": "a.txt", "content": ""}'}},  # the whole, again
        ]
    )
    assert call.input == {"path": "a.txt", "content": ""} and call.error is None


def test_every_call_at_index_zero_with_its_own_id_is_several_calls():
    calls = feed(
        [
            {"index": 0, "id": "c1", "function": {"name": "read_file", "arguments": '{"path": "a"}'}},
            {"index": 0, "id": "c2", "function": {"name": "read_file", "arguments": '{"path": "b"}'}},
        ]
    )
    assert [(c.id, c.input) for c in calls] == [("c1", {"path": "a"}), ("c2", {"path": "b"})]


def test_deltas_without_an_index_continue_the_last_call():
    (call,) = feed(
        [
            {"id": "c1", "function": {"name": "read_file", "arguments": '{"pa'}},
            {"function": {"arguments": 'th": "a"}'}},
        ]
    )
    assert call.input == {"path": "a"}


def test_unusable_arguments_become_an_error_for_the_model_not_an_exception():
    calls = feed(
        [
            {"index": 0, "id": "c1", "function": {"name": "write_file", "arguments": '{"path": "a.t'}},  # cut off
            {"index": 1, "id": "c2", "function": {"name": "read_file", "arguments": "[1, 2]"}},
            {"index": 2, "id": "c3", "function": {"arguments": "{}"}},  # no name: nothing to run
        ]
    )
    assert [c.id for c in calls] == ["c1", "c2"]
    assert "not valid JSON" in calls[0].error and calls[0].input == '{"path": "a.t'
    assert "must be a JSON object" in calls[1].error


def test_empty_arguments_mean_no_arguments_and_a_leading_empty_object_is_dropped():
    assert parse_arguments("") == ({}, None)
    assert parse_arguments('{}{"path": "a"}') == ({"path": "a"}, None)


def test_hostile_sizes_are_capped():
    acc = ToolCallAccumulator()
    for i in range(MAX_CALLS + 50):
        acc.add(i, f"c{i}", "list_files", "{}")
    assert len(acc.finish()) == MAX_CALLS and acc.dropped == 50
    acc = ToolCallAccumulator()
    acc.add(0, "c", "x" * 10_000, None)
    acc.add(0, None, None, "{" + " " * 2_100_000)
    (call,) = acc.finish()
    assert len(call.name) <= 256 and "were cut" in call.error


def _recorded() -> list:
    return sorted(RECORDED.glob("*.sse"))


@pytest.mark.parametrize("path", _recorded(), ids=lambda p: p.stem)
def test_recorded_streams_from_the_real_server(path):
    """Each recording: the raw SSE of one streamed answer, and beside it what the calls must come out as."""
    deltas = []
    for line in path.read_text().splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        for choice in json.loads(line[len("data: ") :]).get("choices") or []:
            deltas += (choice.get("delta") or {}).get("tool_calls") or []
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    assert [{"name": c.name, "input": c.input, "error": c.error} for c in feed(deltas)] == expected


def test_the_recordings_show_the_quirks_they_stand_for():
    """Recorded with tests/agents/llama_record.py against llama-cpp-python 0.3.36 (Gemma 3 270M)."""
    assert len(_recorded()) >= 3
    forced = (RECORDED / "llama_forced_write_file.sse").read_text()
    chunks = [json.loads(line[6:]) for line in forced.splitlines() if line.startswith("data: {")]
    named = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls") or [] if d["function"]["name"]]
    assert len(named) > 2 and len({d["id"] for d in named}) == 1  # id and name repeated in every chunk
    text = (RECORDED / "llama_text_no_tools.sse").read_text()
    assert '"include_usage"' not in text and '"usage"' not in text  # asked for, never sent while streaming
