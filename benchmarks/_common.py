"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so importable as ``_common``)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def update_readme(table: str, marker: str) -> None:
    """Put `table` between ``<!-- {marker}:start -->`` and ``<!-- {marker}:end -->`` in benchmarks/README.md."""
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = f"{start}\n{table}\n{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text, encoding="utf-8")
