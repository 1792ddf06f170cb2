"""Agents: connectors that run an AI (or a plain command) on a task inside a sandbox."""
