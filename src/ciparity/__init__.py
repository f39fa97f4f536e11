"""ciparity: every CI check and the real GitHub Actions workflow, in the same 3.12 containers."""

__version__ = "0.1.0"
