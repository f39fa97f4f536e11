"""Invoke entry point: every task lives in the ciparity package (src/ciparity/tasks.py)."""

from ciparity.tasks import ns  # noqa: F401
