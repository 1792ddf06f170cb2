"""Fake model provider for tests: the real wire protocols, scripted per test (see server.py)."""

from tests.fakeprovider.server import (
    DEFAULT_MODELS,
    LLAMA_CPP,
    QUIRKS,
    Error,
    FakeProvider,
    Recorded,
    Reply,
    ToolCall,
    error,
    reply,
    tool,
)

__all__ = [
    "DEFAULT_MODELS",
    "LLAMA_CPP",
    "QUIRKS",
    "Error",
    "FakeProvider",
    "Recorded",
    "Reply",
    "ToolCall",
    "error",
    "reply",
    "tool",
]
