"""The ``densenet-spec`` command.

Results go to stdout, problems to stderr as one ``FILE:LINE:COL: field: message`` line each.
Exit status: 0 success, 1 an invalid spec or input file (never a traceback), 2 wrong usage.
Heavy imports (torch, onnx, graphviz) happen inside the commands that need them, so that
``validate`` and ``summary`` answer at once.
"""

from __future__ import annotations

import functools
import json
import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from . import __version__, api
from .backends import TARGETS, suffix_owner, views
from .backends import Target as BuildTarget
from .backends.mermaid import markdown_block
from .bench import BenchConfig
from .cli_parser import Command, check_version_alone, help_option_names, one_line_usage_errors, usage_error
from .compiler import compile_spec
from .errors import Problem, SpecError, ToolError, UsageError
from .ir import IR
from .loader import load_spec, preset_names, resolve_source
from .outputs import StdoutError, emit, folder_problem, guarded_stdout, protected_kind, same_file
from .schema import json_schema
from .summary import (
    HEADERS,
    format_count,
    format_dims,
    format_gmacs,
    format_macs,
    headers,
    optimized_note,
    presets_markdown,
    stage_rows,
    summary_json,
    summary_markdown,
)


class _Group(TyperGroup):
    """The command group, with stdout guarded for every command, ``--help`` and ``--version`` alike.

    A failed write to stdout (a full disk, stdout closed with ``>&-``) ends the command with one
    line on stderr and exit status 1 instead of a traceback or silently lost output; a reader that
    went away (``| head``) ends it quietly, with status 1, as click does.

    The parser's own usage errors (an unknown option, a value out of range, a missing ``--to``)
    are said as the tool's are: one ``error: ...`` line on stderr naming the option and what it
    takes, exit status 2 (see :mod:`.cli_parser`).
    """

    def get_help_option_names(self, ctx: Any) -> list[str]:
        return help_option_names(self)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with guarded_stdout():
                return super().main(*args, **kwargs)
        except StdoutError as exc:
            if not exc.broken_pipe:
                with suppress(OSError):  # stderr may be gone too: the exit status still says it
                    typer.echo(str(exc), err=True)
            raise SystemExit(1) from None

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with one_line_usage_errors(self):
            check_version_alone(args)
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with one_line_usage_errors(self):  # an unknown command
            return super().invoke(ctx)


app = typer.Typer(
    name="densenet-spec",
    cls=_Group,
    help="Define, check, build, export and draw DenseNet-family networks from YAML specs.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SpecArg = Annotated[str, typer.Argument(help="A spec file (YAML) or a preset name.", show_default=False)]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")]


class SummaryFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


Target = Enum("Target", [(name, name) for name in TARGETS], type=str)  # type: ignore[misc]


def _seed_in_range(seed: int | None) -> int | None:
    """``--seed``'s check for every command that takes it, as a usage error."""
    from .api import seed_problem

    problem = seed_problem(seed) if seed is not None else ""
    if problem:
        usage_error(f"--seed {problem}")
    return seed


SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", help="Seed of the initial weights when no --weights (default 0).", callback=_seed_in_range),
]


def _say_problems(problems: tuple[Problem, ...] | list[Problem]) -> None:
    for problem in problems:
        typer.echo(str(problem), err=True)


@contextmanager
def _reporting() -> Iterator[None]:
    """Turn the errors a user can fix into messages on stderr and exit status 1 (2: wrong usage)."""
    try:
        yield
    except SpecError as exc:
        _say_problems(exc.problems)
        raise typer.Exit(1) from None
    except StdoutError:
        raise  # the command group says it (or keeps a broken pipe quiet)
    except UsageError as exc:  # wrong usage found once the spec is read: said as every usage error
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ToolError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"{where}{exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


def _compile(spec: str, strict: bool) -> IR:
    ir = compile_spec(load_spec(spec), strict=strict)
    _say_problems(ir.warnings)
    return ir


def _console() -> Console:
    # markup off: a description or a file name with "[/b]" is text to print, not a (broken) style tag.
    # Piped or redirected, nothing wraps a line but the table's own width (summary --optimize's
    # extra columns wrapped every row at 120).
    width = max(120, shutil.get_terminal_size().columns) if sys.stdout.isatty() else PIPED_WIDTH
    return Console(soft_wrap=False, markup=False, width=width)


PIPED_WIDTH = 200


