"""One JSON record per source video (``records/<video_id>.json``), committed atomically after its media: present
means finished, so a killed run resumes without losing or duplicating a clip.
"""
from __future__ import annotations

import json
from pathlib import Path

from common.files import atomic_write_json
from data.curate.options import RECORDS_DIR, Rejection
from data.sources import SourceVideo


def make_record(source: SourceVideo, fingerprint: str | None, clips: list[dict], rejected: list[dict]) -> dict:
    return {"video_id": source.id, "path": source.path, "fingerprint": fingerprint, "clips": clips, "rejected": rejected}


def rejected_entry(source: SourceVideo, clip_id: str, rejection: Rejection) -> dict:
    return {"path": source.path, "id": clip_id, "reason": rejection.reason, "message": rejection.message}


def commit_record(out_dir: Path, record: dict) -> None:
    """Write ``records/<video_id>.json`` atomically (temp file + rename): present means finished."""
    atomic_write_json(out_dir / RECORDS_DIR / f"{record['video_id']}.json", record, indent=1)


def record_is_final(record: dict) -> bool:
    """Records of unexpected failures are redone by the next run; every other outcome is final."""
    return not any(entry["reason"] == "failed" for entry in record["rejected"])


def load_records(out_dir: Path) -> dict[str, dict]:
    """Committed records by video id (a torn or foreign file in ``records/`` is ignored and its video redone)."""
    records = {}
    for path in sorted((out_dir / RECORDS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            records[record["video_id"]] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return records
