"""The fields of the dashboard's HTML forms, read the same way by every form.

A form sends text; a wrong value is a 400 that names the field, never a 422 with a schema dump
(the JSON API, which takes typed bodies, gives those).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form

from server.web.deps import MAX_ID, is_number
from server.web.errors import RequestError

FormText = Annotated[str, Form()]
OptionalFormText = Annotated[str | None, Form()]


def optional_int(text: str | None, what: str) -> int | None:
    """A whole number from 0 to MAX_ID, or None for an empty field."""
    if text is None or not text.strip():
        return None
    if not is_number(text.strip()) or int(text) > MAX_ID:
        raise RequestError(f"{what} must be a whole number, not {text!r}")
    return int(text)


def required_int(text: str, what: str) -> int:
    value = optional_int(text, what)
    if value is None:
        raise RequestError(f"give {what}")
    return value


def optional_size(text: str | None) -> list[int] | None:
    """``"224"`` or ``"256,128"`` (height, width) as [height, width]."""
    if text is None or not text.strip():
        return None
    parts = text.replace(" ", "").replace("x", ",").split(",")
    if len(parts) not in (1, 2) or not all(is_number(part) and len(part) < 6 for part in parts):
        raise RequestError(f"the input size must be N or H,W in pixels, not {text!r}")
    values = [int(part) for part in parts]
    return values * 2 if len(values) == 1 else values


def optional_numbers(text: str | None, what: str) -> list[float] | None:
    """``"0.5,0.4,0.3"`` or one number, finite."""
    if text is None or not text.strip():
        return None
    try:
        values = [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise RequestError(f"{what} must be three numbers R,G,B or one, not {text!r}") from None
    if len(values) not in (1, 3) or any(v != v or abs(v) == float("inf") for v in values):
        raise RequestError(f"{what} must be three numbers R,G,B or one, not {text!r}")
    return values
