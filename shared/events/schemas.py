"""Publishes a JSON Schema per event type and version: ``python -m shared.events.schemas``.

Each file describes the whole CloudEvent (envelope attributes and typed ``data``), so
other teams can validate what they produce without reading Python. ``--check`` exits 1
when the files on disk are stale; a test runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.events.base import EventPayload
from shared.events.registry import CONTRACT_EVENTS

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "schemas" / "events"


def event_schema(payload: type[EventPayload]) -> dict[str, Any]:
    data_schema = payload.model_json_schema(mode="serialization")
    definitions = data_schema.pop("$defs", {})
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": payload.dataschema(),
        "title": f"{payload.event_type} v{payload.schema_version}",
        "description": (payload.__doc__ or "").strip() or payload.event_type,
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "source": {"type": "string", "minLength": 1},
            "type": {"const": payload.event_type},
            "subject": {"type": "string", "minLength": 1, "description": "the customer id"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "dataschema": {"const": payload.dataschema()},
            "traceparent": {"type": "string"},
            "tracestate": {"type": "string"},
            "data": data_schema,
        },
        "x-kafka-topic": payload.topic,
        "x-kafka-key": "the customer id (same as subject)",
    }
    if definitions:
        schema["$defs"] = definitions
    return schema


def render_all() -> dict[str, str]:
    """File name to file text for every event type of the contract."""
    files = {}
    for payload in CONTRACT_EVENTS:
        name = f"{payload.event_type}.v{payload.schema_version}.json"
        files[name] = json.dumps(event_schema(payload), indent=2, sort_keys=True) + "\n"
    return files


def stale_files(folder: Path) -> list[str]:
    """Names of schema files that are missing, different, or no longer in the contract."""
    expected = render_all()
    stale = [
        name
        for name, text in expected.items()
        if not (folder / name).is_file() or (folder / name).read_text() != text
    ]
    extra = [path.name for path in folder.glob("*.json") if path.name not in expected]
    return sorted(stale + extra)


def write_all(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    expected = render_all()
    for path in folder.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (folder / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.folder)
        if stale:
            print("stale event schemas (run: make schemas): " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    write_all(args.folder)
    print(f"wrote {len(CONTRACT_EVENTS)} event schemas to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
