"""Every fuzz corpus file and crash reproducer replayed through its harness (no atheris needed).

The corpus of each target (`fuzz/corpus/<target>/`) must replay clean: each file is one input
the fuzzer found interesting, and each keeps passing the target's properties. A crash reproducer
(`fuzz/crashes/<target>/<bug>.<what>`) runs in a child process, since it may hang or crash the
interpreter; one whose bug is still open (`fuzz.harness.KNOWN`) is a strict xfail, so the fix
turns it into an unexpected pass and the entry in KNOWN is removed with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.harness import FIXED, KNOWN
from fuzz.run import CORPUS, TARGET_NAMES, corpus_files, crash_files, replay, replay_isolated

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_corpus_replays_clean(target: str) -> None:
    files = corpus_files(target)
    assert files, f"no corpus for {target}: run fuzz/run.py --seeds"
    failed = replay(target, files)
    assert not failed, "\n".join(f"{f.path.relative_to(ROOT)}: {f.error}" for f in failed)


def _reproducers() -> list[object]:
    cases: list[object] = []
    for target in TARGET_NAMES:
        for path in crash_files(target):
            bug = path.name.split(".", 1)[0]
            marks = (
                [pytest.mark.xfail(strict=True, reason=f"{bug}: {KNOWN[bug]}")]
                if bug in KNOWN
                else []
            )
            cases.append(pytest.param(target, path, id=f"{target}/{path.name}", marks=marks))
    return cases


@pytest.mark.parametrize(("target", "path"), _reproducers())
def test_reproducer_passes(target: str, path: Path) -> None:
    failure = replay_isolated(target, path, timeout_s=60.0)
    assert failure is None, failure.error


def test_every_known_bug_has_a_reproducer() -> None:
    have = {p.name.split(".", 1)[0] for t in TARGET_NAMES for p in crash_files(t)}
    assert set(KNOWN) <= have, f"known bugs without a reproducer: {sorted(set(KNOWN) - have)}"


def test_every_fixed_bug_keeps_a_reproducer() -> None:
    have = {
        p.name.split(".")[1]
        for t in TARGET_NAMES
        for p in crash_files(t)
        if p.name.startswith("fixed.")
    }
    assert set(FIXED) <= have, f"fixed bugs without a reproducer: {sorted(set(FIXED) - have)}"
    assert not set(FIXED) & set(KNOWN), "a bug is both fixed and known"


def test_corpus_folders_are_the_targets() -> None:
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert folders == set(TARGET_NAMES)
