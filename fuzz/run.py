"""Run one fuzzer for a bounded time, or replay every corpus file and crash reproducer.

    .venv/bin/python fuzz/run.py --target responder --seconds 300      # fuzz (needs atheris)
    .venv/bin/python fuzz/run.py --replay                              # replay (no atheris)
    .venv/bin/python fuzz/run.py --replay --target wire
    .venv/bin/python fuzz/run.py --target wire --merge /tmp/new-units  # keep what adds coverage
    .venv/bin/python fuzz/run.py --seeds                               # (re)write the seeds
    .venv/bin/python fuzz/run.py --list

Fuzzing: libFuzzer (through atheris) reads `fuzz/corpus/<target>/` and writes the new units it
finds into a scratch folder (`--work`, default a temporary one, printed at the end), so a run
never changes the repository unless asked: `--merge DIR` adds to the corpus only the units of
DIR that add coverage. Crashes go to `--artifacts` (default: the scratch folder); copy one to
`fuzz/crashes/<target>/` to keep it as a reproducer. Known bugs (`fuzz.harness.KNOWN`) are
stepped over while fuzzing (counted, printed at the end) unless `--strict`; replay never steps
over anything: a reproducer of a known bug fails until the bug is fixed.

The last line of a fuzzing run is a JSON summary: target, seconds, executions, crashes,
known-bug hits, the scratch folder. Exit status: 0 when no crash was found.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: make `fuzz`, `tests` and `clusterdns` importable
    sys.path.insert(0, str(ROOT))

CORPUS: Final = ROOT / "fuzz" / "corpus"
CRASHES: Final = ROOT / "fuzz" / "crashes"
TARGET_NAMES: Final = ("wire", "names", "responder", "corefile", "fastpath", "upstream")
MAX_LEN: Final = {"corefile": 4096, "upstream": 2048}
"""libFuzzer's `-max_len` per target (default 1024: a UDP query is cut at 512 anyway)."""
ENV_CHILD: Final = "CLUSTERDNS_FUZZ_CHILD"


# -- replay ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Failure:
    """One file whose replay raised."""

    path: Path
    error: str


def corpus_files(target: str) -> list[Path]:
    """Every corpus file of a target, sorted."""
    folder = CORPUS / target
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def crash_files(target: str) -> list[Path]:
    """Every crash reproducer of a target (the README files aside), sorted."""
    folder = CRASHES / target
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".md"))


def replay(target: str, files: Sequence[Path]) -> list[Failure]:
    """Run the target's harness on each file; return the files whose run raised."""
    from fuzz.harness import TARGETS, quiet

    harness = TARGETS[target]
    failures: list[Failure] = []
    with quiet():
        for path in files:
            try:
                harness(path.read_bytes())
            except Exception as exc:
                failures.append(Failure(path, f"{type(exc).__name__}: {exc}"))
    return failures


def known_bug(path: Path) -> str | None:
    """The known bug a reproducer belongs to (its name is `<bug id>.<what>`), if still open."""
    from fuzz.harness import KNOWN

    bug = path.name.split(".", 1)[0]
    return bug if bug in KNOWN else None


