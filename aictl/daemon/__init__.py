"""The daemon: process control (process.py), the scheduler loop (loop.py), wake-ups (wakeup.py),
the daemons table (registry.py) and notifications (notify.py). Nothing is imported here: the
CLI pays only for the module it uses.
"""