def _version(value: bool) -> None:
    if value:
        typer.echo(f"densenet-spec {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Define, check, build, export and draw DenseNet-family networks from YAML specs."""


@app.command(cls=Command)
def validate(
    specs: Annotated[list[str], typer.Argument(help="Spec files or preset names.", show_default=False)],
    strict: StrictOpt = False,
) -> None:
    """Check specs: schema, channel and spatial arithmetic. Prints one line per valid spec."""
    failed = False
    for spec in specs:
        try:
            with _reporting():
                ir = _compile(spec, strict)
                costs = f"{format_count(ir.params)} params, {format_macs(ir.macs)}"
                typer.echo(f"{spec}: ok ({ir.info.name}: {costs})")
        except typer.Exit:
            failed = True
    if failed:
        raise typer.Exit(1)


@app.command(cls=Command)
def summary(
    spec: SpecArg,
    format: Annotated[SummaryFormat, typer.Option("--format", "-f", help="Output format.")] = SummaryFormat.table,
    optimize: Annotated[
        bool,
        typer.Option(
            "--optimize",
            help="Apply the optimisation passes: the optimised network, with the unoptimized MACs and the share "
            "saved per stage, in every format.",
        ),
    ] = False,
    strict: StrictOpt = False,
) -> None:
    """Channels, output sizes, parameters and MACs per stage (as in the paper's Table 1)."""
    with _reporting():
        ir = _compile(spec, strict)
        optimized = _optimize(ir) if optimize else None
    if format is SummaryFormat.json:
        typer.echo(json.dumps(summary_json(optimized or ir, ir if optimized else None), indent=2))
    elif format is SummaryFormat.markdown:
        typer.echo(summary_markdown(optimized or ir, ir if optimized else None))
    else:
        _print_summary(optimized or ir, ir if optimized else None)


def _optimize(ir: IR) -> IR:
    return api.optimize(ir)[0]


def _short_macs(macs: int) -> str:
    """`` (2.834 G)`` after the full count, `` (0.389 M)`` for a small network, nothing for a tiny one."""
    short = format_macs(macs).removesuffix("MACs").rstrip()
    return f" ({short})" if short[-1] in "GM" else ""


def _print_summary(ir: IR, unoptimized: IR | None) -> None:
    """The summary table of ``ir``; with ``unoptimized`` (``summary --optimize``), ``ir`` is its
    optimised form and the plain network's MACs and the saving are added, as in every format."""
    title = f"{ir.info.name}: {ir.info.description}" if ir.info.description else ir.info.name
    table = Table(title=title, title_justify="left")
    for header in headers(unoptimized is not None):
        table.add_column(header, justify="left" if header in HEADERS[:4] else "right")
    for row in stage_rows(ir, unoptimized):
        table.add_row(*row, end_section=row[0] == "head")
    footer = (
        f"params {format_count(ir.params)}   MACs {format_count(ir.macs)}{_short_macs(ir.macs)}   "
        f"FLOPs {format_count(2 * ir.macs)} (2 x MACs)   "
        f"input {format_dims((ir.info.input_channels, *ir.info.input_size))}"
    )
    _print(table, footer, *([optimized_note(ir, unoptimized)] if unoptimized is not None else []))


def _print(*renderables: Any) -> None:
    """Print on stdout as the terminal's console would, every line without trailing whitespace
    (rich pads a table's title and caption to the table's width, in a pipe too)."""
    console = _console()
    with console.capture() as capture:
        for renderable in renderables:
            console.print(renderable, soft_wrap=isinstance(renderable, str))  # a line of text stays one line
    typer.echo("\n".join(_rstrip(line) for line in capture.get().splitlines()))


_TRAILING_BLANKS = re.compile(r"\s+((?:\x1b\[[0-9;]*m)*)$")
"""Blanks at the end of a line, before any terminal style codes that end it."""


def _rstrip(line: str) -> str:
    while True:
        stripped = _TRAILING_BLANKS.sub(r"\1", line)
        if stripped == line:
            return line
        line = stripped


@app.command(cls=Command)
def build(
    spec: SpecArg,
    to: Annotated[
        Target,
        typer.Option("--to", "-t", help="What to emit: " + "; ".join(f"{t.name}: {t.help}" for t in TARGETS.values())),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Output file; '-' for stdout. Default: ./<name>.<ext> (torch: a module name)."
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="A state_dict or checkpoint file (torchvision, timm or MONAI layout)."),
    ] = None,
    adapt: Annotated[
        bool | None,
        typer.Option(
            "--adapt",
            help="Fit the checkpoint's first conv to the spec's input channels and replace a classifier of "
            "another size (each change is reported).",
            show_default=False,
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="ONNX: export the backbone, one output per feature tap: 'all' or tap indices, e.g. 1,2,3 "
            "(0 is the stem).",
        ),
    ] = None,
    opset: Annotated[
        int | None, typer.Option("--opset", help="The ONNX opset (13 to the installed onnx's newest; default 17).")
    ] = None,
    seed: SeedOpt = None,
    optimize: Annotated[
        bool | None,
        typer.Option("--optimize", help="Apply the optimisation passes (BN folding, pool first).", show_default=False),
    ] = None,
    detail: Annotated[
        views.Detail | None, typer.Option("--detail", help="Diagrams: one node per block (default) or per layer.")
    ] = None,
    blocks: Annotated[
        str | None, typer.Option("--blocks", help="Diagrams at layer detail: only these blocks, e.g. 1,3.")
    ] = None,
    rankdir: Annotated[
        views.RankDir | None,
        typer.Option("--rankdir", help="Diagrams: layers and stages left to right (default) or top to bottom."),
    ] = (None),
    labels: Annotated[
        views.LabelStyle | None,
        typer.Option("--labels", help="Diagrams: short names (L3, T1; default) with a legend, module paths, or none."),
    ] = None,
    legend: Annotated[
        bool | None, typer.Option("--legend/--no-legend", help="Diagrams: draw the legend (default: yes).")
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Diagrams: the title; '' for none (default: name and what is shown).")
    ] = None,
    dpi: Annotated[
        float | None,
        typer.Option(
            "--dpi",
            min=views.DPI_RANGE[0],
            max=views.DPI_RANGE[1],
            help="Diagrams: resolution of png output (Graphviz's default 96).",
        ),
    ] = None,
    strict: StrictOpt = False,
) -> None:
    """Emit PyTorch source, an ONNX model, a diagram or the IR as JSON.

    Each target takes its own options: an option given to a target it does not apply to is a usage
    error that lists the options the target takes. --to mermaid with -o FILE.md (or .markdown)
    writes the chart inside a ```mermaid fenced block, which Markdown needs to draw it.
    """
    target = TARGETS[to.value]
    given: dict[str, Any] = {
        name: value
        for name, value in {
            "weights": weights,
            "adapt": adapt,
            "features": features,
            "opset": opset,
            "seed": seed,
            "optimize": optimize,
            "detail": detail.value if detail else None,
            "blocks": blocks,
            "rankdir": rankdir.value if rankdir else None,
            "labels": labels.value if labels else None,
            "legend": legend,
            "title": title,
            "dpi": dpi,
        }.items()
        if value is not None
    }
    wrong = sorted(set(given) - target.options)
    if wrong:
        options = ", ".join(f"--{name}" for name in wrong)
        if target.name == "torch" and wrong == ["weights"]:
            usage_error(f"--weights does not apply to --to torch: {_torch_weights_hint(spec, given)}")
        usage_error(f"{options} does not apply to --to {target.name}; it takes {target.describe_options()}")
    if given.get("adapt") and "weights" not in given:
        usage_error("--adapt fits a checkpoint to the spec: give it with --weights")
    if "blocks" in given and given.get("detail") != "layers":
        usage_error("--blocks selects blocks of the layer view: add --detail layers")
    missing = sorted(name for name in target.requires if name not in given)
    if missing:
        usage_error(f"--to {target.name} needs {', '.join('--' + m for m in missing)}")
    title_problem = views.title_problem(title, "--title")
    if title_problem:
        usage_error(title_problem)
    if "blocks" in given:
        _check_list_items("--blocks", given["blocks"], "block numbers")
    if "features" in given and given["features"].strip() != "all":
        _check_list_items("--features", given["features"], "'all' or tap indices")
    if "opset" in given:
        _check_opset(given["opset"])
    _check_not_an_input(output, spec)
    if "weights" in given:
        _check_not_the_input(output, given["weights"], "the checkpoint it reads")
    chosen_format = _format_of(output, target)
    if chosen_format:
        given["format"] = chosen_format
    if "dpi" in given and given.get("format", target.extension) in ("svg", "pdf"):
        usage_error(f"--dpi sets the resolution of png output; {given.get('format', target.extension)} is vector")
    with _reporting():
        ir = _compile(spec, strict)
        if "blocks" in given:
            given["blocks"] = _parse_blocks(given["blocks"], ir)
        if "features" in given:
            given["features"] = _parse_features(given["features"], ir)
        default = _default_output(ir, target.name, given)
        _check_output(output, example=default)
        data = api.emit(ir, target.name, given, on_report=lambda line: typer.echo(line, err=True))
        if output is None and target.name == "torch":
            _refuse_shadowing(default, str(data))
        elif output != "-" and target.name == "torch":
            _warn_shadowing(str(output), str(data))
        if target.name == "mermaid" and _is_markdown(output):
            data = markdown_block(str(data))
        where = emit(output or default, data)
    _say_written(where, data)


