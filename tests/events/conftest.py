from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "events"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_obj(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(fixture_bytes(name))
    return obj


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()
