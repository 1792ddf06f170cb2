"""Streamed tool calls put back together, tolerating what real OpenAI-compatible servers send.

A Chat Completions stream carries each tool call as deltas keyed by ``index``:
OpenAI sends ``id`` and ``function.name`` once, then argument pieces. Other
servers differ, and the accumulator accepts them all (each case has a recorded
or fake-provider stream under tests/):

- llama.cpp (llama-cpp-python 0.3.x) repeats ``id`` and ``function.name`` in
  every chunk: a repeat is the same value again, never a piece to append;
- arguments split anywhere (inside a key, an escape, a multi-byte character):
  pieces are joined as text and parsed once, at the end;
- several calls interleaved by index: each index has its own slot, and the
  calls come out in the order their indexes first appeared;
- a server that resends the whole argument text so far instead of a delta:
  a piece that starts with everything accumulated replaces it;
- a server that numbers every call 0 but gives each its own id: a new id at an
  index whose call already has arguments starts a new call.

Nothing here raises on hostile input: a call whose arguments do not parse is
returned with an error the model is told about, and sizes are capped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_ARGUMENT_CHARS = 2_000_000  # a tool call's arguments; more is cut (write_file itself takes up to 1 MB)
MAX_CALLS = 128  # calls in one turn; more are dropped, not kept in memory
MAX_NAME_CHARS = 256


@dataclass
class PartialCall:
    """One tool call as its deltas arrive."""

    key: int  # the server's index (or a synthetic one for a call that reused an index)
    id: str | None = None
    name: str = ""
    arguments: str = ""
    cut: bool = False  # the arguments passed MAX_ARGUMENT_CHARS


@dataclass
class FinishedCall:
    id: str
    name: str
    arguments: str  # the raw text, as sent back to the model in the assistant message
    input: Any  # the parsed arguments (the raw text when they did not parse)
    error: str | None = None  # why the arguments are unusable; the model is told


@dataclass
class ToolCallAccumulator:
    """Feed it each ``delta.tool_calls`` entry (`add`); `finish` returns the calls in order."""

    calls: list[PartialCall] = field(default_factory=list)
    _by_index: dict[int, PartialCall] = field(default_factory=dict)
    dropped: int = 0

    def add(self, index: int | None, id: str | None, name: str | None, arguments: str | None) -> None:
        slot = self._slot(index, id)
        if slot is None:
            return
        if id and not slot.id:
            slot.id = id[:MAX_NAME_CHARS]
        if name:
            self._add_name(slot, name)
        if arguments:
            self._add_arguments(slot, arguments)

    def _slot(self, index: int | None, id: str | None) -> PartialCall | None:
        if not isinstance(index, int) or isinstance(index, bool):
            # No index: a new id starts a call, anything else continues the last one.
            last = self.calls[-1] if self.calls else None
            if last is not None and not (id and last.id and id != last.id):
                return last
            return self._new(None)
        slot = self._by_index.get(index)
        if slot is not None and id and slot.id and id != slot.id and slot.arguments:
            slot = None  # the same index reused by a second call with its own id
        return slot if slot is not None else self._new(index)

    def _new(self, index: int | None) -> PartialCall | None:
        if len(self.calls) >= MAX_CALLS:
            self.dropped += 1
            return None
        slot = PartialCall(key=index if index is not None else len(self.calls))
        self.calls.append(slot)
        if index is not None:
            self._by_index[index] = slot  # the server's index now means the newest call that used it
        return slot

    @staticmethod
    def _add_name(slot: PartialCall, name: str) -> None:
        if not slot.name:
            slot.name = name[:MAX_NAME_CHARS]
        elif name != slot.name and not slot.name.endswith(name) and len(slot.name) + len(name) <= MAX_NAME_CHARS:
            slot.name += name  # a name really sent in pieces (no server seen does it, the protocol allows it)

    @staticmethod
    def _add_arguments(slot: PartialCall, piece: str) -> None:
        if slot.cut:
            return
        if slot.arguments and len(piece) > len(slot.arguments) and piece.startswith(slot.arguments):
            text = piece  # the whole text so far, resent
        elif slot.arguments and piece == slot.arguments and _parses(piece):
            return  # the complete arguments sent again at the end
        else:
            text = slot.arguments + piece
        if len(text) > MAX_ARGUMENT_CHARS:
            text, slot.cut = text[:MAX_ARGUMENT_CHARS], True
        slot.arguments = text

    def finish(self) -> list[FinishedCall]:
        """The calls so far, arguments parsed; a call with no name is dropped (there is nothing to run)."""
        out = []
        for n, slot in enumerate(self.calls):
            if not slot.name:
                continue
            value, error = parse_arguments(slot.arguments)
            if slot.cut:
                error = f"the arguments were longer than {MAX_ARGUMENT_CHARS} characters and were cut"
            out.append(
                FinishedCall(
                    id=slot.id or f"call_{n}", name=slot.name, arguments=slot.arguments, input=value, error=error
                )
            )
        return out


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def parse_arguments(raw: str | None) -> tuple[Any, str | None]:
    """(the arguments as an object, None) or (the raw text, why it is not a JSON object)."""
    text = (raw or "").strip() or "{}"
    try:
        value = json.loads(text)
    except ValueError as e:
        # "{}" followed by the real arguments: a server that opened the call with empty arguments.
        if text.startswith("{}") and _parses(text[2:]):
            return json.loads(text[2:]), None
        return raw, f"the arguments are not valid JSON ({e}); send a JSON object"
    if not isinstance(value, dict):
        return value, f"the arguments must be a JSON object, not {type(value).__name__}"
    return value, None


__all__ = ["MAX_ARGUMENT_CHARS", "MAX_CALLS", "FinishedCall", "PartialCall", "ToolCallAccumulator", "parse_arguments"]
