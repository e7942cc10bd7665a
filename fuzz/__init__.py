"""Fuzzing: harnesses shared by atheris and the replay runner, seed corpora, crash reproducers.

`fuzz.harness` holds one plain function per target (bytes in, an exception out when a property
breaks); `fuzz.run` drives them with atheris (`--target X --seconds N`) or replays every corpus
file and crash reproducer without atheris (`--replay`); `fuzz.seeds` writes the seed corpora.
"""
