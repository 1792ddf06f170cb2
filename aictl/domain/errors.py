"""Errors raised by aictl's services, and the exit code each one maps to.

Hierarchy (the CLI maps each class to one exit code; nothing else does)::

    AictlError                    exit 1  generic failure
    ├── UsageError                exit 2  bad input: flags, YAML, expressions
    │   └── ConfigError           exit 2  a config or policy file is malformed
    ├── NotFound                  exit 3  no such task / AI / decision / event
    ├── Conflict                  exit 4  the state does not allow the change
    │   ├── IllegalTransition     exit 4  e.g. complete a task that is queued
    │   ├── LeaseLost             exit 4  (owner, epoch) no longer holds the lease
    │   ├── LockConflict          exit 4  path locks overlap a held lock
    │   ├── AILimitReached        exit 4  the AI already holds max_concurrency tasks
    │   └── CycleError            exit 4  a dependency would close a cycle
    ├── PolicyDenied              exit 5  the policy said deny
    ├── NotInitialized            exit 1  no .ai/ project here
    └── StoreError                exit 1  the database cannot be used
        └── SchemaTooNew          exit 1  the store was written by a newer aictl

Every error carries a stable ``code`` (for JSON consumers), a message, and a
``hint`` that names the command that fixes it, where there is one.
"""

from __future__ import annotations

from typing import Any


class ExitCode:
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    POLICY_DENIED = 5
    INTERRUPTED = 130


class AictlError(Exception):
    code = "error"
    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "exit_code": self.exit_code}
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = self.details
        return out


class UsageError(AictlError):
    code = "usage"
    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    code = "config_invalid"


class NotFound(AictlError):
    code = "not_found"
    exit_code = ExitCode.NOT_FOUND


class Conflict(AictlError):
    code = "conflict"
    exit_code = ExitCode.CONFLICT


class IllegalTransition(Conflict):
    code = "illegal_transition"


class LeaseLost(Conflict):
    code = "lease_lost"


class LockConflict(Conflict):
    code = "lock_conflict"


class AILimitReached(Conflict):
    code = "ai_limit_reached"


class CycleError(Conflict):
    code = "dependency_cycle"


class PolicyDenied(AictlError):
    code = "policy_denied"
    exit_code = ExitCode.POLICY_DENIED


class NotInitialized(AictlError):
    code = "not_initialized"


class StoreError(AictlError):
    code = "store_error"


class SchemaTooNew(StoreError):
    code = "schema_too_new"
