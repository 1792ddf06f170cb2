"""The AI registry: which AIs exist, what they can do, and whether they may take work now.

Every change is one write transaction with one audit event (`ai_register`,
`ai_remove`, `ai_label`, …). Secrets never enter the registry: an AI names the
environment variable that holds its key (`api_key_env`, or another key its
connector's spec lists in `secret_env_keys`), and config keys or values that
look like a secret are refused. What a connector takes (its config keys, their
values, its defaults) is read from its spec (agents/connectors/spec.py).
"""

from __future__ import annotations

import builtins
import json
import re
import time
from collections.abc import Callable
from typing import Any

from aictl.audit.events import append_event, canonical_json
from aictl.domain.errors import Conflict, NotFound, UsageError
from aictl.domain.models import AIRecord
from aictl.store.base import Store, Tx

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+-]*$")  # the policy's per-AI file names use the same rule
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A config key that would hold a secret: secret/password/credential as a whole word anywhere, key/token only as the
# last word (api_key, api_token, auth_token) so that max_tokens, token_budget or key_env are ordinary settings.
# Connectors name their own secret keys too (`ConnectorSpec.secret_keys`).
SECRET_KEY = re.compile(
    r"(?i)((^|[_.-])(secret|secrets|password|passwd|passphrase|credentials?)([_.-]|$)|(^|[_.-])(key|token|apikey)$)"
)
# Config keys every connector may take and the type each must have; a connector's spec adds its own
# (`config_types`); other keys pass through to the connector.
CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "base_url": (str,),
    "binary": (str,),
    "args": (list,),
    "api_key_env": (str,),
    "max_turns": (int,),
    "max_tokens": (int,),
    "model_size_gb": (int, float),
    "requires_gpu": (bool,),
    "prices": (dict,),
    "timeout_s": (int, float),
    "mcp_servers": (dict,),
}
_TYPE_NAMES = {
    str: "a string",
    list: "a list",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a mapping",
}


def validate_id(ai_id: str) -> str:
    if not SAFE_ID.match(ai_id or ""):
        raise UsageError(
            f"invalid AI id {ai_id!r}: use letters, digits and _.@:+- (starting with a letter or digit)",
            hint="e.g. aictl ai register claude-1 --connector claude-code",
        )
    return ai_id


def _looks_like_secret(value: str) -> bool:
    from aictl.domain.redact import redact_text

    return redact_text(value) != value


