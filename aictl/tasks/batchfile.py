"""A batch of tasks from YAML or JSON text (`aictl task create -f`): a list, or a mapping with key `tasks`.

Short keys are accepted (`locks`, `capabilities`); `depends_on` may name tasks of the
same batch by their `key` or existing tasks by id. The specs go to TaskService.create_many.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aictl.tasks.spec import TaskSpec

SHORT_KEYS = (("locks", "lock_paths"), ("capabilities", "required_capabilities"))


def parse_batch(text: str, name: str) -> list[TaskSpec]:
    """TaskSpecs from the text of a batch file; ConfigError names the file, the task and the field."""
    from aictl.domain.errors import ConfigError
    from aictl.tasks.spec import SpecError, TaskSpec
    from aictl.yamlfile import parse_yaml

    data = parse_yaml(text, name)
    items = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ConfigError(f"{name}: expected a list of tasks (or a mapping with key 'tasks')")
    specs = []
    for i, item in enumerate(items):
        try:
            specs.append(TaskSpec.model_validate(_normalised(item)))
        except SpecError as e:
            raise ConfigError(f"{name}: task {i + 1}: {e.field}: {e.reason}") from None
    return specs


def _normalised(item: Any) -> Any:
    if not isinstance(item, dict):
        return item  # validation says what is wrong with it
    item = dict(item)
    for short, full in SHORT_KEYS:
        if short in item:
            item[full] = item.pop(short)
    if "depends_on" in item:
        item["depends_on"] = [str(d) for d in item["depends_on"]]
    return item


__all__ = ["parse_batch"]
