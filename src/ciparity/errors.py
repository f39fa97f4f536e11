"""Fatal errors: each carries the one line a user sees and the exit code the task ends with."""

from __future__ import annotations


class CiparityError(Exception):
    """An error that ends a task with one actionable line on stderr."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(CiparityError):
    """A setting has an unknown name or a value of the wrong form."""


class DockerError(CiparityError):
    """The docker CLI or daemon cannot do what was asked."""

    exit_code = 3


class BuildError(CiparityError):
    """An image build failed; the message names the failing step."""

    exit_code = 4


class CheckFailed(CiparityError):
    """A check ran and reported failures; its own exit code is propagated."""

    exit_code = 1


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM arrived; raised so every cleanup block runs before the exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
