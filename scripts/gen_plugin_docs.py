"""Write docs/plugins/NAME.md from each plugin's docstring (its README); --check only compares."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clusterdns.plugins import SETUP  # noqa: E402


def rendered() -> dict[Path, str]:
    """Markdown per plugin, keyed by output path."""
    out: dict[Path, str] = {}
    for name in SETUP:
        module = importlib.import_module(f"clusterdns.plugins.{name}")
        doc = (module.__doc__ or "").strip() + "\n"
        out[ROOT / "docs" / "plugins" / f"{name}.md"] = doc
    return out


def main() -> int:
    """Write (or with --check, verify) the plugin docs."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = []
    for path, text in rendered().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        names = ", ".join(p.name for p in stale)
        print(
            f"plugin docs out of date ({names}): run python scripts/gen_plugin_docs.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
