"""Redraw every ``docs/*.dot`` as an SVG beside it (needs graphviz's ``dot``).

Each SVG carries the SHA-256 of the source it was drawn from, so the tests notice a diagram
whose source changed without being redrawn, on machines without graphviz too.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
STAMP = "<!-- drawn from {name} sha256={digest} -->"


def stamp(source: Path) -> str:
    """The line an SVG drawn from ``source`` (as it is now) starts its body with."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return STAMP.format(name=source.name, digest=digest)


def render(source: Path) -> Path:
    """Draw ``source`` with graphviz and write the stamped SVG next to it."""
    svg = subprocess.run(["dot", "-Tsvg", str(source)], check=True, capture_output=True,
                         text=True).stdout
    header, _, body = svg.partition("<svg")
    target = source.with_suffix(".svg")
    target.write_text(f"{header}{stamp(source)}\n<svg{body}", encoding="utf-8")
    return target


if __name__ == "__main__":
    for dot in sorted(DOCS.glob("*.dot")):
        print(f"drew {render(dot).relative_to(DOCS.parent)}", file=sys.stderr)