def _say_written(where: str, data: bytes | str, what: str = "") -> None:
    """``wrote X (N bytes)`` on stderr for a file (nothing for stdout); ``what`` says what it holds."""
    if where != "stdout":
        size = len(data.encode()) if isinstance(data, str) else len(data)
        typer.echo(f"wrote {where} ({what}{size:,} bytes)", err=True)


def _is_markdown(output: str | None) -> bool:
    """``-o x.md``: Markdown, where a Mermaid chart renders only inside a fenced ``mermaid`` block."""
    return bool(output) and output != "-" and Path(str(output)).suffix.lower() in (".md", ".markdown")


def _default_output(ir: IR, target: str, given: dict[str, Any]) -> str:
    """``./<name>.<ext>``, saying what differs from the plain build, so that two builds of one spec
    do not overwrite each other: ``--optimize`` (``densenet121_optimized.py``,
    ``densenet121.optimized.onnx``), ``--features`` (``densenet121.features.onnx``), diagrams' view
    and direction (``densenet121.layers.block3.tb.svg``).
    Python source gets an importable module name."""
    optimized = given.get("optimize", False)
    if target == "torch":
        from .backends.torch_source import module_name

        return f"{module_name(ir.info.name)}{'_optimized' if optimized else ''}.py"
    chosen = TARGETS[target]
    name = f"{ir.info.name}.optimized" if optimized else ir.info.name
    if given.get("features") is not None:  # the backbone's maps, not the classifier's logits
        name += ".features"
    if "detail" not in chosen.options:
        return f"{name}.{target}.{given['format']}" if chosen.formats else f"{name}.{chosen.extension}"
    detail = given.get("detail", "blocks")
    blocks = given.get("blocks")
    which = "" if not blocks else (".block" if len(blocks) == 1 else ".blocks") + "_".join(map(str, blocks))
    direction = ".tb" if given.get("rankdir") == "TB" else ""
    return f"{name}.{detail}{which}{direction}.{chosen.extension}"


