#!/usr/bin/env python
"""Long fuzz runs: generated specs through the API and every CLI command; counts and reproducers.

Each case is a spec text from the generator in ``tests/fuzz_test.py`` (mutations of small valid
specs: YAML traps, wrong types and ranges, structure, ``extends``), seeded by ``--seed`` and its
number so that any case can be rebuilt alone (``--only N``). Every case runs:

- ``api``: ``load_spec`` + ``compile_spec`` in process;
- the CLI in process (typer's CliRunner, the same app the console script runs): ``validate``,
  ``summary --format table|json|markdown``, ``build --to torch|onnx|dot|json|svg``;
- every ``--subprocess-every``-th case, one command as a real ``python -m densenet_spec``
  process, to cover the entry point, exit statuses and stderr as a shell sees them.

A result is ``ok`` (exit 0), ``refused`` (exit 1, the first stderr line names a file, no traceback,
no output file or temporary file left behind), ``traceback`` (anything else: an escaped exception,
another exit status, a malformed message, a leftover file) or ``hang`` (no answer in 60 s); ``slow``
counts results over 2 s (in-process runs only: a subprocess pays for the interpreter and torch).
Failures are saved under ``--out`` as folders holding the spec files, the command and its output.

    python scripts/fuzz.py --n 20000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from densenet_spec.backends.onnx import MAX_WEIGHT_BYTES  # noqa: E402
from tests.fuzz_test import CASE_SECONDS, Case, RandomChooser, alarm, check_problem, generate  # noqa: E402

HANG_SECONDS = 60
# build --to onnx materialises the weights. Specs past protobuf's 2 GiB are refused up front (and run
# here: they must be refused fast). A valid build takes time in proportion to its weights (a
# 72M-parameter network writes 288 MB of ONNX in ~3 s): that is its size, not a hang, so between
# this many parameters (80 MB of weights, ~1 s) and that limit the build is skipped and counted.
MAX_BUILD_PARAMS = 20_000_000
OUTCOMES = ("ok", "refused", "traceback", "hang", "skipped")
SVG = shutil.which("dot") is not None
COMMANDS: dict[str, list[str]] = {
    "validate": ["validate", "{spec}"],
    "summary-table": ["summary", "{spec}", "--format", "table"],
    "summary-json": ["summary", "{spec}", "--format", "json"],
    "summary-markdown": ["summary", "{spec}", "--format", "markdown"],
    "build-torch": ["build", "{spec}", "--to", "torch", "-o", "{out}/model.py"],
    "build-onnx": ["build", "{spec}", "--to", "onnx", "-o", "{out}/model.onnx"],
    "build-dot": ["build", "{spec}", "--to", "dot", "-o", "{out}/model.dot"],
    "build-json": ["build", "{spec}", "--to", "json", "-o", "{out}/model.json"],
    **({"build-svg": ["build", "{spec}", "--to", "svg", "-o", "{out}/model.svg"]} if SVG else {}),
}
# The first line of a refusal: FILE[:LINE:COL]: message (FILE may hold spaces, never a newline).
REFUSAL = re.compile(r"^\S[^\n]*?(:\d+:\d+)?: \S")


@dataclass
class Result:
    command: str
    outcome: str
    seconds: float
    detail: str = ""


def _api(spec: Path) -> Result:
    from densenet_spec import SpecError, compile_spec, load_spec

    start = time.perf_counter()
    try:
        with alarm(HANG_SECONDS):
            params = compile_spec(load_spec(spec)).params
        outcome, detail = "ok", f"params {params}"
    except SpecError as exc:
        try:
            check_problem(exc)
            outcome, detail = "refused", str(exc.problems[0])
        except AssertionError as bad:
            outcome, detail = "traceback", f"malformed SpecError: {bad}"
    except TimeoutError as exc:
        outcome, detail = "hang", str(exc)
    except BaseException:
        outcome, detail = "traceback", traceback.format_exc()
    return Result("api", outcome, time.perf_counter() - start, detail)


def _judge(code: int, stderr: str, crashed: str, out: Path, command: str) -> tuple[str, str]:
    """The outcome of one CLI run from its exit status, stderr and what it left in ``out``."""
    leftovers = sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))
    if crashed or "Traceback" in stderr:
        return "traceback", crashed or stderr
    if leftovers:
        return "traceback", f"temporary files left behind: {leftovers}"
    if code == 0:
        return "ok", ""
    first = stderr.splitlines()[0] if stderr.strip() else ""
    written = [p.name for p in out.iterdir()]
    if code == 1 and REFUSAL.match(first) and not (command.startswith("build") and written):
        return "refused", first
    return "traceback", f"exit {code}; files {written}; stderr:\n{stderr}"


def _cli(command: str, spec: Path, out: Path) -> Result:
    from typer.testing import CliRunner

    from densenet_spec.cli import app

    args = [a.format(spec=spec, out=out) for a in COMMANDS[command]]
    start = time.perf_counter()
    try:
        with alarm(HANG_SECONDS):
            result = CliRunner().invoke(app, args)
    except TimeoutError as exc:
        return Result(command, "hang", time.perf_counter() - start, str(exc))
    seconds = time.perf_counter() - start
    crashed = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crashed = "".join(traceback.format_exception(result.exception))
    outcome, detail = _judge(result.exit_code, result.stderr, crashed, out, command)
    return Result(command, outcome, seconds, detail)


def _subprocess(command: str, spec: Path, out: Path) -> Result:
    args = [a.format(spec=spec, out=out) for a in COMMANDS[command]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "densenet_spec", *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=HANG_SECONDS,
            env=env,
            cwd=out,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Result(f"subprocess:{command}", "hang", HANG_SECONDS, "timed out")
    outcome, detail = _judge(done.returncode, done.stderr, "", out, command)
    return Result(f"subprocess:{command}", outcome, time.perf_counter() - start, detail)


def _clean(out: Path) -> None:
    for path in out.iterdir():
        path.unlink()


def run_one(seed: int, number: int, subprocess_every: int, save: str) -> list[Result]:
    """All checks of case ``number``; failures saved under ``save``."""
    rng = random.Random(seed * 1_000_003 + number)
    case = generate(RandomChooser(rng), long_lists=True)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        spec = case.write(Path(folder))
        out = Path(folder) / "out"
        out.mkdir()
        api = _api(spec)
        results.append(api)
        params = int(api.detail.split()[-1]) if api.outcome == "ok" else 0
        huge = params > MAX_BUILD_PARAMS and 4 * params <= MAX_WEIGHT_BYTES
        for command in COMMANDS:
            if huge and command == "build-onnx":
                results.append(Result(command, "skipped", 0.0, api.detail))
                continue
            results.append(_cli(command, spec, out))
            _clean(out)
        if subprocess_every and number % subprocess_every == 0:
            results.append(_subprocess(rng.choice(list(COMMANDS)), spec, out))
    for result in results:
        if result.outcome in ("traceback", "hang") or (
            result.seconds > CASE_SECONDS and not result.command.startswith("subprocess")
        ):
            _save(Path(save), seed, number, case, result)
    return results


def _save(folder: Path, seed: int, number: int, case: Case, result: Result) -> None:
    target = folder / f"seed{seed}-case{number}-{result.command.replace(':', '-')}"
    target.mkdir(parents=True, exist_ok=True)
    case.write(target)
    command = " ".join(COMMANDS.get(result.command.split(":")[-1], ["(api: load_spec + compile_spec)", "{spec}"]))
    (target / "command.txt").write_text(
        f"densenet-spec {command.format(spec='spec.yaml', out='.')}\n"
        f"# rebuild: python scripts/fuzz.py --seed {seed} --only {number}\n"
        f"# outcome: {result.outcome} in {result.seconds:.2f} s\n"
    )
    (target / "output.txt").write_text(result.detail, errors="replace")


def _chunk(args: tuple[int, list[int], int, str]) -> list[Result]:
    seed, numbers, every, save = args
    return [r for n in numbers for r in run_one(seed, n, every, save)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="cases to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=int, help="run this one case number (to reproduce a failure)")
    parser.add_argument("--workers", type=int, default=1, help="processes (each runs its share of the cases)")
    parser.add_argument("--subprocess-every", type=int, default=50, help="a real subprocess every N cases; 0: none")
    parser.add_argument("--out", default="fuzz-failures", help="folder for the reproducers of failures")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args()
    numbers = [args.only] if args.only is not None else list(range(args.n))
    start = time.perf_counter()
    chunks = [(args.seed, numbers[i :: args.workers], args.subprocess_every, args.out) for i in range(args.workers)]
    if args.workers == 1:
        results = _chunk(chunks[0])
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            results = [r for part in pool.map(_chunk, chunks) for r in part]
    return _report(results, len(numbers), time.perf_counter() - start, args)


def _report(results: list[Result], cases: int, seconds: float, args: argparse.Namespace) -> int:
    counts: dict[str, Counter[str]] = {}
    for r in results:
        family = "subprocess" if r.command.startswith("subprocess") else r.command
        counts.setdefault(family, Counter())[r.outcome] += 1
        if r.seconds > CASE_SECONDS and family != "subprocess":
            counts[family]["slow"] += 1
    slowest = max((r for r in results if not r.command.startswith("subprocess")), key=lambda r: r.seconds)
    total = sum((c for c in counts.values()), Counter())
    if args.json:
        print(json.dumps({"cases": cases, "seconds": round(seconds, 1), "counts": counts, "total": total}, indent=1))
    else:
        print(f"{cases} cases, seed {args.seed}, {seconds:.0f} s; slowest {slowest.command} {slowest.seconds:.2f} s")
        print(f"{'command':<18}" + "".join(f"{o:>11}" for o in (*OUTCOMES, "slow")))
        for family, c in [*counts.items(), ("total", total)]:
            print(f"{family:<18}" + "".join(f"{c[o]:>11,}" for o in (*OUTCOMES, "slow")))
    failed = total["traceback"] + total["hang"] + total["slow"]
    if failed:
        print(f"{failed} failures; reproducers in {args.out}/", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
