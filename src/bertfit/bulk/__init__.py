"""Bulk prediction: a model over files of any size, in committed parts that survive a crash.

``bertfit predict SOURCE --input IN --output OUT`` runs :func:`predict_bulk`: IN is a CSV, TSV,
JSON lines or Parquet file, or a folder or glob of such shards; OUT's suffix picks JSON lines,
CSV or Parquet. See :mod:`bertfit.bulk.engine` for the loop, :mod:`bertfit.bulk.parts` for
what makes it resumable.
"""

from bertfit.bulk.engine import BulkOptions, BulkSummary, predict_bulk

__all__ = ["BulkOptions", "BulkSummary", "predict_bulk"]
