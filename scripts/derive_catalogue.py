"""Derive the event catalogue's field list from Braze's published Avro schemas.

Maintainer tool, run by hand when Braze publishes a new schema version:

    python scripts/derive_catalogue.py ../shared/currents/schemas

It rewrites ``seeds/currents_event_fields.csv`` (field names, types, nullability, positions) for
every type listed in ``seeds/currents_event_catalogue.csv``, keeping the rows marked ``removed``
(fields Braze dropped in a breaking change; older files still carry them). The schemas stay
Braze's: only this derived description is kept in the repository, and
``tests/test_catalogue.py`` fails when the two drift apart.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

from currents_segment.catalogue import avro_field_type  # noqa: E402


def main(schema_dir: str) -> None:
    catalogue = REPO / "seeds" / "currents_event_catalogue.csv"
    fields_csv = REPO / "seeds" / "currents_event_fields.csv"
    with catalogue.open() as fh:
        types = [row["event_type"] for row in csv.DictReader(fh)]
    removed: dict[str, list[dict]] = {}
    if fields_csv.exists():
        with fields_csv.open() as fh:
            for row in csv.DictReader(fh):
                if row["lifecycle"] == "removed":
                    removed.setdefault(row["event_type"], []).append(row)
    rows = []
    for event_type in types:
        schema = json.loads((Path(schema_dir) / f"{event_type}.avsc").read_text())
        position = 0
        for position, field in enumerate(schema["fields"], start=1):
            type_name, nullable = avro_field_type(field["type"])
            rows.append(
                {
                    "event_type": event_type,
                    "field_name": field["name"],
                    "field_type": type_name,
                    "is_nullable": str(nullable).lower(),
                    "field_position": position,
                    "lifecycle": "current",
                }
            )
        for extra in removed.get(event_type, []):
            position += 1
            rows.append({**extra, "field_position": position})
    with fields_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} fields for {len(types)} event types to {fields_csv}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(REPO.parent / "shared/currents/schemas"))