def _check_opset(opset: int) -> None:
    """``--opset`` outside what the installed onnx writes is wrong usage; the range is read from onnx."""
    from .backends.onnx import check_opset

    try:
        check_opset(opset)
    except ValueError as exc:
        usage_error(f"--opset: {exc}")


def _check_output(output: str | None, example: str = "") -> None:
    """``-o``'s own usage errors: an empty name (it meant the default name), or a folder's (a trailing
    slash, which ``Path`` drops: ``-o out/`` wrote a file named ``out``); ``example`` names a file for the advice."""
    if output == "":
        usage_error("-o '': an empty file name; give a file name, or '-' for stdout")
    problem = folder_problem(output or "-", example)
    if problem:
        usage_error(problem)


def _check_not_the_input(output: str | None, source: str | os.PathLike[str], what: str) -> None:
    """``-o`` must not name a file the command reads: writing would destroy it (``-o ckpt.pt``)."""
    if output and output != "-" and same_file(output, source):
        usage_error(f"-o {output}: that is {what}, which this command would overwrite; choose another name")


def _spec_file(spec: str) -> str | Path:
    """The file that ``spec`` reads (a preset's name: the preset's file, not a file of that name
    here), or ``spec`` itself where it names none."""
    try:
        return resolve_source(spec)
    except SpecError:
        return spec


def _torch_weights_hint(spec: str, given: Mapping[str, Any]) -> str:
    """Where weights go for PyTorch source, which holds none: the optimised source's are folded."""
    if not given.get("optimize"):
        return "the source holds no weights; load yours into its build() with load_state_dict"
    call = f"densenet_spec.optimize({spec!r}, {str(given['weights'])!r})"
    return (
        "the source holds no weights; its folded ones (any checkpoint layout) are the state_dict in "
        f"`_, state = {call}`: build().load_state_dict(state)"
    )


def _check_not_an_input(output: str | None, spec: str | None, command: str = "build") -> None:
    """``build`` and ``schema`` never write over a spec (not the one read, nor any ``.yaml``/``.yml``
    file: ``--to torch -o net.yaml`` replaced a spec with Python source) or a checkpoint."""
    if not output or output == "-":
        return
    kind = protected_kind(output, [_spec_file(spec)] if spec is not None else [])
    if kind:
        kind = "a spec file" if kind == "a file it reads" else kind
        usage_error(f"-o {output}: that names {kind}, which {command} does not write; choose another name")


