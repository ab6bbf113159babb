"""User-facing errors: the CLI prints them as one clear message and exits non-zero, no traceback."""

from __future__ import annotations


class ToolchainError(Exception):
    """An error the user can fix: says what is wrong and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(ToolchainError):
    """The project configuration is invalid."""


class DataError(ToolchainError):
    """A dataset is missing, corrupt or cannot be downloaded."""


class BundleError(ToolchainError):
    """An artifact bundle is missing, incomplete or of an unknown format."""


class MismatchError(ToolchainError):
    """A device or export disagrees with the host reference."""

    exit_code = 1