def replay_isolated(target: str, path: Path, timeout_s: float = 60.0) -> Failure | None:
    """Replay one file in a child process (a reproducer may hang or crash the interpreter)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--replay-one", target, str(path)]
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Failure(path, f"did not finish within {timeout_s:.0f} s (a hang)")
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return Failure(path, lines[-1] if lines else f"exit status {proc.returncode}")


def _replay_one(target: str, path: str) -> int:
    failed = replay(target, [Path(path)])
    if failed:
        print(failed[0].error)
        return 1
    return 0


def _replay_main(targets: Sequence[str]) -> int:
    status = 0
    for target in targets:
        files = corpus_files(target)
        crashes = crash_files(target)
        start = time.monotonic()
        failed = replay(target, files)
        crashed = [f for f in (replay_isolated(target, p) for p in crashes) if f is not None]
        took = time.monotonic() - start
        print(
            f"{target}: {len(files)} corpus files, {len(failed)} failed; "
            f"{len(crashes)} reproducers, {len(crashed)} still failing ({took:.1f} s)"
        )
        for f in failed + crashed:
            bug = known_bug(f.path)
            note = f" (known bug {bug})" if bug else ""
            print(f"  {f.path.relative_to(ROOT)}{note}: {f.error}")
            if bug is None:
                status = 1
    return status


# -- fuzzing -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """What one bounded fuzzing run did."""

    target: str
    seconds: float
    executions: int
    crashes: int
    known: dict[str, int]
    work: str
    artifacts: str
    corpus_units: int

    def line(self) -> str:
        """The summary as one JSON line."""
        return json.dumps(self.__dict__, sort_keys=True)


def _child(target: str, argv: list[str], strict: bool, known_log: str) -> None:
    """Run inside the fuzzing process: instrument, set up the harness, hand over to libFuzzer."""
    atheris = importlib.import_module("atheris")  # untyped; loaded only in the fuzzing child

    with atheris.instrument_imports(include=["clusterdns", "dnslib", "fuzz"]):
        from fuzz import harness

    test = harness.TARGETS[target]
    hits: Counter[str] = Counter()
    log = open(known_log, "w", encoding="utf-8")  # noqa: SIM115 - libFuzzer exits, never closes

    def flush() -> None:
        log.seek(0)
        log.write(json.dumps(dict(hits)))
        log.truncate()
        log.flush()

    def one(data: bytes) -> None:
        try:
            test(data)
        except harness.Violation as exc:
            if strict or exc.bug is None:
                raise
            hits[exc.bug] += 1
            flush()  # libFuzzer ends the process with exit(): keep the file current

    with harness.quiet():
        harness.prepare(target)  # build the served configuration before libFuzzer starts
        atheris.Setup([_self_command(target, Path(known_log)), *argv], one)
        try:
            atheris.Fuzz()
        finally:
            flush()


def fuzz(
    target: str,
    seconds: float,
    *,
    work: Path | None = None,
    artifacts: Path | None = None,
    strict: bool = False,
    jobs_timeout_s: float = 10.0,
    extra: Sequence[str] = (),
    echo: Callable[[str], None] = print,
) -> Summary:
    """Fuzz `target` for `seconds` in a child process; returns what it did.

    Raises:
        RuntimeError: atheris cannot be imported.
    """
    try:
        importlib.import_module("atheris")
    except ImportError as exc:
        raise RuntimeError(
            "atheris is not installed: pip install -e '.[test]' (it is in the test extra)"
        ) from exc
    work = work or Path(tempfile.mkdtemp(prefix=f"clusterdns-fuzz-{target}-"))
    work.mkdir(parents=True, exist_ok=True)
    artifacts = artifacts or work
    artifacts.mkdir(parents=True, exist_ok=True)
    known_log = work / "known-bugs.json"
    argv = [
        str(work),
        str(CORPUS / target),
        f"-max_total_time={max(1, int(seconds))}",
        f"-timeout={int(jobs_timeout_s)}",
        f"-max_len={MAX_LEN.get(target, 1024)}",
        "-rss_limit_mb=2560",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        *extra,
    ]
    env = dict(os.environ, **{ENV_CHILD: "1"})
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        target,
        "--known-log",
        str(known_log),
        *(["--strict"] if strict else []),
        "--",
        *argv,
    ]
    start = time.monotonic()
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=seconds + 300,
        check=False,
    )
    took = time.monotonic() - start
    out = proc.stdout
    match = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    runs = re.findall(r"#(\d+)\s", out)
    executions = int(match.group(1)) if match else (int(runs[-1]) if runs else 0)
    crashes = sorted(
        p for p in artifacts.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-"))
    )
    known: dict[str, int] = {}
    if known_log.exists():
        known = json.loads(known_log.read_text() or "{}")
    if proc.returncode != 0 or crashes:
        tail = "\n".join(out.splitlines()[-60:])
        echo(f"--- {target}: exit status {proc.returncode}; the fuzzer's last lines:\n{tail}")
    units = sum(1 for p in work.iterdir() if p.is_file() and p.name != known_log.name)
    return Summary(
        target=target,
        seconds=round(took, 1),
        executions=executions,
        crashes=len(crashes) if crashes else (1 if proc.returncode != 0 else 0),
        known=known,
        work=str(work),
        artifacts=str(artifacts),
        corpus_units=units,
    )


def _self_command(target: str, known_log: Path) -> str:
    """The command line that starts this harness again: libFuzzer's argv[0].

    libFuzzer runs `argv[0] ARGS` through the shell for its `-merge` (and `-fork`) children.
    """
    return " ".join(
        shlex.quote(part)
        for part in (
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            target,
            "--known-log",
            str(known_log),
            "--",
        )
    )


def merge(target: str, source: Path) -> int:
    """Add to the target's corpus the units of `source` that add coverage; returns how many."""
    importlib.import_module("atheris")  # the child needs it: fail here, not there

    folder = CORPUS / target
    before = set(corpus_files(target))
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        target,
        "--known-log",
        os.devnull,
        "--",
        "-merge=1",
        f"-max_len={MAX_LEN.get(target, 1024)}",
        str(folder),
        str(source),
    ]
    subprocess.run(cmd, cwd=ROOT, check=False, timeout=3600)
    added = [p for p in corpus_files(target) if p not in before]
    return len(added) - len(_drop_known(target, added))