def _format_of(output: str | None, target: BuildTarget) -> str | None:
    """The format ``target`` writes to ``output``, and a check that the suffix does not promise another.

    A target of several formats (the heat map) writes the one its suffix names (default: the first).
    A target of one format refuses a suffix that another target writes (``--to svg -o x.png``
    wrote SVG into x.png); a suffix no target writes (``.gv``, ``.txt``) is the user's choice.
    """
    suffix = Path(output).suffix.lstrip(".").lower() if output and output != "-" else ""
    if target.formats:
        if suffix and suffix not in target.formats:
            usage_error(f"-o {output}: the suffix must be one of {', '.join('.' + f for f in target.formats)}")
        return suffix or target.formats[0]
    owner = suffix_owner(suffix)
    if output and owner and suffix != target.extension:
        renamed = Path(output).with_suffix(f".{target.extension}").name
        usage_error(
            f"-o {output}: --to {target.name} writes {target.help}, not a .{suffix} file; "
            f"use --to {owner} for that, or name the file {renamed}"
        )
    return None


def _refuse_shadowing(filename: str, source: str) -> None:
    """Refuse a default ``<module>.py`` that Python cannot use (see :func:`_shadowing_problem`)."""
    problem = _shadowing_problem(filename, source)
    if problem:
        module = Path(filename).stem
        usage_error(f"the default output {filename} {problem}; name the file with -o, e.g. -o {module}_net.py")


def _warn_shadowing(output: str, source: str) -> None:
    """With ``-o`` the name is the user's choice: written, with a warning when Python cannot use it."""
    problem = _shadowing_problem(output, source)
    if problem:
        module = Path(output).stem
        typer.echo(
            f"warning: -o {output} {problem}; written as asked (a name such as {module}_net.py avoids it)", err=True
        )


def _shadowing_problem(filename: str, source: str) -> str:
    """Why Python cannot use ``filename``, the generated ``source``, or ``""``.

    Named as a module it imports (a spec named ``torch`` gives ``torch.py``; ``typing`` and
    ``collections`` too), the file is what ``import torch`` finds first in its folder: ``python
    torch.py`` fails with a circular import, and so does every script beside it that imports torch.
    A keyword (``class.py``) cannot be imported at all.
    """
    module = Path(filename).stem
    if not module.isidentifier():  # a.torch.py, my-net.py: no import finds them, nothing is shadowed
        return ""
    if module in _imported_modules(source):
        return (
            f"would shadow the {module} module it imports (python {filename} "
            f"would fail, as would `import {module}` beside it)"
        )
    # torch imports much of the standard library and numpy when it starts: json.py, copy.py or
    # numpy.py beside the file fail the same way (a circular import, or a crash).
    if module in sys.stdlib_module_names:
        return (
            f"would shadow the {module} module of Python's standard library, which "
            f"torch and Python itself may import (python {filename} could fail)"
        )
    if module == "numpy":
        return f"would shadow numpy, which torch imports when it starts (python {filename} could fail)"
    if keyword.iskeyword(module):
        return f"cannot be imported ({module} is a Python keyword)"
    if _installed_module(module, Path(filename)) or module in _torch_lookups():
        return (
            f"would shadow {module}, a module that is installed or that torch "
            f"looks for when it starts (python {filename} could fail with a circular import)"
        )
    return ""


_RECORD_TORCH_LOOKUPS = """
import sys
class Recorder:
    names = set()
    def find_spec(self, name, path=None, target=None):
        if path is None:
            self.names.add(name)
sys.meta_path.insert(0, Recorder())
import torch
print(" ".join(sorted(Recorder.names)))
"""


@functools.cache
def _torch_lookups() -> frozenset[str]:
    """The top-level modules that importing torch looks up in a new Python, found or not: torch
    tries optional ones (tqdm, pydot, opt_einsum) and the standard library's pickle tries ``org``;
    a file of that name answers the lookup. Recorded by a meta path finder that finds nothing, in
    an empty folder (nothing there to find), once per process: about a second."""
    with tempfile.TemporaryDirectory() as empty:
        run = subprocess.run(
            [sys.executable, "-c", _RECORD_TORCH_LOOKUPS], cwd=empty, capture_output=True, text=True, timeout=300
        )
    return frozenset(run.stdout.split()) if run.returncode == 0 else frozenset()


def _installed_module(module: str, filename: Path) -> bool:
    """Whether ``module`` is loaded in this process (torch's own imports: typing_extensions, sympy,
    torchgen ...) or installed where Python looks for modules, other than the output's own folder
    and the current one (a rebuild must not find its previous output)."""
    if any(name.partition(".")[0] == module for name in list(sys.modules)):
        return True
    from importlib.machinery import PathFinder

    here = {Path.cwd().resolve(), filename.resolve().parent}
    paths = [p for p in sys.path if p and Path(p).resolve() not in here]
    return PathFinder.find_spec(module, paths) is not None


