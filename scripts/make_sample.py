"""Regenerate the committed sample data set of `salesforecast.datasets.load_sample`.

Usage::

    python scripts/make_sample.py [FOLDER]

writes ``generate(**SAMPLE_PARAMS)`` as a canonical folder (default: ``salesforecast/datasets/sample/``):
one gzip-compressed CSV per table (``opportunities.csv.gz``...) and ``process.yml``. The gzip streams carry no
timestamp and no file name (``mtime=0``), so rerunning the script reproduces the committed bytes exactly.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tempfile
from pathlib import Path

from salesforecast.datasets import SAMPLE_PARAMS, generate
from salesforecast.schema import TABLES

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "salesforecast" / "datasets" / "sample"


def make_sample(folder: str | Path = SAMPLE_DIR) -> list[Path]:
    """Write the sample into `folder` (replacing its table files) and return the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        for suffix in (".csv", ".csv.gz", ".parquet"):
            (folder / f"{name}{suffix}").unlink(missing_ok=True)
    data, _ = generate(**SAMPLE_PARAMS)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        data.to_folder(tmp)
        for csv in sorted(Path(tmp).glob("*.csv")):
            target = folder / f"{csv.name}.gz"
            target.write_bytes(gzip.compress(csv.read_bytes(), compresslevel=9, mtime=0))
            written.append(target)
        shutil.copyfile(Path(tmp) / "process.yml", folder / "process.yml")
        written.append(folder / "process.yml")
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else SAMPLE_DIR
    for path in make_sample(folder):
        print(f"{path.stat().st_size:>10,d}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
