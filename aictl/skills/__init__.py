"""Skills: instructions an AI loads on demand, in a registry with scopes, versions and requirements.

`model.py` parses one skill (SKILL.md folder or single YAML file) with line-accurate errors; `version.py`
checks semantic versions and ranges; `registry.py` reads the scopes (per-AI > shared > user) and the
enable/disable state; `resolve.py` picks what one AI gets for one task; `manage.py` adds, removes and
switches skills; `delivery.py` puts them where each connector's agent reads them.
"""

from aictl.skills.model import Skill, SkillError, load_skill_file
from aictl.skills.registry import SkillRegistry, load_registry
from aictl.skills.resolve import Resolved, resolve, validate

__all__ = [
    "Resolved",
    "Skill",
    "SkillError",
    "SkillRegistry",
    "load_registry",
    "load_skill_file",
    "resolve",
    "validate",
]