def _imported_modules(source: str) -> set[str]:
    """The top-level modules ``source`` imports (``torch``, ``typing``, ``collections``): a file of
    that name beside it is what its own imports find first."""
    import ast

    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _check_list_items(option: str, text: str, what: str) -> None:
    """A list option's items separated by commas, none empty (``1,,2``, ``1,``, ``""``): one
    rule for ``--blocks`` and ``--features``, checked before the spec is read."""
    parts = text.split(",")
    if any(not part.strip() for part in parts):
        usage_error(f"{option}: an empty item in {text!r}; expected {what} separated by commas, e.g. 1,3")


def _parse_blocks(text: str, ir: IR) -> list[int]:
    count = len(ir.blocks())
    try:
        given = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        given = []
    if not given or not all(1 <= b <= count for b in given):
        usage_error(f"--blocks: expected block numbers 1..{count} separated by commas, got {text!r}")
    if len(set(given)) != len(given):  # as --features 1,1
        usage_error(f"--blocks: {text} names a block twice")
    return sorted(given)


def _parse_features(text: str, ir: IR) -> tuple[int, ...]:
    """``all`` or tap indices separated by commas, each within the network's taps."""
    from .backends.taps import describe, feature_taps

    taps = feature_taps(ir)
    if text.strip() == "all":
        return tuple(range(len(taps)))
    try:
        given = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        given = []
    if not given or not all(0 <= i < len(taps) for i in given):
        usage_error(f"--features: expected 'all' or tap indices among {describe(taps)}; got {text!r}")
    if len(set(given)) != len(given):  # as out_indices in Python
        usage_error(f"--features: {text} names a tap twice")
    return tuple(sorted(given))


@app.command(cls=Command)
def infer(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint (.pt, .pth, .safetensors) of a DenseNet.", show_default=False)
    ],
    output: Annotated[str, typer.Option("--output", "-o", help="The spec file to write; '-' for stdout.")] = "-",
    name: Annotated[
        str | None, typer.Option("--name", help="The spec's name (default: the checkpoint's file name).")
    ] = None,
) -> None:
    """Write the spec of a checkpoint's network (torchvision, timm or MONAI layout).

    What the weights cannot tell (activation, dropout, input size, ...) is left at its default and
    listed in a comment at the top. The checkpoint then loads into the spec with --weights.
    """
    from .infer import infer as infer_from
    from .infer import to_yaml
    from .weights import read_state

    if name is not None:
        _check_name(name)
    _check_output(output, example=f"{_spec_name(checkpoint)}.yaml")
    _check_not_the_input(output, checkpoint, "the checkpoint it reads")
    _check_spec_suffix(output)
    with _reporting():
        state = read_state(checkpoint)
        inference = infer_from(state, name=name or _spec_name(checkpoint), file=str(checkpoint))
        text = to_yaml(inference, checkpoint.name)
        where = emit(output, text)
    _say_written(where, text, f"spec {inference.spec.name!r} of {checkpoint.name}, ")


def _check_spec_suffix(output: str) -> None:
    """``infer`` writes YAML: not into a file whose suffix says a build output (``-o x.onnx``)."""
    suffix = Path(output).suffix.lstrip(".").lower() if output != "-" else ""
    written = {f for t in TARGETS.values() for f in (t.extension, *t.formats)} | {"pt", "pth", "safetensors"}
    if suffix in written:
        stem = Path(output).with_suffix("")
        renamed = stem.name if stem.suffix.lower() in (".yaml", ".yml") else stem.with_suffix(".yaml").name
        usage_error(f"-o {output}: infer writes a spec (YAML), not a .{suffix} file; name it {renamed}")


def _spec_name(path: Path) -> str:
    """A valid spec name from a file name (see :func:`~densenet_spec.infer.clean_name`)."""
    from .infer import clean_name

    return clean_name(path.stem)


def _check_name(name: str) -> None:
    """``infer --name`` must be a valid spec name: said as a usage error naming the option, not as
    pydantic's validation error about the inferred spec."""
    from .infer import name_problem

    problem = name_problem(name)
    if problem:
        usage_error(f"--name {problem}")


@app.command(cls=Command)
def schema(
    output: Annotated[str, typer.Option("--output", "-o", help="Output file; '-' for stdout.")] = "-",
) -> None:
    """The JSON Schema of the spec format (for editors: yaml-language-server, VS Code)."""
    _check_output(output, example="densenet-spec.schema.json")
    _check_not_an_input(output, None, "schema")
    text = json.dumps(json_schema(), indent=2) + "\n"
    with _reporting():
        where = emit(output, text)
    _say_written(where, text)


