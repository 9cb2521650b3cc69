"""One record per finished edit, written atomically: what makes an evaluation resumable and its
summary independent of how many processes ran it.

`<run>/records/<id>.json` holds the pair's identity (row, source, condition), its status, its
per-edit metric values and its seconds. A rerun into the same run folder skips the pairs whose record
says "ok" for the same source and condition (failed pairs are tried again); the summary is computed
from the records of every pair of the pairs file, whichever run or process wrote them. A run killed
mid-way loses at most the edits in progress.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .pairs import Pair


def pair_key(pair: Pair) -> dict[str, Any]:
    """What a record must match to stand for this pair's edit."""
    return {"row": pair.row, "source": str(pair.source), "condition": pair.condition}


class EditRecords:
    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir) / "records"

    def path(self, pid: str) -> Path:
        return self.dir / f"{pid}.json"

    def write(self, record: dict[str, Any]) -> Path:
        """Write one edit's record (its "id" names the file) atomically."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(record["id"])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)
        return path

    def read(self, pair: Pair) -> dict[str, Any] | None:
        """The pair's record, if one was written for this very pair (same row, source, condition)."""
        path = self.path(pair.id)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # unreadable: the pair is edited again
        return record if record.get("pair") == pair_key(pair) else None

    def finished(self, pairs: list[Pair]) -> set[str]:
        """Ids of the pairs whose edit succeeded in an earlier run."""
        return {p.id for p in pairs if (r := self.read(p)) is not None and r["status"] == "ok"}

    def rows(self, pairs: list[Pair]) -> list[dict[str, Any]]:
        """The records of the pairs, in the pairs file's order (pairs without a record left out)."""
        return [r for p in pairs if (r := self.read(p)) is not None]
