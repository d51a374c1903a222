"""The ``salesforecast`` command.

``validate`` a data source, ``import`` one into a canonical folder, take a ``snapshot`` of the open pipeline into a
store, render ``report``s, take ``screenshots`` of the rendered pages, print the JSON ``schema`` of a configuration
file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from salesforecast.process import ProcessError
from salesforecast.schema import CRMData, DataFileError

__all__ = ["CONFIG_KINDS", "config_schema", "main", "validation_report"]

#: The configuration files `config_schema` describes.
CONFIG_KINDS: tuple[str, ...] = ("process", "mapping", "reports")

_ENCODING_HELP = (
    "text encoding of the source's CSV files (a canonical folder, a Salesforce or HubSpot export), e.g. latin-1,"
    " cp1252, utf-16; default UTF-8 (a byte-order mark is always followed). A mapping file sets `encoding:` itself"
)

_PROCESS_HELP = (
    "process map: a YAML file, 'salesforce' (Salesforce's standard stages) or 'default' (the default: the source's"
    " own map, e.g. the folder's process.yml, else Salesforce's standard stages)"
)


def validation_report(data: CRMData) -> dict[str, Any]:
    """Counts per table and quarantine counts by reason, as ``validate --json`` prints them.

    Returns
    -------
    dict
        ``{table: {"read": n, "accepted": n, "quarantined": n, "reasons": {reason: n}}, ..., "notes": [...]}``:
        one entry per table, and the importer's notes (`CRMData.notes`, often the reason behind a quarantine).
    """
    out: dict[str, Any] = {}
    by_reason = data.quarantine_summary()
    for table, row in data.counts.iterrows():
        reasons = by_reason[by_reason["table"] == table]
        out[str(table)] = {
            "read": int(row["read"]),
            "accepted": int(row["accepted"]),
            "quarantined": int(row["quarantined"]),
            "reasons": {str(r): int(n) for r, n in zip(reasons["reason"], reasons["rows"], strict=True)},
        }
    out["notes"] = list(data.notes)
    return out


def _print_validation(data: CRMData, source: str, examples: int) -> None:
    print(f"source: {source}")
    print(f"process: {data.process.name} ({len(data.process.open_stages)} open stages)")
    print()
    print(data.counts.to_string())
    for note in data.notes:
        print(f"\nnote: {note}")
    q = data.quarantine
    if q.empty:
        print("\nno rows quarantined")
        return
    print("\nquarantined rows by reason:")
    print(data.quarantine_summary().to_string(index=False))
    print(f"\nfirst offending rows (up to {examples} per table):")
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        for table, grp in q.groupby("table", sort=False):
            print(f"\n[{table}]")
            cols, file = ["row", "column", "value", "reason"], grp["details"].str.split(": ").str[0]
            files = {Path(p).name for p in data.sources.get(str(table), "").split(" + ")}
            if len(files) > 1 and file.isin(files).all():  # several files (Task.csv + Event.csv): rows are per file
                grp, cols = grp.assign(file=file), ["file", *cols]
            print(grp[cols].head(examples).to_string(index=False))


def _validate(args: argparse.Namespace) -> int:
    from salesforecast.io import load

    try:
        data = load(args.path, process=args.process, encoding=args.encoding)
    except (DataFileError, ProcessError) as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(validation_report(data), indent=2))
    else:
        _print_validation(data, str(args.path), args.examples)
    return 0


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from salesforecast.io import import_mapping, is_mapping_file, load, mask_url

    fmt = args.format or ("parquet" if args.partitions is not None else "csv")
    problem = None
    if args.partitions is not None and args.partitions < 1:
        problem = f"--partitions must be a whole number >= 1, got {args.partitions}"
    elif args.partitions is not None and fmt != "parquet":
        problem = f"partitions are written as Parquet: leave --format out or give parquet (not {fmt})"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        if args.partitions is not None:  # a canonical folder per partition by opportunity (salesforecast.scale)
            from salesforecast.scale import write_partitions

            data = load(args.source, process=args.process, encoding=args.encoding)
            out = write_partitions(data, args.out, args.partitions)
        elif is_mapping_file(Path(args.source)):  # clears an earlier import's tables, writes quarantine.csv
            if args.encoding is not None:
                load(args.source, encoding=args.encoding)  # refuses it: a mapping names its sources' encodings
            data = import_mapping(args.source, args.out, process=args.process, fmt=fmt)
            out = Path(args.out)
        else:
            data = load(args.source, process=args.process, encoding=args.encoding)
            out = data.to_folder(args.out, fmt=fmt)
    except (DataFileError, ProcessError) as exc:
        print(f"error: {mask_url(str(exc))}", file=sys.stderr)
        return 2
    print(f"imported {args.source} -> {out}")
    print(data.counts.to_string())
    for note in data.notes:
        print(f"note: {note}")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from salesforecast.io import append_snapshot, load, mask_url

    try:
        data = load(args.source, process=args.process, encoding=args.encoding)
        rows = append_snapshot(data, args.store, as_of=args.as_of)
    except (DataFileError, ProcessError, ValueError, OSError) as exc:
        print(f"error: {mask_url(str(exc))}", file=sys.stderr)
        return 2
    print(f"{rows} open opportunities written to {args.store}")
    return 0


def config_schema(kind: str) -> dict[str, Any]:
    """The JSON schema of a configuration file, for editors that validate YAML as it is typed.

    The schema is generated from the pydantic models that read the files (`salesforecast.process.ProcessFile`,
    `salesforecast.io.mapping.MappingFile`, `salesforecast.reports.ReportsFile`), so it names every key, its
    type and the allowed words. Rules between keys (a mapped column, an existing notebook) are checked only when
    the file is read. In VS Code with the YAML extension, point a file at the schema with a first line
    ``# yaml-language-server: $schema=process.schema.json``.

    Parameters
    ----------
    kind : {"process", "mapping", "reports"}
        A process map, a mapping file or the report configuration.

    Returns
    -------
    dict
        A JSON schema (draft 2020-12).

    Examples
    --------
    >>> config_schema("process")["required"]
    ['stages']
    """
    from salesforecast.io.mapping import MappingFile
    from salesforecast.process import ProcessFile
    from salesforecast.reports import ReportsFile

    models = dict(zip(CONFIG_KINDS, (ProcessFile, MappingFile, ReportsFile), strict=True))
    if kind not in models:
        raise ValueError(f"no configuration {kind!r}; one of {', '.join(CONFIG_KINDS)}")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **models[kind].model_json_schema()}


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(config_schema(args.kind), indent=2))
    return 0


def _screenshots(args: argparse.Namespace) -> int:
    from salesforecast import pages

    out = args.out if args.out is not None else args.run.parent / "screenshots"
    try:
        shots = pages.take_screenshots(args.run, out, chromium=args.chromium or pages.CHROMIUM)
    except pages.ScreenshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for s in shots:
        print(s.summary())
    print(f"{len(shots)} page(s) -> {out / 'index.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``salesforecast`` command."""
    parser = argparse.ArgumentParser(prog="salesforecast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check a data source: counts per table, quarantine by reason")
    v.add_argument(
        "path",
        help="'sample', a canonical folder, a Salesforce export folder, a HubSpot export or a mapping file (.yml)",
    )
    v.add_argument(
        "--process",
        default=None,
        help=_PROCESS_HELP,
    )
    v.add_argument(
        "--json", action="store_true", help="print one JSON object: {table: {read, accepted, quarantined, reasons}}"
    )
    v.add_argument("--examples", type=int, default=5, help="offending rows shown per table (default 5)")
    v.add_argument("--encoding", default=None, help=_ENCODING_HELP)
    v.set_defaults(func=_validate)

    i = sub.add_parser("import", help="read a source (mapping file, export) and write it as a canonical folder")
    i.add_argument("source", help="a mapping file (.yml), a Salesforce export folder, a HubSpot export, ...")
    i.add_argument("--out", required=True, help="the canonical folder to write (created when missing)")
    i.add_argument("--process", default=None, help=_PROCESS_HELP)
    i.add_argument(
        "--format",
        default=None,
        choices=["csv", "parquet"],
        help="file format of the tables (default csv; partitions: parquet)",
    )
    i.add_argument("--encoding", default=None, help=_ENCODING_HELP)
    i.add_argument(
        "--partitions",
        type=int,
        default=None,
        metavar="N",
        help="write N partitions by opportunity for a Dask cluster (salesforecast.scale.write_partitions), as Parquet",
    )
    i.set_defaults(func=_import)

    s = sub.add_parser(
        "snapshot",
        help="append today's open pipeline to a snapshot store (run weekly, it builds the history a CRM does not keep)",
    )
    s.add_argument("source", help="a mapping file (.yml) or any source `validate` accepts")
    s.add_argument("--store", required=True, help="a Parquet folder, or a DuckDB file (*.duckdb)")
    s.add_argument("--as-of", default=None, help="the snapshot's date (default: today, UTC)")
    s.add_argument("--process", default=None, help=_PROCESS_HELP)
    s.add_argument("--encoding", default=None, help=_ENCODING_HELP)
    s.set_defaults(func=_snapshot)

    from salesforecast import reports

    r = sub.add_parser(
        "report",
        help="execute the report notebooks and render HTML",
        epilog=(
            "exit status: 0 every report rendered; 3 none failed, some rendered a 'what this report needs' page (the"
            " data cannot support them); 1 some failed; 2 invalid configuration (nothing ran)"
        ),
    )
    reports.add_report_arguments(r)
    r.set_defaults(func=reports.run_from_args)

    sc = sub.add_parser(
        "screenshots",
        help="screenshot every page of a rendered run at 1400x900 (first screen, whole page) for a person to look at",
        epilog="exit status: 0 written; 2 no rendered run there, or Chromium or playwright missing",
    )
    sc.add_argument(
        "run",
        nargs="?",
        type=Path,
        default=Path("reports/latest"),
        help="a rendered run folder (default reports/latest)",
    )
    sc.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where the images and their index.html go (default: screenshots/ beside RUN)",
    )
    sc.add_argument("--chromium", default=None, help="the Chromium executable (default /usr/bin/chromium)")
    sc.set_defaults(func=_screenshots)

    c = sub.add_parser("schema", help="print the JSON schema of a configuration file (for editors' YAML checks)")
    c.add_argument("kind", choices=CONFIG_KINDS, help="a process map, a mapping file or the report configuration")
    c.set_defaults(func=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    0 ok; 1 some reports failed; 2 bad input or configuration; 3 (``report``) no report failed, and some rendered a
    "what this report needs" page because the data cannot support them.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