@app.command(cls=Command)
def presets(
    format: Annotated[SummaryFormat, typer.Option("--format", "-f", help="Output format.")] = SummaryFormat.table,
) -> None:
    """The shipped specs, with their parameters and MACs."""
    rows = []
    for name in preset_names():
        ir = compile_spec(load_spec(name))
        rows.append((name, ir))
    if format is SummaryFormat.json:
        typer.echo(json.dumps([{**summary_json(ir), "stages": None} for _, ir in rows], indent=2))
        return
    if format is SummaryFormat.markdown:
        typer.echo(presets_markdown([ir for _, ir in rows]))
        return
    table = Table(title="densenet-spec presets", title_justify="left")
    for header in ("preset", "input", "params", "GMACs", "description"):
        table.add_column(header, justify="right" if header in ("params", "GMACs") else "left")
    for name, ir in rows:
        table.add_row(
            name, format_dims(ir.info.input_size), format_count(ir.params), format_gmacs(ir.macs), ir.info.description
        )
    _print(table)


BATCH_MAX = 1_000_000
"""The largest ``--batch``: beyond it not even a 1-D spec's input tensor fits a machine."""


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class BenchMode(str, Enum):
    eval = "eval"
    train = "train"


class TableOrJson(str, Enum):
    table = "table"
    json = "json"


@app.command(cls=Command)
def bench(
    spec: SpecArg,
    batch: Annotated[int, typer.Option("--batch", "-b", min=1, max=BATCH_MAX, help="Images per step.")] = 8,
    device: Annotated[Device, typer.Option("--device", help="Where to run.")] = Device.cpu,
    mode: Annotated[BenchMode, typer.Option("--mode", help="eval: forward only; train: an SGD step.")] = (
        BenchMode.eval
    ),
    optimize: Annotated[
        bool, typer.Option("--optimize", help="eval: optimize_for_inference / optimised ONNX.")
    ] = False,
    memory_efficient: Annotated[bool, typer.Option("--memory-efficient", help="Recompute concat-BN-ReLU.")] = False,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels_last model and input.")] = False,
    amp: Annotated[bool, typer.Option("--amp", help="bfloat16 autocast.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model (slow to start).")] = False,
    onnxruntime: Annotated[bool, typer.Option("--onnxruntime", help="Run the ONNX export in onnxruntime.")] = False,
    compare: Annotated[
        bool, typer.Option("--compare", help="Also run the plain configuration, alternately, and print the ratio.")
    ] = False,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs first.")] = 2,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Timed runs.")] = 10,
    format: Annotated[TableOrJson, typer.Option("--format", "-f", help="Output format.")] = TableOrJson.table,
    strict: StrictOpt = False,
) -> None:
    """Time a spec: median and spread, images/s, peak memory, and the floor from its MACs."""
    from .bench import BenchResult, run_compare, run_here, run_isolated

    config = BenchConfig(
        spec,
        batch,
        device.value,
        mode.value,
        optimize,
        memory_efficient,
        channels_last,
        amp,
        compile,
        onnxruntime,
        warmup,
        repeat,
    )
    _refuse_bench_usage(_bench_usage_problem(config, compare))
    with _reporting():
        ir = _compile(spec, strict)
    if channels_last and ir.rank != 2:
        _refuse_bench_usage(f"--channels-last applies to 2-D networks; {spec} is {ir.rank}-D")
    if device is Device.cuda:
        _require_cuda()
    with _progress(config.label()) as advance:
        try:
            if compare:
                results: list[BenchResult] = list(run_compare(config, config.baseline(), advance))
            elif device is Device.cpu:
                results = [run_isolated(config, advance)]
            else:
                results = [run_here(config, advance)]
        except (RuntimeError, ValueError) as exc:
            typer.echo(f"bench: {_bench_failure(str(exc), config.batch)}", err=True)
            raise typer.Exit(1) from None
    if format is TableOrJson.json:
        data = [r.to_json() for r in results]
        payload: object = (
            data[0] if len(data) == 1 else {"results": data, "ratio": results[1].median / results[0].median}
        )
        typer.echo(json.dumps(payload, indent=2))
        return
    _print_bench(results)


def _require_cuda() -> None:
    """``--device cuda`` without a CUDA device: a usage error (exit 2; exit 1 is for invalid spec
    and input files), one line that says why and what to use instead."""
    import torch

    if torch.cuda.is_available():
        return
    if torch.version.cuda is None:
        why = f"this torch ({torch.__version__}) is built without CUDA"
    else:
        why = (
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU (see nvidia-smi, CUDA_VISIBLE_DEVICES)"
        )
    usage_error(f"--device cuda: no CUDA device here: {why}; use --device cpu")


