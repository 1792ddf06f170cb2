"""The merge queue: done tasks' commits land on the integration branch (queue.py), with git plumbing in git.py."""
