"""Each fuzzer runs briefly under atheris (coverage-guided) and finds nothing new.

About 5 s of fuzzing per target plus the child's start-up (instrumenting the imports), about
50 s for all six on a 2-core machine. atheris is part of the `test` extra: a missing atheris is
a failed test with the install command, never a skip, so CI cannot silently stop fuzzing. New
units go to a temporary folder (the repository's corpus is only read); known bugs are stepped
over and reported by `test_replay.py`'s strict xfails instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fuzz.run import TARGET_NAMES, fuzz

SECONDS = 5.0


def test_atheris_is_installed() -> None:
    assert importlib.util.find_spec("atheris") is not None, (
        "atheris is not importable: the fuzzers cannot run. Install the test extra "
        "(pip install -e '.[test]'), which lists atheris."
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("target", TARGET_NAMES)
def test_fuzzer_runs_briefly_without_a_crash(target: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.fail("atheris is not importable: pip install -e '.[test]' (it is in the test extra)")
    lines: list[str] = []
    summary = fuzz(target, SECONDS, work=tmp_path / "units", echo=lines.append)
    assert summary.crashes == 0, "\n".join(lines) + f"\n{summary.line()}"
    assert summary.executions > 0, f"the fuzzer ran no input: {summary.line()}\n" + "\n".join(lines)