def _bench_usage_problem(config: BenchConfig, compare: bool) -> str:
    """What makes ``config`` run something other than what was asked, if anything (exit 2)."""
    torch_only = {
        "compile": config.compile,
        "memory-efficient": config.memory_efficient,
        "amp": config.amp,
        "channels-last": config.channels_last,
    }
    named = [f"--{name}" for name, on in torch_only.items() if on]
    given = ", ".join(named)
    verb, them = ("sets", "it") if len(named) == 1 else ("set", "them")
    rules = (
        (
            config.optimize and config.mode == "train",
            "--optimize is eval-only (it folds batch norms for inference); drop it or use --mode eval",
        ),
        (
            config.onnxruntime and (config.mode != "eval" or config.device != "cpu"),
            "--onnxruntime runs inference on the CPU only: use --mode eval --device cpu",
        ),
        (
            config.onnxruntime and bool(given),
            f"{given} {verb} up the PyTorch model, not --onnxruntime's; drop {them}",
        ),
        (
            config.memory_efficient and config.mode == "eval",
            "--memory-efficient changes training only (what the backward pass keeps); use --mode train",
        ),
        (
            compare and config == config.baseline(),
            "--compare runs the plain configuration beside this one: add what to compare "
            "(--optimize, --memory-efficient, --channels-last, --amp, --compile, --onnxruntime)",
        ),
    )
    return next((message for broken, message in rules if broken), "")


def _bench_failure(text: str, batch: int) -> str:
    """One line for a failed benchmark: a child's error arrives as its traceback, whose last
    ``...Error:`` line says it (torch's own messages go on over lines of C++ frames); memory that
    cannot be had is said in the tool's words."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception): ", line)]
    said = re.sub(r"^[\w.]*(Error|Exception): ", "", errors[-1] if errors else (lines or ["failed"])[0])
    if re.search(r"can't allocate memory|out of memory|Overflow when unpacking", said, re.I):
        return f"not enough memory for a batch of {batch:,} on this machine: use a smaller --batch"
    return said


def _refuse_bench_usage(problem: str) -> None:
    if problem:
        usage_error(problem)


BENCH_CAPTION = (
    "floor (MACs): the time this network's multiply-accumulates take at this machine's measured rate on a "
    "3x3 convolution of the network's rank (training: 3x, the best of several measurements), and that time as a "
    "share of the median, i.e. how close the run comes to the ideal (> median: the network's convolutions ran "
    "faster than the measured one); "
    "setup: seconds spent building the model; compile (with --compile): the first run, where torch.compile traces "
    "and generates code; neither is included in the times, which are the steady state."
)
"""Printed under the bench table: the two columns whose meaning a reader cannot guess."""


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr while the runs go, on a terminal only: elsewhere (a file, a pipe,
    ``-f json`` read by a program) it would leave only an empty line behind."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"bench {label}", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield advance


def _print_bench(results: list[Any]) -> None:
    table = Table(
        title=f"bench {results[0].config.spec}", title_justify="left", caption=BENCH_CAPTION, caption_justify="left"
    )
    compiled = any(r.compile_s is not None for r in results)
    headers = ["configuration", "median", "spread", "images/s", "peak memory", "floor (MACs)", "setup"]
    for header in headers + ["compile"] * compiled:
        table.add_column(header, justify="left" if header == "configuration" else "right")
    for r in results:
        memory = f"{r.peak_memory / 2**20:,.0f} MiB" if r.peak_memory else "-"
        floor = _floor_text(r.floor_s, r.median)
        row = [
            r.config.label(),
            f"{r.median * 1e3:.1f} ms",
            f"+-{r.spread:.0%}",
            f"{r.images_per_s:.1f}",
            memory,
            floor,
            f"{r.setup_s:.1f} s",
        ]
        if compiled:
            row.append("-" if r.compile_s is None else f"{r.compile_s:.1f} s")
        table.add_row(*row)
    lines: list[Any] = [table]
    if len(results) == 2:
        speedup = results[1].median / results[0].median
        lines.append(f"{results[0].config.label()} runs {speedup:.2f}x as fast as {results[1].config.label()}")
    _print(*lines)


def _floor_text(floor_s: float | None, median: float) -> str:
    """The floor and its share of the median; a floor above the median (the network's convolutions
    ran faster than the one the rate was measured on) is shown without a share, which would be over 100%."""
    if not floor_s:
        return "-"
    if floor_s > median:
        return f"{floor_s * 1e3:.1f} ms (> median)"
    return f"{floor_s * 1e3:.1f} ms ({floor_s / median:.0%})"


def run() -> None:
    """Console-script entry point."""
    app()
