"""Sources: where CRM data comes from, and the importers that turn a CRM's exports into the canonical tables.

`load` is the one entry point notebooks and the command line use. It takes

- ``"sample"``: the bundled sample CRM;
- a canonical folder (``opportunities.csv`` and the optional tables, CSV or Parquet, maybe a ``process.yml``);
- a Salesforce export folder (``Opportunity.csv``, ``OpportunityHistory.csv``, ``Task.csv``, ``Event.csv``...:
  `read_salesforce`);
- a HubSpot deals export (CSV or Excel with ``Deal Stage`` and ``Date entered ...`` columns, and the engagement
  exports beside it: `read_hubspot`);
- a mapping file (``*.yml``) describing any other export, file or database (`load_mapping`).

Every importer ends in `salesforecast.schema.validate`, so quarantine rules and counts are the same whatever the
source: rows read = accepted + quarantined, per table.
"""

from __future__ import annotations

from pathlib import Path

from salesforecast.config import read_yaml
from salesforecast.io.database import DatabaseError, mask_url, read_database
from salesforecast.io.hubspot import hubspot_process, is_hubspot_export, read_hubspot
from salesforecast.io.mapping import MappingError, import_mapping, is_mapping_file, load_mapping, read_mapping
from salesforecast.io.salesforce import is_salesforce_folder, read_salesforce, write_salesforce
from salesforecast.io.snapshot_store import append_snapshot, history_from_snapshots, read_snapshots
from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData, DataFileError, read_canonical

__all__ = [
    "DatabaseError",
    "MappingError",
    "append_snapshot",
    "history_from_snapshots",
    "hubspot_process",
    "import_mapping",
    "is_hubspot_export",
    "is_mapping_file",
    "is_salesforce_folder",
    "load",
    "load_mapping",
    "mask_url",
    "read_database",
    "read_hubspot",
    "read_mapping",
    "read_salesforce",
    "read_snapshots",
    "write_salesforce",
]

_EXPECTED = (
    "expected 'sample', a canonical folder (opportunities.csv), a Salesforce export folder (Opportunity.csv), "
    "a HubSpot deals export (.csv/.xlsx) or a mapping file (.yml)"
)


def load(
    source: str | Path = "sample", process: SalesProcess | str | Path | None = None, *, encoding: str | None = None
) -> CRMData:
    """Load validated CRM data from a source.

    Parameters
    ----------
    source : str or path
        ``"sample"``, a canonical folder, a Salesforce export folder, a HubSpot deals export, or a mapping file
        (see the module docstring).
    process : SalesProcess, path of a process YAML, "default" or None
        The process map. The default (None or ``"default"``, the same everywhere: `SalesProcess.resolve`) is the
        source's own (``process.yml`` in a canonical folder or the sample, ``OpportunityStage.csv`` of a Salesforce
        export, HubSpot's default pipeline, the mapping's ``process``), else Salesforce's standard stages;
        ``"salesforce"`` asks for Salesforce's standard stages whatever the source.
    encoding : str, optional
        The text encoding of a canonical folder's, a Salesforce export's or a HubSpot export's CSV files (default
        UTF-8; a byte-order mark is always followed). A mapping file names its sources' encodings itself
        (``encoding:``), so giving one here with a mapping file (or the sample) is an error.

    Returns
    -------
    CRMData

    Raises
    ------
    DataFileError
        When the source does not exist or a whole file cannot be used (MappingError, a subclass, for a bad
        mapping file, and for a ``.yml``/``.yaml`` file that is not valid YAML: the parser's message with the line
        and column).

    Examples
    --------
    >>> data = load("sample")
    >>> int(data.counts.loc["opportunities", "read"]) > 1000
    True
    """
    if str(source) == "sample":
        from salesforecast.datasets import load_sample

        if encoding is not None:
            raise DataFileError("sample: the bundled sample is UTF-8; give an encoding only for your own files")
        return load_sample(process=process)
    path = Path(source).expanduser()
    if path.is_dir():
        if is_salesforce_folder(path) and not (path / "opportunities.csv").exists():
            return read_salesforce(path, process=process, encoding=encoding or "utf-8")
        return read_canonical(path, process=process, encoding=encoding or "utf-8")
    if not path.exists():
        raise DataFileError(f"{source}: no such file or folder; {_EXPECTED}", file=str(source))
    if path.suffix.lower() in (".yml", ".yaml"):
        if encoding is not None:
            raise MappingError(
                f"{path}: a mapping file names its sources' encodings (`encoding:` under `defaults:` or a source);"
                " an encoding given here would not apply, so leave it out",
                file=str(path),
            )
        raw, problem = read_yaml(path, "mapping file")
        if problem is not None:  # the parser's error (line, column), not "not a data source"
            raise MappingError(f"{path}: {problem}", file=str(path))
        if isinstance(raw, dict) and "tables" in raw:  # the mapping reader reports the rest (a duplicate key...)
            return load_mapping(path, process=process)
    if is_hubspot_export(path):
        return read_hubspot(path, process=process, encoding=encoding or "utf-8")
    raise DataFileError(f"{source}: not a data source; {_EXPECTED}", file=str(source))
