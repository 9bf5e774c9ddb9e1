"""Mutation testing of the modules where a silent bug costs most, each against the tests that cover it.

Cosmic Ray (`cosmic-ray`, a dev extra) makes one small change at a time to a module (an operator swapped, a
comparison flipped, a number shifted, a condition negated, ...) and runs that module's tests; a mutant the
tests do not notice ("survived") marks a behaviour no test pins down. Slow by nature (one pytest process per
mutant), so it is not part of CI: `make mutants`, or

    .venv/bin/python bench/mutants.py                                  # every module in MODULES
    .venv/bin/python bench/mutants.py training/models/transformer.py --sample 80   # one module, 80 mutants at random
    .venv/bin/python bench/mutants.py --list                           # modules and their tests
    .venv/bin/python bench/mutants.py training/models/transformer.py \
        --retest DIR/training_models_transformer.sqlite             # survivors again

Safe while people work in the checkout: nothing in it is written. The tracked and untracked (not ignored)
files are copied into a temporary directory (with `../shared` linked next to it, as CI lays it out), and
mutants are written into, tested in and restored in that copy, with PYTHONPATH pointing at it so that
subprocesses (the `mathforge` console script, torchrun) import the mutated copy too; the copy is removed at
the end (`--keep` keeps it). Run it niced on a shared machine: `nice -n 10 ...`.

Which mutants run (`--operators`):
- `natural` (default): every Cosmic Ray operator, but binary and comparison operators only to their natural
  counterparts (+ ↔ -, * ↔ /, / ↔ //, % → //, ** → *, shifts and bit operators among themselves; < ↔ <=,
  > ↔ >=, each comparison to its negation, == ↔ !=, is ↔ is not) and unary operators only to a sign flip or
  removal. The other replacements (`a + b` → `a >> b`, ...) are killed by any test that runs the line and
  would multiply the run time by ten.
- `all`: every mutant Cosmic Ray generates.
In both, mutants inside type annotations (strings under `from __future__ import annotations`, so always
equivalent) and inside logging calls are left out. `--sample N` then draws N of the remaining mutants per
module (seeded by `--seed`), to bound a run.

Per module it prints the mutants generated, selected, killed, survived, timed out and incompetent (the
mutated module failed to import), then every survivor with file:line and its diff. `--json FILE` writes it
all; the Cosmic Ray session databases stay in `--workdir` (`cr-report SESSION.sqlite` reads them).
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import difflib
import glob
import hashlib
import json
import multiprocessing
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The reference tests without the float64 gradchecks (2 of the 2.5 minutes: backward-only mutants that
# survive need a run with them), then the Triton kernels under the interpreter (the autograd wrappers).
_KERNEL_TESTS = (
    "tests/kernels/test_references.py",
    "tests/kernels/test_triton_interpreter.py",
    "-knot gradcheck and not forcing_triton",
)

# Module → the test files (globs, or pytest node ids) that cover it, fastest and most pointed first: the run
# stops at the first failure (-x), so a killed mutant costs little when a quick test kills it.
MODULES: dict[str, tuple[str, ...]] = {
    "crawl/warc.py": ("tests/corpus/test_warc_reader.py", "tests/corpus/test_warc*.py"),
    "crawl/charset.py": ("tests/corpus/test_charset*.py",),
    "crawl/math_markup.py": ("tests/test_math_markup*.py", "tests/test_math_extract.py"),
    "jobs/dedup.py": ("tests/corpus/test_dedup*.py",),
    "training/models/transformer.py": (
        "tests/training/models/test_mtp_loss.py",
        "tests/training/models/test_transformer.py",
        "tests/training/models/test_generation.py",
        "tests/training/models/test_fused_training.py::test_fused_gradients_and_logprobs_match_plain_pytorch",
    ),
    "training/trainer.py": (
        "tests/training/test_optim_groups.py",
        "tests/training/objectives/test_pretrain.py::test_resume_reproduces_an_uninterrupted_run_bit_for_bit",
        "tests/training/objectives/test_pretrain.py::test_gradient_accumulation_sees_the_same_rows_as_one_big_batch",
        "tests/training/objectives/test_pretrain.py::test_an_existing_run_is_not_overwritten_without_resume",
    ),
    "kernels/backend.py": _KERNEL_TESTS,
    "kernels/chunked.py": _KERNEL_TESTS,
    "kernels/cross_entropy.py": _KERNEL_TESTS,
    "kernels/logprobs.py": _KERNEL_TESTS,
    "kernels/rms_norm.py": _KERNEL_TESTS,
    "kernels/ce_rows.py": _KERNEL_TESTS,
    "kernels/triton_ops.py": ("tests/kernels/test_triton_interpreter.py",),
}

NATURAL_BINARY = {
    ("Add", "Sub"),
    ("Sub", "Add"),
    ("Mul", "Div"),
    ("Div", "Mul"),
    ("Div", "FloorDiv"),
    ("FloorDiv", "Div"),
    ("Mod", "FloorDiv"),
    ("Pow", "Mul"),
    ("LShift", "RShift"),
    ("RShift", "LShift"),
    ("BitOr", "BitAnd"),
    ("BitAnd", "BitOr"),
    ("BitXor", "BitAnd"),
}
NATURAL_COMPARISON = {
    ("Eq", "NotEq"),
    ("NotEq", "Eq"),
    ("Lt", "LtE"),
    ("LtE", "Lt"),
    ("Gt", "GtE"),
    ("GtE", "Gt"),
    ("Lt", "GtE"),
    ("GtE", "Lt"),
    ("Gt", "LtE"),
    ("LtE", "Gt"),
    ("Is", "IsNot"),
    ("IsNot", "Is"),
}
NATURAL_UNARY = {
    ("USub", "UAdd"),
    ("UAdd", "USub"),
    ("Delete", "USub"),
    ("Delete", "Not"),
    ("Delete", "Invert"),
}
LOG_CALL = re.compile(r"^(log|logger|logging)\.(debug|info|warning|error|exception|critical)$")


def natural_operator(name: str) -> bool:
    """Whether a Cosmic Ray operator name belongs to the `natural` subset."""
    match = re.fullmatch(r"core/Replace(Binary|Comparison|Unary)Operator_(\w+?)_(\w+)", name)
    if match is None:
        return True
    kind, src, dst = match.groups()
    table = {"Binary": NATURAL_BINARY, "Comparison": NATURAL_COMPARISON, "Unary": NATURAL_UNARY}[kind]
    return (src, dst) in table


def excluded_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions (line 1-based, column 0-based) of annotations and logging calls."""
    spans = []

    def add(node: ast.AST | None) -> None:
        if node is not None:
            spans.append(((node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.arg | ast.AnnAssign):
            add(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            add(node.returns)
        elif isinstance(node, ast.Call) and LOG_CALL.match(ast.unparse(node.func)):
            add(node)
    return spans


def _inside(pos: tuple[int, int], spans: list[tuple[tuple[int, int], tuple[int, int]]]) -> bool:
    return any(start <= tuple(pos) < end for start, end in spans)


# -- the copy ---------------------------------------------------------------------------------------------


def snapshot(src: Path, dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files of `src` (as they are now) into `dest`, plus a link to
    `src/../shared` at `dest/../shared` (tests read ../shared/data relative to the repository)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listing.split("\0")):
        path = src / rel
        if not path.is_file():  # deleted since the last commit, or being rewritten right now
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / rel)
    shared = (src / ".." / "shared").resolve()
    if shared.is_dir() and not (dest.parent / "shared").exists():
        (dest.parent / "shared").symlink_to(shared)


def test_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TRITON_INTERPRET", "1")
    return env


def test_command(copy: Path, tests: list[str], per_test_timeout: int) -> str:
    return shlex.join(
        [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--timeout={per_test_timeout}",
            f"--rootdir={copy}",
            f"--basetemp={copy.parent / 'pytest-tmp'}",  # not /tmp/pytest-of-*, which others rotate
            *tests,
        ]
    )


def expand_tests(copy: Path, patterns: tuple[str, ...]) -> list[str]:
    """Globs and node ids, resolved in the copy; files that do not exist (yet) are skipped. Items starting
    with "-" are pytest options, passed as they are."""
    found: list[str] = []
    for pattern in patterns:
        if pattern.startswith("-"):
            found.append(pattern)
            continue
        path_part = pattern.split("::", 1)[0]
        if "::" in pattern:
            matches = [pattern] if (copy / path_part).is_file() else []
        else:
            matches = sorted(str(Path(p).relative_to(copy)) for p in glob.glob(str(copy / pattern)))
        found.extend(m for m in matches if m not in found)
    return found


# -- one module -------------------------------------------------------------------------------------------


@dataclass
class Survivor:
    where: str  # file:line
    operator: str
    diff: str
    occurrence: int = 0  # with the operator, names the mutant in an unchanged module (--retest)


@dataclass
class ModuleReport:
    module: str
    tests: list[str]
    generated: int = 0
    selected: int = 0
    killed: int = 0
    survived: int = 0
    timed_out: int = 0
    incompetent: int = 0
    baseline_s: float = 0.0
    source_sha1: str = ""  # of the module as mutated
    wall_s: float = 0.0
    error: str = ""
    survivors: list[Survivor] = field(default_factory=list)


_WORKER_COPY: Path | None = None


def _init_worker(copies) -> None:
    global _WORKER_COPY
    _WORKER_COPY = Path(copies.get())
    os.chdir(_WORKER_COPY)
    os.environ.update(test_env(_WORKER_COPY))


def _run_one(item, tests: list[str], per_test_timeout: int, timeout: float):
    from cosmic_ray.mutating import mutate_and_test

    assert _WORKER_COPY is not None
    command = test_command(_WORKER_COPY, tests, per_test_timeout)
    return item.job_id, mutate_and_test(item.mutations, command, timeout)


def run_module(module: str, copies: list[Path], args: argparse.Namespace) -> ModuleReport:
    from cosmic_ray.commands import init
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    copy = copies[0]
    tests = expand_tests(copy, MODULES[module])
    report = ModuleReport(module, tests)
    if not tests:
        report.error = "no test file found"
        return report

    # Baseline: the unmutated copy must pass, and must be what the tests import.
    command = test_command(copy, tests, args.per_test_timeout)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib, sys; print(importlib.import_module(sys.argv[1]).__file__)",
            module[:-3].replace("/", "."),
        ],
        cwd=copy,
        env=test_env(copy),
        capture_output=True,
        text=True,
    )
    if not where.stdout.strip().startswith(str(copy)):
        report.error = f"the copy is not what gets imported: {where.stdout or where.stderr}"
        return report
    start = time.monotonic()
    baseline = subprocess.run(
        shlex.split(command), cwd=copy, env=test_env(copy), capture_output=True, text=True
    )
    report.baseline_s = time.monotonic() - start
    if baseline.returncode != 0:
        report.error = "baseline fails:\n" + baseline.stderr[-1000:] + baseline.stdout[-3000:]
        return report
    timeout = args.timeout_factor * report.baseline_s + 30

    # Mutants: all of them into the session, then everything not selected marked as skipped.
    session = Path(args.workdir) / (module.replace("/", "_").removesuffix(".py") + ".sqlite")
    session.unlink(missing_ok=True)
    os.chdir(copy)  # Cosmic Ray records module paths as given: relative, so that every copy can apply them
    try:
        with use_db(str(session), WorkDB.Mode.create) as db:
            init([Path(module)], db, {})
            items = sorted(db.pending_work_items, key=_mutation_key)
            report.generated = len(items)
            source = (copy / module).read_text()
            report.source_sha1 = hashlib.sha1(source.encode()).hexdigest()
            spans = excluded_spans(source)
            keep = [
                item
                for item in items
                if (args.operators == "all" or natural_operator(item.mutations[0].operator_name))
                and not _inside(item.mutations[0].start_pos, spans)
            ]
            if args.retest:
                keep = _previous_survivors(args.retest, module, source, keep)
            elif args.sample and len(keep) > args.sample:
                keep = random.Random(f"{args.seed}:{module}").sample(keep, args.sample)
            chosen = {item.job_id for item in keep}
            skipped = [item.job_id for item in items if item.job_id not in chosen]
            if skipped:
                db.set_multiple_results(
                    skipped, WorkResult(output="not selected", worker_outcome=WorkerOutcome.SKIPPED)
                )
            report.selected = len(keep)
            by_id = {item.job_id: item for item in keep}
            start = time.monotonic()
            queue = multiprocessing.get_context("fork").Queue()
            for c in copies:
                queue.put(str(c))
            with concurrent.futures.ProcessPoolExecutor(
                len(copies),
                mp_context=multiprocessing.get_context("fork"),
                initializer=_init_worker,
                initargs=(queue,),
            ) as pool:
                futures = [
                    pool.submit(_run_one, item, tests, args.per_test_timeout, timeout) for item in keep
                ]
                for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
                    job_id, result = future.result()
                    db.set_result(job_id, result)
                    mutation = by_id[job_id].mutations[0]
                    if result.worker_outcome != WorkerOutcome.NORMAL:
                        report.incompetent += 1
                        state = "incompetent"
                    elif result.test_outcome == TestOutcome.SURVIVED:
                        report.survived += 1
                        state = "SURVIVED"
                        report.survivors.append(
                            Survivor(
                                f"{module}:{mutation.start_pos[0]}",
                                mutation.operator_name,
                                _short_diff(result.diff or ""),
                                mutation.occurrence,
                            )
                        )
                    elif result.test_outcome == TestOutcome.INCOMPETENT:
                        report.incompetent += 1
                        state = "incompetent"
                    elif result.output == "timeout":
                        report.timed_out += 1
                        state = "timeout"
                    else:
                        report.killed += 1
                        state = "killed"
                    if args.verbose:
                        print(
                            f"  [{done}/{len(keep)}] {state:<11} {module}:{mutation.start_pos[0]} "
                            f"{mutation.operator_name}",
                            flush=True,
                        )
            report.wall_s = time.monotonic() - start
    finally:
        os.chdir(REPO)
    report.survivors.sort(key=lambda s: int(s.where.rsplit(":", 1)[1]))
    return report


