"""Problems found in a spec, and the exception that carries them.

Every problem the tool reports, from YAML syntax to the channel arithmetic, becomes a
:class:`Problem`, so that the command line can print each as one ``FILE:LINE:COL: field: message``
line and an API user gets the same facts as attributes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Location:
    """A position in a spec file; line and column count from 1, as editors show them."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.column or 1}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec.

    Attributes:
        location: where to look; ``None`` when no file is involved (a spec built in Python).
        field: dotted path of the field at fault, e.g. ``blocks[2].growth_rate``; empty for the
            document as a whole.
        message: what is wrong and how to fix it.
        severity: warnings become errors under ``--strict``.
    """

    location: Location | None
    field: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        field = f"{self.field}: " if self.field else ""
        tag = "warning: " if self.severity == "warning" else ""
        return f"{where}{field}{tag}{self.message}"

    def as_error(self) -> Problem:
        return Problem(self.location, self.field, self.message, "error")


class SpecError(Exception):
    """A spec (or a file given with it) is invalid; ``problems`` lists every reason at once."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        if not self.problems:
            raise ValueError("SpecError needs at least one problem")
        super().__init__("\n".join(str(p) for p in self.problems))


def spec_error(message: str, *, field: str = "", file: str | None = None) -> SpecError:
    """Shorthand for a SpecError with one problem, located at the start of ``file``."""
    return SpecError([Problem(Location(file) if file else None, field, message)])


class RenderWarning(UserWarning):
    """A renderer did other than asked, and the output is still written (Graphviz scaling a png
    over its size limit down); the CLI prints it as a note."""


class ToolError(Exception):
    """Something outside the spec is missing or failed (a program, a file system); exit status 1."""


class UsageError(ToolError):
    """Valid input, but options that ask for what cannot be given (a Mermaid layer view too big to
    read): the command line's exit status 2, as for any wrong usage."""
