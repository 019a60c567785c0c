"""IR to JSON (``build --to json``): every layer, its inputs, its ops and their costs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..ir import IR


def emit(ir: IR, state: Mapping[str, Any] | None, options: Mapping[str, Any]) -> str:
    return json.dumps(ir.to_json(), indent=1) + "\n"
