"""The four SDK connector variants (anthropic, openai chat and responses, ollama) and their test keys,
shared by test_sdk_connectors.py and test_sdk_executor.py (test modules do not import each other)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-KEYVALUE-0001",
    "OPENAI_API_KEY": "sk-test-KEYVALUE-0002",
    "OLLAMA_TEST_KEY": "ollama-test-KEYVALUE-0003",
}


@dataclass(frozen=True)
class Variant:
    connector: str
    model: str
    config: dict
    protocol: str  # as the fake provider records it
    key_env: str
    module: str


ANTHROPIC = Variant("anthropic", "claude-haiku-4-5", {}, "anthropic", "ANTHROPIC_API_KEY", "anthropic_api")
CHAT = Variant("openai", "gpt-4.1-mini", {"api": "chat"}, "openai-chat", "OPENAI_API_KEY", "openai_api")
RESPONSES = Variant("openai", "gpt-4.1-mini", {"api": "responses"}, "openai-responses", "OPENAI_API_KEY", "openai_api")
# Ollama needs no key by default; a hosted one takes a bearer token from the variable config names.
OLLAMA = Variant("ollama", "llama3.2:3b", {"api_key_env": "OLLAMA_TEST_KEY"}, "ollama", "OLLAMA_TEST_KEY", "ollama_api")
VARIANTS = [pytest.param(v, id=v.protocol) for v in (ANTHROPIC, CHAT, RESPONSES, OLLAMA)]

__all__ = ["ANTHROPIC", "CHAT", "KEYS", "OLLAMA", "RESPONSES", "VARIANTS", "Variant"]
