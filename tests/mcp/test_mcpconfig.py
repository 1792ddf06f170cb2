"""The MCP servers a run's agent gets, in each CLI's own config format, and the AI config that adds servers."""

import json
import tomllib

import pytest

from aictl.agents.connectors.codex import config_toml
from aictl.agents.connectors.mcpconfig import claude_mcp_json, configured_servers
from aictl.domain.errors import ConfigError
from tests.agents.cli_fixtures import make_ctx

SERVERS = {
    "aictl": {
        "command": "/usr/bin/python3",
        "args": ["-m", "aictl", "mcp", "serve", "--task", "4"],
        "env": {"AICTL_ACTOR": "w1"},
    },
    "docs": {"url": "https://mcp.example.com/mcp", "bearer_token_env": "DOCS_TOKEN"},
}


def test_codex_gets_the_servers_in_its_config_toml(tmp_path):
    from aictl.domain.models import AIRecord

    ctx = make_ctx(
        tmp_path, AIRecord(id="c", connector="codex", model="gpt-5"), state_dir=None, prompt="p", mcp_servers=SERVERS
    )
    doc = tomllib.loads(config_toml(ctx, "KEY"))
    assert doc["mcp_servers"]["aictl"] == SERVERS["aictl"]
    assert doc["mcp_servers"]["docs"] == {"url": "https://mcp.example.com/mcp", "bearer_token_env_var": "DOCS_TOKEN"}


def test_claude_gets_stdio_and_http_servers_with_the_token_from_the_environment():
    doc = json.loads(claude_mcp_json(SERVERS))["mcpServers"]
    assert doc["aictl"]["type"] == "stdio" and doc["aictl"]["args"][-1] == "4" and doc["aictl"]["alwaysLoad"]
    assert doc["docs"] == {
        "type": "http",
        "url": "https://mcp.example.com/mcp",
        "alwaysLoad": True,
        "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"},
    }


def test_ai_config_servers_are_checked():
    assert configured_servers({}) == {}
    assert configured_servers({"mcp_servers": {"gh": {"command": "npx", "args": ["-y", "gh-mcp"]}}}) == {
        "gh": {"command": "npx", "args": ["-y", "gh-mcp"], "env": {}}
    }
    for bad, words in (
        ({"aictl": {"command": "x"}}, "run's own task server"),
        ({"x": {"command": "a", "url": "b"}}, "either command"),
        ({"x": {"command": "a", "args": "b"}}, "args must be a list"),
        ([1], "mapping"),
    ):
        with pytest.raises(ConfigError, match=words):
            configured_servers({"mcp_servers": bad})
