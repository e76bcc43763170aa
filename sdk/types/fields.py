"""Field types the request models share."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator


def _not_a_bool(value: Any) -> Any:
    # JSON `true` is not a count: pydantic's lax mode would read it as 1
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


NotABool = BeforeValidator(_not_a_bool)
"""Refuse booleans where an int is expected. Bounds go before it, `Annotated[int, Field(ge=1),
NotABool]`: bounds given after it on an optional field (`Integer | None = Field(None, ge=1)`)
are still enforced but reach the JSON schema as `ge`/`le`, keywords JSON Schema does not have,
so the published schema (and the clients and fuzzers that read it) would not know them."""

Integer = Annotated[int, NotABool]
"""An int that refuses booleans (and still accepts the digit strings multipart fields carry)."""
