"""aictl: a control plane for AI coding agents working on one repository."""

__version__ = "0.1.0"