def _changed_lines(diff: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What a mutant removes and adds, without line numbers or context: it names the mutant even after
    edits elsewhere in the module have moved it."""
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@"))]
    removed = tuple(line[1:].strip() for line in lines if line.startswith("-"))
    added = tuple(line[1:].strip() for line in lines if line.startswith("+"))
    return removed, added


def _previous_survivors(path: str, module: str, source: str, items: list) -> list:
    """The items that survived in an earlier run of this module: from its --json report, or from its Cosmic
    Ray session (SESSION.sqlite in --workdir, also of an interrupted run). Matched by operator and changed
    lines, so other edits to the module since then do not matter."""
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator

    if path.endswith(".sqlite"):
        report = session_report(path)
        survivors = [sv for sv in report.survivors if sv.where.rsplit(":", 1)[0] == module]
    else:
        survivors = [
            Survivor(**sv)
            for r in json.loads(Path(path).read_text())
            if r["module"] == module
            for sv in r["survivors"]
        ]
    wanted = {(sv.operator, _changed_lines(sv.diff)) for sv in survivors}
    operators = {op for op, _ in wanted}
    found = []
    for item in items:
        mutation = item.mutations[0]
        if mutation.operator_name not in operators:
            continue
        operator = get_operator(mutation.operator_name)(**(mutation.operator_args or {}))
        mutated = mutate_code(source, operator, mutation.occurrence)
        if mutated is None:
            continue
        diff = "\n".join(difflib.unified_diff(source.splitlines(), mutated.splitlines(), lineterm="", n=0))
        if (mutation.operator_name, _changed_lines(diff)) in wanted:
            found.append(item)
    if len(found) < len(wanted):
        print(
            f"   note: {len(wanted) - len(found)} earlier survivors no longer exist in {module}", flush=True
        )
    return found


def _mutation_key(item) -> tuple:
    """Work items in source order (Cosmic Ray's ids are random), so that --seed picks the same sample."""
    mutation = item.mutations[0]
    return (tuple(mutation.start_pos), mutation.operator_name, mutation.occurrence)


def _short_diff(diff: str) -> str:
    """The changed lines of a unified diff with one line of context, without the file headers."""
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++"))]
    return "\n".join(lines)


def session_report(path: str) -> ModuleReport:
    """The report of a session database, also of an interrupted run (counting what finished)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    with use_db(path, WorkDB.Mode.open) as db:
        items, done = db.work_items, db.completed_work_items
    modules = sorted({str(m.module_path) for item in items for m in item.mutations})
    report = ModuleReport(", ".join(modules), [], generated=len(items))
    report.selected = len(items) - sum(r.worker_outcome == WorkerOutcome.SKIPPED for _, r in done)
    for item, result in sorted(done, key=lambda pair: _mutation_key(pair[0])):
        mutation = item.mutations[0]
        if result.worker_outcome == WorkerOutcome.SKIPPED:
            continue
        if result.worker_outcome != WorkerOutcome.NORMAL or result.test_outcome == TestOutcome.INCOMPETENT:
            report.incompetent += 1
        elif result.test_outcome == TestOutcome.SURVIVED:
            report.survived += 1
            where = f"{mutation.module_path}:{mutation.start_pos[0]}"
            diff = _short_diff(result.diff or "")
            report.survivors.append(Survivor(where, mutation.operator_name, diff, mutation.occurrence))
        elif result.output == "timeout":
            report.timed_out += 1
        else:
            report.killed += 1
    unfinished = report.selected - report.killed - report.survived - report.timed_out - report.incompetent
    if unfinished:
        report.error = f"interrupted: {unfinished} of the {report.selected} selected mutants not tested"
    return report


def print_report(report: ModuleReport) -> None:
    print(f"\n== {report.module}  (tests: {' '.join(report.tests) or '-'})")
    if report.error:
        print(f"   ERROR: {report.error}")
        if not report.killed + report.survived:
            return
    score = report.killed + report.timed_out
    ran = score + report.survived
    print(
        f"   generated {report.generated}  selected {report.selected}  killed {report.killed}  "
        f"survived {report.survived}  timed out {report.timed_out}  incompetent {report.incompetent}  "
        f"score {score / ran:.0%}  (baseline {report.baseline_s:.1f} s, mutants {report.wall_s:.0f} s)"
        if ran
        else f"   generated {report.generated}  selected {report.selected}: nothing ran"
    )
    for survivor in report.survivors:
        print(f"   survived {survivor.where}  {survivor.operator}")
        for line in survivor.diff.splitlines():
            print(f"      {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all {len(MODULES)})")
    parser.add_argument("--operators", choices=("natural", "all"), default="natural")
    parser.add_argument("--sample", type=int, default=0, help="mutants drawn per module (0: all selected)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (one copy each)")
    parser.add_argument(
        "--timeout-factor", type=float, default=3.0, help="mutant timeout: factor × baseline + 30 s"
    )
    parser.add_argument("--per-test-timeout", type=int, default=300, help="pytest-timeout for each test")
    parser.add_argument(
        "--workdir", default="", help="where the copies and session databases go (default: a temp dir)"
    )
    parser.add_argument("--json", default="", help="write the reports to this JSON file")
    parser.add_argument(
        "--retest",
        default="",
        help="a --json report: test again only its survivors (e.g. after adding tests)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the copies")
    parser.add_argument("--list", action="store_true", help="print the module → tests mapping and exit")
    parser.add_argument(
        "--report",
        nargs="+",
        default=[],
        metavar="SESSION",
        help="print the report of session databases and exit",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per mutant as it finishes")
    args = parser.parse_args(argv)
    if args.report:
        for path in args.report:
            print_report(session_report(path))
        return 0
    if args.list:
        for module, tests in MODULES.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"not in MODULES: {unknown}")
    try:
        import cosmic_ray  # noqa: F401
    except ImportError:
        parser.error("cosmic-ray is not installed: pip install -e '.[dev]'")

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="mathforge-mutants-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = str(workdir)
    copies = [workdir / f"copy{i}" / "repo" for i in range(max(1, args.jobs))]
    reports = []
    try:
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)
            copy.mkdir(parents=True)
            snapshot(REPO, copy)
        print(f"snapshot of {REPO} in {', '.join(map(str, copies))}", flush=True)
        for module in modules:
            print(f"-- {module} ...", flush=True)
            report = run_module(module, copies, args)
            print_report(report)
            reports.append(report)
            if args.json:
                Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=1))
    finally:
        if not args.keep:
            for copy in copies:
                shutil.rmtree(copy.parent, ignore_errors=True)
    print("\nmodule                       generated selected killed survived timeout incompetent")
    for r in reports:
        print(
            f"{r.module:<28} {r.generated:>9} {r.selected:>8} {r.killed:>6} {r.survived:>8} "
            f"{r.timed_out:>7} {r.incompetent:>11}{'  ERROR' if r.error else ''}"
        )
    print(f"sessions: {workdir}/*.sqlite")
    return 1 if any(r.error for r in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
