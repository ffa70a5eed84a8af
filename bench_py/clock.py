"""The one wall clock voxbench writes into its documents: UTC, ISO 8601, milliseconds."""

from __future__ import annotations

import datetime as dt


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
