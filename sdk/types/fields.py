"""Field types the request models share."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator


def _not_a_bool(value: Any) -> Any:
    # JSON `true` is not a count: pydantic's lax mode would read it as 1
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


Integer = Annotated[int, BeforeValidator(_not_a_bool)]
"""An int that refuses booleans (and still accepts the digit strings multipart fields carry)."""
