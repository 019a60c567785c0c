"""The command line's parser, in the tool's words: ``-h`` for ``--help``, and click's own usage
errors (an unknown option, a value out of range, a missing ``--to``) as one ``error: ...`` line on
stderr naming the option and what it takes, exit status 2, as the tool's other usage errors.

click prints these as ``Usage: ... / Try ... / Error: ...`` over several lines, with pydantic's
wording for a refused value (``Input should be greater than or equal to 10``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

try:  # typer >= 0.22 carries its own click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as click_errors  # type: ignore[no-redef,import-not-found,unused-ignore]


def usage_error(message: str) -> NoReturn:
    """Wrong usage: one line on stderr, exit status 2 (the contract's, as click's own usage errors)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


HELP_OPTIONS = ("-h", "--help")
"""``-h`` is ``--help``, for the app and every command."""


def help_option_names(command: Any) -> list[str]:
    """``-h`` and ``--help``, less any that one of ``command``'s own options already uses."""
    taken = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    return [name for name in HELP_OPTIONS if name not in taken]


class Command(TyperCommand):
    """A command that takes ``-h`` for ``--help``."""

    def get_help_option_names(self, ctx: Any) -> list[str]:
        return help_option_names(self)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with one_line_usage_errors(self):  # where the command's options are parsed
            return super().make_context(info_name, args, parent, **extra)


@contextmanager
def one_line_usage_errors(command: Any) -> Iterator[None]:
    """click's usage errors (``Usage: ... / Try ... / Error: ...``) as one ``error:`` line, exit 2.
    Running with no arguments still prints the help (click's NoArgsIsHelpError)."""
    try:
        yield
    except click_errors.NoArgsIsHelpError:
        raise
    except click_errors.UsageError as exc:
        usage_error(_parser_error(exc, command))


def check_version_alone(args: list[str]) -> None:
    """``--version`` takes no arguments: ``--version extra`` is a usage error, not a silent version."""
    before = list(itertools.takewhile(lambda arg: arg != "--", args))  # after "--" nothing is an option
    options = list(itertools.takewhile(lambda arg: arg.startswith("-"), before))
    if "--version" not in options or any(arg in HELP_OPTIONS for arg in options):  # help wins, as click has it
        return
    others = [arg for arg in args if arg != "--version"]
    if others:
        usage_error(f"--version takes nothing else; got {' '.join(repr(a) if not a.strip() else a for a in others)}")


def _parser_error(exc: click_errors.UsageError, command: Any = None) -> str:
    """The message of one of click's usage errors about ``command``'s arguments, in the tool's
    words (without ``error: ``)."""
    param = getattr(exc, "param", None)
    if isinstance(exc, click_errors.MissingParameter) and param is not None:
        if getattr(param, "param_type_name", "") == "argument":
            return f"missing argument {_param_name(param)}" + _help_of(param)
        return f"missing option {_param_name(param)}" + _one_of(param)
    if isinstance(exc, click_errors.BadParameter) and param is not None:
        return f"{_param_name(param)}: {_bad_value(exc, param)}"
    if isinstance(exc, click_errors.NoSuchOption):
        close = sorted(exc.possibilities or ())
        return f"no such option {exc.option_name}" + (f" (did you mean {', '.join(close)}?)" if close else "")
    message = " ".join(exc.format_message().split()).rstrip(".")  # click's lists span lines with tabs
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click_errors.BadOptionUsage):
        message = re.sub(r"^Option '([^']+)' requires an argument", r"\1 needs a value", message)
        message = re.sub(r"^Option '([^']+)' does not take a value", r"\1 is a flag: it takes no value", message)
        found = _param_by_option(command, exc.option_name)
        if found is not None and message.endswith("needs a value"):
            message += _one_of(found)
    elif (
        message.startswith("No such command")
        and "Did you mean" not in message
        and isinstance(command, TyperGroup)
        and ctx is not None
    ):
        message += f"; the commands are {', '.join(command.list_commands(ctx))}"
    message = re.sub(r"\. Did you mean (.*)\?$", r" (did you mean \1?)", message)
    message = re.sub(r"^Got unexpected extra argument(?:s|\(s\))? \((.*)\)$", r"unexpected extra argument: \1", message)
    return message[:1].lower() + message[1:]


def _param_name(param: Any) -> str:
    """``--batch`` for ``-b/--batch``; an argument's name in capitals (``SPEC``)."""
    if getattr(param, "param_type_name", "") == "argument":
        return str(param.name).upper()
    return str(max(param.opts, key=len))


def _param_by_option(command: Any, option: str) -> Any:
    params = getattr(command, "params", [])
    return next((p for p in params if option in (*p.opts, *p.secondary_opts)), None)


def _help_of(param: Any) -> str:
    text = getattr(param, "help", None)
    return f" ({text[:1].lower()}{text[1:].rstrip('.')})" if text else ""


def _choices(param: Any) -> list[str]:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(member.value) for member in annotation]
    return [str(choice) for choice in getattr(getattr(param, "type", None), "choices", None) or ()]


def _one_of(param: Any) -> str:
    choices = _choices(param)
    return f" (one of {', '.join(choices)})" if choices else ""


def _bound(param: Any, which: str) -> float | None:
    value = getattr(param, which, None)
    return value if value is not None else getattr(getattr(param, "type", None), which, None)


def _bad_value(exc: click_errors.UsageError, param: Any) -> str:
    """Why a value was refused: not one of the choices, not a (finite) number, outside the range."""
    cause: Any = exc.__cause__
    errors = cause.errors() if hasattr(cause, "errors") else []  # pydantic's, in typer >= 0.22
    raw = errors[0].get("input") if errors else None
    kind = errors[0].get("type", "") if errors else ""
    choices = _choices(param)
    if choices and raw is not None:
        return f"{raw!r} is not one of {', '.join(choices)}"
    if kind == "int_parsing":
        return f"{raw!r} is not a whole number"
    if kind == "float_parsing":
        return f"{raw!r} is not a number"
    low, high = _bound(param, "min"), _bound(param, "max")
    try:
        number = float(raw) if isinstance(raw, (str, int, float)) else None
    except ValueError:
        number = None
    if number is not None and not math.isfinite(number):
        return f"{raw} is not a finite number"
    span = f"the range is {_number(low)}-{_number(high)}" if low is not None and high is not None else ""
    if number is not None and low is not None and number < low:
        return f"{raw} is below {_number(low)} ({span or f'the least it takes is {_number(low)}'})"
    if number is not None and high is not None and number > high:
        return f"{raw} is above {_number(high)} ({span or f'the most it takes is {_number(high)}'})"
    message = str(getattr(exc, "message", exc))
    return " ".join(message.split()).removeprefix("Value error, ").rstrip(".")


def _number(value: float) -> str:
    """``2400``, ``1,000,000`` for a whole number (``:g`` writes ``1e+06``), ``0.5`` otherwise."""
    if not float(value).is_integer():
        return f"{value:g}"
    return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
