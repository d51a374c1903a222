"""Sources: where CRM data comes from.

`load` is the one entry point notebooks and the command line use: ``"sample"`` (the bundled sample CRM),
or a canonical folder (``opportunities.csv`` and the optional tables, CSV or Parquet).
"""

from __future__ import annotations

from pathlib import Path

from salesforecast.process import SalesProcess
from salesforecast.schema import CRMData, DataFileError, read_canonical

__all__ = ["load"]


def load(source: str | Path = "sample", process: SalesProcess | str | Path | None = None) -> CRMData:
    """Load validated CRM data from a source.

    Parameters
    ----------
    source : str or path
        ``"sample"`` for the bundled sample CRM (`salesforecast.datasets.load_sample`), or the path of a
        canonical folder.
    process : SalesProcess, path of a process YAML, "default" or None
        The process map. None uses the source's own (``process.yml`` in the folder) or Salesforce's standard.

    Returns
    -------
    CRMData

    Raises
    ------
    DataFileError
        When the source does not exist or a whole file cannot be used.

    Examples
    --------
    >>> data = load("sample")
    >>> int(data.counts.loc["opportunities", "read"]) > 1000
    True
    """
    if str(source) == "sample":
        from salesforecast.datasets import load_sample

        return load_sample(process=process)
    path = Path(source).expanduser()
    if path.is_dir():
        return read_canonical(path, process=process)
    if not path.exists():
        raise DataFileError(
            f"{source}: no such folder; expected 'sample' or a folder holding opportunities.csv", file=str(source)
        )
    raise DataFileError(
        f"{source}: not a data source; expected 'sample' or a folder holding opportunities.csv", file=str(source)
    )