def _drop_known(target: str, files: Sequence[Path]) -> list[Path]:
    """Remove the files that run into a known bug (the corpus must replay clean); return them.

    The fuzzer keeps such units while it steps over known bugs; their bug already has a
    reproducer in `fuzz/crashes/`.
    """
    from fuzz.harness import TARGETS, Violation, quiet

    dropped: list[Path] = []
    with quiet():
        for path in files:
            try:
                TARGETS[target](path.read_bytes())
            except Violation as exc:
                if exc.bug is None:
                    raise
                path.unlink()
                dropped.append(path)
    return dropped


# -- command line ------------------------------------------------------------------------------
def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fuzz/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=TARGET_NAMES, help="the fuzzer (default: all for --replay)")
    p.add_argument("--seconds", type=float, default=60.0, help="fuzzing time (default 60)")
    p.add_argument("--replay", action="store_true", help="replay corpora and reproducers")
    p.add_argument("--merge", type=Path, metavar="DIR", help="add DIR's useful units to the corpus")
    p.add_argument("--seeds", action="store_true", help="(re)write the seed corpora")
    p.add_argument("--list", action="store_true", help="list the targets")
    p.add_argument("--work", type=Path, help="folder for new units (default: a temporary one)")
    p.add_argument("--artifacts", type=Path, help="folder for crashes (default: --work)")
    p.add_argument("--strict", action="store_true", help="stop at known bugs too")
    p.add_argument("--child", metavar="TARGET", help=argparse.SUPPRESS)
    p.add_argument("--replay-one", nargs=2, metavar=("TARGET", "FILE"), help=argparse.SUPPRESS)
    p.add_argument("--known-log", help=argparse.SUPPRESS)
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    args = _arguments(argv)
    if args.child:
        _child(args.child, args.rest, args.strict, args.known_log or os.devnull)
        return 0
    if args.replay_one:
        return _replay_one(*args.replay_one)
    if args.list:
        from fuzz import harness

        for name in TARGET_NAMES:
            doc = (harness.TARGETS[name].__doc__ or "").strip().splitlines()[0]
            print(f"{name:10} {doc}")
        return 0
    if args.seeds:
        from fuzz import seeds

        return seeds.main()
    if args.replay:
        return _replay_main([args.target] if args.target else list(TARGET_NAMES))
    if args.target is None:
        print("fuzz/run.py: give --target, --replay, --seeds or --list", file=sys.stderr)
        return 2
    if args.merge:
        added = merge(args.target, args.merge)
        print(f"{args.target}: {added} units added to {CORPUS / args.target}")
        return 0
    try:
        summary = fuzz(
            args.target, args.seconds, work=args.work, artifacts=args.artifacts, strict=args.strict
        )
    except RuntimeError as exc:
        print(f"fuzz/run.py: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 1 if summary.crashes else 0


def iter_targets() -> Iterator[str]:
    """The target names, in the order the runner lists them."""
    return iter(TARGET_NAMES)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
