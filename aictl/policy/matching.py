"""Rules compiled for evaluation: globs to regexes, paths to pathspecs, conditions to CEL programs.

Globs and paths compile once per rule at load time, a condition on first use (so CEL loads only
when a rule's other match fields hold); `CompiledRule.check` is the hot path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aictl.policy.commands import parse_command
from aictl.policy.conditions import VARIABLES, FieldTree, compile_condition, new_activation, project, run_condition
from aictl.policy.paths import compile_globs, compile_paths, normalize_command, normalize_path
from aictl.policy.vocab import Effect

if TYPE_CHECKING:
    from aictl.policy.request import PolicyRequest
    from aictl.policy.schema import Rule


class RequestView:
    """The request reduced to what matching needs, computed once per evaluation.

    `cel_fields` is the union of the fields the policy's conditions select; only those are
    converted to CEL values (conversion, not evaluation, is what costs time).
    """

    __slots__ = (
        "_activation",
        "_cel_fields",
        "action",
        "ai",
        "ai_labels",
        "command",
        "command_forms",
        "paths",
        "programs",
        "request",
        "task_labels",
        "task_type",
    )

    def __init__(self, request: PolicyRequest, cel_fields: FieldTree | None = None):
        self.request = request
        subject, resource = request.subject, request.resource
        self.ai = subject.ai
        self.ai_labels = frozenset(subject.ai_labels)
        self.action = request.action
        raw_paths = ([resource.path] if resource.path else []) + list(resource.paths)
        self.paths = [normalize_path(p) for p in raw_paths if p]
        self.command = normalize_command(resource.command) if resource.command is not None else None
        # `commands` globs meet the whole line and each simple command in it; `programs` the parsed names
        if self.command is not None:
            parsed = parse_command(resource.command)
            self.command_forms: tuple[str, ...] = (self.command, *parsed.segments)
            self.programs: tuple[str, ...] = parsed.programs
        else:
            self.command_forms = self.programs = ()
        task = resource.task or {}
        labels = task.get("labels") or ()
        self.task_labels = frozenset(
            label
            for label in (labels if isinstance(labels, (list, tuple, set, frozenset)) else ())
            if isinstance(label, str)
        )
        task_type = task.get("type")
        self.task_type = task_type if isinstance(task_type, str) else None
        self._cel_fields = cel_fields
        self._activation: Any = None

    def activation(self) -> tuple[Any, str | None]:
        """(the CEL context, None), or (None, why the request's values cannot be given to CEL)."""
        if self._activation is None:
            fields = self._cel_fields
            try:
                if fields is None:
                    variables = {name: self.cel_variable(name) for name in VARIABLES}
                else:
                    variables = {name: project(self.cel_variable(name), tree) for name, tree in fields.items()}
                self._activation = (new_activation(variables), None)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - e.g. an int beyond 64 bits, or a set, in context or resource.extra
                self._activation = (None, f"the request cannot be converted for CEL: {type(exc).__name__}: {exc}")
        return self._activation

    def cel_variable(self, name: str) -> Any:
        """One CEL variable as plain dicts and lists; paths normalized like for `match.paths`."""
        request = self.request
        if name == "subject":
            s = request.subject
            return {
                "ai": s.ai,
                "ai_labels": s.ai_labels,
                "task_id": s.task_id,
                "lease_epoch": s.lease_epoch,
                "actor": s.actor,
            }
        if name == "resource":
            r = request.resource
            return {
                "task": r.task or {},
                "path": self.paths[0] if r.path else None,
                "paths": self.paths,
                "command": r.command,
                "programs": list(self.programs),
                "segments": list(self.command_forms[1:]),
                "extra": r.extra,
            }
        if name == "action":
            return request.action
        return request.context


class CompiledRule:
    """One rule ready to match. `scope` is the AI glob of the `ai:` section or per-AI file it came from;
    `overlay` the task label a workflow overlay's rule needs (an overlay's allow rule only adds limits)."""

    __slots__ = (
        "_program",
        "actions",
        "ai",
        "ai_labels",
        "commands",
        "effect",
        "id",
        "is_deny",
        "limits_only",
        "overlay",
        "paths",
        "programs",
        "rule",
        "scope",
        "task_labels",
        "task_types",
    )

    def __init__(self, rule: Rule | Any, scope: str | None = None, overlay: str | None = None):
        m = rule.match
        self.rule = rule
        self.id = rule.id
        self.effect = rule.effect
        self.is_deny = rule.effect is Effect.deny
        self.scope = scope
        self.overlay = overlay
        self.limits_only = overlay is not None and rule.effect is Effect.allow
        self.ai = compile_globs(tuple(m.ai)) if m.ai is not None else None
        self.ai_labels = frozenset(m.ai_labels) if m.ai_labels is not None else None
        self.actions = frozenset(m.actions) if m.actions is not None else None
        self.paths = compile_paths(tuple(m.paths)) if m.paths is not None else None
        self.commands = compile_globs(tuple(m.commands)) if m.commands is not None else None
        programs = getattr(m, "programs", None)
        self.programs = compile_globs(tuple(programs)) if programs is not None else None
        self.task_labels = frozenset(m.task_labels) if m.task_labels is not None else None
        self.task_types = frozenset(m.task_types) if m.task_types is not None else None
        self._program: Any = None  # compiled on first use: CEL loads only when a condition is reached

    @property
    def program(self) -> Any:
        if self._program is None and self.rule.when is not None:
            self._program = compile_condition(self.rule.when)
        return self._program

    def check(self, view: RequestView) -> tuple[bool, str | None, str | None]:
        """(matched, the first field that failed, condition error). A condition error on a deny rule matches."""
        if self.overlay is not None and self.overlay not in view.task_labels:
            return False, "overlay", None
        if self.actions is not None and view.action not in self.actions:
            return False, "actions", None
        if self.ai is not None and (view.ai is None or self.ai.match(view.ai) is None):
            return False, "ai", None
        if self.ai_labels is not None and not self.ai_labels <= view.ai_labels:
            return False, "ai_labels", None
        if self.task_types is not None and view.task_type not in self.task_types:
            return False, "task_types", None
        if self.task_labels is not None and self.task_labels.isdisjoint(view.task_labels):
            return False, "task_labels", None
        if self.commands is not None:
            match_command = self.commands.match
            if not any(match_command(form) is not None for form in view.command_forms):
                return False, "commands", None
        if self.programs is not None:
            match_program = self.programs.match
            if not any(match_program(name) is not None for name in view.programs):
                return False, "programs", None
        if self.paths is not None:
            match_path = self.paths.match
            for path in view.paths:
                if match_path(path):
                    break
            else:
                return False, "paths", None
        if self.rule.when is not None:
            activation, error = view.activation()
            if error is None:
                result, error = run_condition(self.program, activation)
            if error is not None:
                return self.is_deny, "when", error
            if not result:
                return False, "when", None
        return True, None, None

    def explain_failure(self, field: str, view: RequestView, error: str | None) -> str:
        m = self.rule.match
        if field == "overlay":
            return f"the task does not carry label {self.overlay!r} (the rule is a workflow overlay's)"
        if field == "actions":
            return f"action {view.action!r} is not one of {m.actions}"
        if field == "ai":
            if view.ai is None:
                return f"the request names no AI (subject.ai), and the rule needs ai {m.ai}"
            return f"AI {view.ai!r} matches none of ai {m.ai}"
        if field == "ai_labels":
            missing = sorted(set(m.ai_labels or ()) - view.ai_labels)
            return f"the AI lacks label(s) {missing} (it has {sorted(view.ai_labels)})"
        if field == "task_types":
            return f"task type {view.task_type!r} is not one of {m.task_types}"
        if field == "task_labels":
            return f"task labels {sorted(view.task_labels)} include none of {m.task_labels}"
        if field == "commands":
            if view.command is None:
                return f"the request has no command, and the rule needs commands {m.commands}"
            return f"command {view.command!r} matches none of {m.commands}"
        if field == "programs":
            if view.command is None:
                return f"the request has no command, and the rule needs programs {getattr(m, 'programs', None)}"
            return f"programs {list(view.programs)} match none of {getattr(m, 'programs', None)}"
        if field == "paths":
            if not view.paths:
                return f"the request has no path, and the rule needs paths {m.paths}"
            return f"no path of {view.paths} matches paths {m.paths}"
        if field == "when":
            if error is not None:
                return f"condition error ({error}); a non-deny rule fails open to 'not matched'"
            return f"condition is false: {self.rule.when}"
        return field