def validate_config(connector: str, config: dict[str, Any]) -> dict[str, Any]:
    """Check an AI's connector and config against its spec; raise UsageError naming the first problem."""
    from aictl.agents.connectors.spec import spec_for

    spec = spec_for(connector)  # UsageError naming the known connectors
    env_keys = spec.secret_env_keys | {"api_key_env"}
    for name in sorted(env_keys & set(config)):
        env = config[name]
        if not isinstance(env, str) or not ENV_NAME.match(env):
            what = "a secret" if isinstance(env, str) and _looks_like_secret(env) else repr(env)
            raise UsageError(
                f"{name} must be the NAME of an environment variable, not {what}",
                hint="e.g. --api-key-env ANTHROPIC_API_KEY (aictl reads the key from it at run time)",
            )
    types = {**CONFIG_TYPES, **spec.config_types}
    for key, value in config.items():
        if key not in env_keys and (key in spec.secret_keys or SECRET_KEY.search(key)):
            raise UsageError(
                f"config key {key!r} looks like a secret: the registry never stores secrets",
                hint="put the key in an environment variable and name it: --api-key-env ANTHROPIC_API_KEY",
            )
        for text in _strings(value):
            if _looks_like_secret(text):
                raise UsageError(
                    f"config value of {key!r} looks like a secret (an API key or token): the registry never stores "
                    "secrets",
                    hint="put it in an environment variable and name it: --api-key-env MY_KEY_VAR",
                )
        want = types.get(key)
        if want and (not isinstance(value, want) or (bool not in want and isinstance(value, bool))):
            names = " or ".join(_TYPE_NAMES[t] for t in want)
            raise UsageError(
                f"config {key!r} must be {names}, not {value!r}",
                hint=f'e.g. --config {key}=VALUE (JSON values: 20, 4.7, true, ["a"])',
            )
    url = config.get("base_url")
    if url is not None and not re.match(r"^https?://[^/\s]+", url):
        raise UsageError(f"base_url must be an http(s) URL, not {url!r}", hint="e.g. --base-url http://127.0.0.1:11434")
    if "args" in config and not all(isinstance(a, str) for a in config["args"]):
        raise UsageError("config 'args' must be a list of strings")
    for key, choices in spec.config_choices.items():
        if key in config and config[key] not in choices:
            raise UsageError(
                f"config {key!r} of the {connector} connector must be "
                f"{' or '.join(map(str, choices))}, not {config[key]!r}"
            )
    if "mcp_servers" in config:  # name -> {command, args, env} or {url, bearer_token_env}: checked at register
        from aictl.agents.connectors.mcpconfig import configured_servers

        configured_servers(config)
    if "model_size_gb" in config and config["model_size_gb"] <= 0:
        raise UsageError("config 'model_size_gb' must be positive")
    return config


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def row_to_ai(row: dict[str, Any]) -> AIRecord:
    ai = AIRecord(
        id=row["id"],
        connector=row["connector"],
        model=row["model"],
        capabilities=json.loads(row["capabilities"]),
        labels=json.loads(row["labels"]),
        max_concurrency=row["max_concurrency"],
        config=json.loads(row["config"]),
        enabled=bool(row["enabled"]),
        paused_until=row["paused_until"],
        pause_reason=row["pause_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
    register_secrets(ai)
    return ai


def register_secrets(ai: AIRecord) -> None:
    """Tell the redactor this AI's secrets: every `*_env` config value names a variable holding one."""
    names = [v for k, v in (ai.config or {}).items() if k.endswith("_env") and isinstance(v, str)]
    if names:
        from aictl.domain.redact import register_env

        register_env(*names)


def _clean(values: list[str]) -> list[str]:
    return sorted({v.strip() for v in values if v and v.strip()})


class _DryRun(Exception):
    def __init__(self, result: Any):
        self.result = result


class Registry:
    def __init__(self, store: Store, *, actor: str = "aictl", clock: Callable[[], float] = time.time):
        self.store = store
        self.actor = actor
        self.clock = clock

    # -- plumbing -------------------------------------------------------------

    def _write(self, fn: Callable[[Tx, float], Any], dry_run: bool = False) -> Any:
        try:
            with self.store.write() as tx:
                result = fn(tx, self.clock())
                if dry_run:
                    raise _DryRun(result)
                return result
        except _DryRun as d:
            return d.result

    def _row(self, tx: Tx, ai_id: str) -> dict[str, Any]:
        row = tx.one("SELECT * FROM ais WHERE id = :id", {"id": ai_id})
        if row is None:
            raise NotFound(
                f"AI {ai_id!r} is not registered",
                hint="see the registered AIs with: aictl ai list; add one with: aictl ai register",
            )
        return row

    def _event(
        self, tx: Tx, now: float, action: str, ai_id: str, before: dict | None, after: dict | None, **data: Any
    ) -> None:
        append_event(
            tx,
            ts=now,
            actor=self.actor,
            action=action,
            before=before,
            after=after,
            data={"ai": ai_id, **{k: v for k, v in data.items() if v is not None}},
        )
        from aictl.tasks.service import notify_daemons

        notify_daemons(tx)  # a new, resumed or relabelled AI may make waiting tasks routable: wake daemons now

    @staticmethod
    def _state(row: dict[str, Any]) -> dict[str, Any]:
        """What an audit event records of an AI (its whole record; the config holds no secrets)."""
        ai = row_to_ai(row)
        return ai.model_dump(mode="json", exclude={"created_at", "updated_at"})

    # -- reads -------------------------------------------------------------------

    def get(self, ai_id: str) -> AIRecord:
        with self.store.read() as tx:
            return row_to_ai(self._row(tx, ai_id))

    def find(self, ai_id: str) -> AIRecord | None:
        with self.store.read() as tx:
            row = tx.one("SELECT * FROM ais WHERE id = :id", {"id": ai_id})
        return None if row is None else row_to_ai(row)

    def list(self) -> list[AIRecord]:
        with self.store.read() as tx:
            return [row_to_ai(r) for r in tx.all("SELECT * FROM ais ORDER BY id")]

    def rows(self) -> builtins.list[dict[str, Any]]:
        """Raw rows (with last_assigned_at, for the router's round robin)."""
        with self.store.read() as tx:
            return tx.all("SELECT * FROM ais ORDER BY id")

    def running_counts(self, tx: Tx | None = None) -> dict[str, int]:
        """Tasks held (claimed or running) per AI."""
        from aictl.tasks.queries import held_counts_by_ai

        if tx is not None:
            return held_counts_by_ai(tx)
        with self.store.read() as rtx:
            return held_counts_by_ai(rtx)

    def running(self, ai_id: str) -> int:
        return self.running_counts().get(ai_id, 0)

    # -- changes -------------------------------------------------------------------

    def register(self, ai: AIRecord, *, replace: bool = False, dry_run: bool = False) -> AIRecord:
        """Add an AI (or, with replace, overwrite one: its pause and round-robin position are kept)."""
        validate_id(ai.id)
        if ai.max_concurrency < 1:
            raise UsageError(f"max_concurrency must be at least 1, not {ai.max_concurrency}")
        validate_config(ai.connector, ai.config)
        caps, labels = _clean(ai.capabilities), _clean(ai.labels)

        def run(tx: Tx, now: float) -> AIRecord:
            old = tx.one("SELECT * FROM ais WHERE id = :id", {"id": ai.id})
            if old is not None and not replace:
                raise Conflict(
                    f"AI {ai.id!r} is already registered",
                    hint=f"change it with: aictl ai register {ai.id} … --replace (or aictl ai label)",
                )
            params = {
                "id": ai.id,
                "connector": ai.connector,
                "model": ai.model,
                "caps": canonical_json(caps),
                "labels": canonical_json(labels),
                "maxc": ai.max_concurrency,
                "config": canonical_json(ai.config),
                "enabled": int(ai.enabled),
                "now": now,
            }
            if old is None:
                row = tx.row(
                    "INSERT INTO ais (id, connector, model, capabilities, labels, max_concurrency, config,"
                    " enabled, created_at, updated_at) VALUES (:id, :connector, :model, :caps, :labels,"
                    " :maxc, :config, :enabled, :now, :now) RETURNING *",
                    params,
                )
            else:
                row = tx.row(
                    "UPDATE ais SET connector = :connector, model = :model, capabilities = :caps,"
                    " labels = :labels, max_concurrency = :maxc, config = :config, enabled = :enabled,"
                    " updated_at = :now WHERE id = :id RETURNING *",
                    params,
                )
            self._event(
                tx,
                now,
                "ai_register",
                ai.id,
                None if old is None else self._state(old),
                self._state(row),
                replaced=True if old is not None else None,
            )
            return row_to_ai(row)

        return self._write(run, dry_run)

    def remove(self, ai_id: str, *, force: bool = False, dry_run: bool = False) -> AIRecord:
        """Forget an AI; refused while it holds tasks, unless force (their leases then run out as usual)."""

        def run(tx: Tx, now: float) -> AIRecord:
            row = self._row(tx, ai_id)
            from aictl.tasks.queries import held_by_ai

            held = held_by_ai(tx, ai_id)
            if held and not force:
                raise Conflict(
                    f"AI {ai_id!r} holds {len(held)} running task(s): {', '.join(map(str, held))}",
                    hint=f"wait for them, or: aictl ai remove {ai_id} --force --yes",
                    details={"tasks": held},
                )
            tx.run("DELETE FROM ais WHERE id = :id", {"id": ai_id})
            self._event(tx, now, "ai_remove", ai_id, self._state(row), None, forced_with_tasks=held or None)
            return row_to_ai(row)

        return self._write(run, dry_run)

    def _update(
        self,
        ai_id: str,
        action: str,
        change: Callable[[dict[str, Any], float], dict[str, Any]],
        dry_run: bool,
        **data: Any,
    ) -> AIRecord:
        def run(tx: Tx, now: float) -> AIRecord:
            old = self._row(tx, ai_id)
            values = change(old, now)
            sets = ", ".join(f"{k} = :{k}" for k in values)
            row = tx.row(
                f"UPDATE ais SET {sets}, updated_at = :now WHERE id = :id RETURNING *",
                {**values, "now": now, "id": ai_id},
            )
            before, after = self._state(old), self._state(row)
            changed = {k for k in after if before.get(k) != after.get(k)}
            self._event(
                tx,
                now,
                action,
                ai_id,
                {k: before[k] for k in sorted(changed)},
                {k: after[k] for k in sorted(changed)},
                **data,
            )
            return row_to_ai(row)

        return self._write(run, dry_run)

    def label(self, ai_id: str, labels: builtins.list[str], *, dry_run: bool = False) -> AIRecord:
        add = _clean(labels)
        if not add:
            raise UsageError("give at least one label", hint=f"aictl ai label {ai_id} fast")
        return self._update(
            ai_id,
            "ai_label",
            lambda r, now: {"labels": canonical_json(sorted(set(json.loads(r["labels"])) | set(add)))},
            dry_run,
            labels=add,
        )

    def unlabel(self, ai_id: str, labels: builtins.list[str], *, dry_run: bool = False) -> AIRecord:
        drop = _clean(labels)
        if not drop:
            raise UsageError("give at least one label", hint=f"aictl ai unlabel {ai_id} fast")
        return self._update(
            ai_id,
            "ai_unlabel",
            lambda r, now: {"labels": canonical_json(sorted(set(json.loads(r["labels"])) - set(drop)))},
            dry_run,
            labels=drop,
        )

    def enable(self, ai_id: str, *, dry_run: bool = False) -> AIRecord:
        return self._update(ai_id, "ai_enable", lambda r, now: {"enabled": 1}, dry_run)

    def disable(self, ai_id: str, *, dry_run: bool = False) -> AIRecord:
        return self._update(ai_id, "ai_disable", lambda r, now: {"enabled": 0}, dry_run)

    def pause(self, ai_id: str, until: float, reason: str = "", *, dry_run: bool = False) -> AIRecord:
        """Keep the router off this AI until `until` (a rate or usage limit); a later pause never shortens it."""

        def change(row: dict[str, Any], now: float) -> dict[str, Any]:
            current = row["paused_until"] if row["paused_until"] is not None and row["paused_until"] > now else None
            if current is not None and current >= until:
                return {"paused_until": current, "pause_reason": row["pause_reason"]}
            return {"paused_until": until, "pause_reason": reason or None}

        return self._update(ai_id, "ai_pause", change, dry_run, reason=reason or None, until=until)

    def resume(self, ai_id: str, *, dry_run: bool = False) -> AIRecord:
        return self._update(ai_id, "ai_resume", lambda r, now: {"paused_until": None, "pause_reason": None}, dry_run)


def is_paused(ai: AIRecord, now: float) -> bool:
    return ai.paused_until is not None and ai.paused_until > now


def parse_config_pairs(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings → dict; values are JSON when they parse (numbers, true/false, lists), else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--config wants key=value, not {pair!r}", hint="e.g. --config max_turns=20")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = value
    return out


__all__ = ["Registry", "is_paused", "parse_config_pairs", "row_to_ai", "validate_config", "validate_id"]
