"""Request bodies: JSON only, validated by a pydantic model, errors as clear 400s.

Two limits werkzeug leaves open are closed here. A chunked body (no Content-Length) over
MAX_CONTENT_LENGTH was cut at the limit and read as if complete (a 202 or a 400 for what
was in fact an oversized request): CappedRequest answers 413 instead, for every route that
reads a body. And Python's JSON (pydantic's too) accepts `NaN` and `Infinity`, which no
other JSON reader does: a body holding one is a 400 naming the field.
"""

import math
from typing import IO, TypeVar, cast

import pydantic_core
from flask import Request, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_content_length

from config.policy import field_path
from receiver.errors import ApiError

M = TypeVar("M", bound=BaseModel)


def invalid_payload(exc: ValidationError) -> ApiError:
    """A 400 naming the first offending field, with every problem in details."""
    # Built once and without inputs, URLs or context: a body of thousands of bad items has
    # as many errors, and listing them in full costs far more than the validation did.
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    problems = [{"path": field_path(err["loc"]), "message": err["msg"]} for err in errors[:20]]
    first = problems[0]
    if errors[0]["type"] == "json_invalid":
        return ApiError(400, "invalid_json", first["message"])
    message = f"{first['path'] or 'body'}: {first['message']}"
    return ApiError(400, "invalid_payload", message, details=problems)


def require_json() -> None:
    """Only `application/json` bodies are accepted."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")


def parse_body(model: type[M], *, optional: bool = False) -> M:
    """The request body validated as `model`; no body at all means `{}` when optional.
    A body of only whitespace is not one: it is invalid JSON, a 400 (schemathesis)."""
    body = request.get_data(cache=False)
    if optional and not body:
        return model()
    require_json()
    try:
        reject_non_finite(body)
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_payload(exc) from None


def reject_non_finite(body: bytes) -> None:
    """Raise a ValidationError naming the first `NaN`/`Infinity` number in a JSON body."""
    if not may_spell_non_finite(body):
        return
    try:
        document = pydantic_core.from_json(body, allow_inf_nan=True)
    except ValueError:
        return  # not JSON: the model's own parse says so, with its message
    path = _non_finite(document, ())
    if path is not None:
        raise ValidationError.from_exception_data(
            "body",
            [{"type": "finite_number", "loc": path, "input": None}],
        )


def may_spell_non_finite(body: bytes) -> bool:
    """Whether `body` holds `NaN` or `Infinity` anywhere (in a string, most likely)."""
    # Both literals are spelt out in a body that holds one: testing for that spares nearly
    # every body a second parse. A one-byte test first (memchr, ~0.1 µs for 5 KiB): the
    # substring tests take ~2.5 µs each, and a webhook rarely holds a capital N or I.
    return (b"N" in body and b"NaN" in body) or (b"I" in body and b"Infinity" in body)


def _non_finite(value, path: tuple) -> tuple | None:
    """The path of the first non-finite number in a parsed JSON document, if any."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items = value.items() if isinstance(value, dict) else enumerate(value)
    if isinstance(value, dict | list):
        for key, item in items:
            if isinstance(item, float | dict | list):
                found = _non_finite(item, (*path, key))
                if found is not None:
                    return found
    return None


class _CappedStream(LimitedStream):
    """A body stream capped at MAX_CONTENT_LENGTH that refuses a longer body (413) where
    werkzeug's stops at the limit and returns the first MAX_CONTENT_LENGTH bytes as if
    they were all."""

    def readinto(self, buffer) -> int | None:
        """Read as LimitedStream does; at the limit, a byte more means the body is too long."""
        count = super().readinto(buffer)
        if self.is_exhausted and self._stream.read(1):
            raise RequestEntityTooLarge()
        return count


class CappedRequest(Request):
    """Flask's request, whose body stream answers 413 for any body over the limit."""

    @cached_property
    def stream(self) -> IO[bytes]:
        """The input stream, as werkzeug makes it, except where the server terminates the
        body (`wsgi.input_terminated`: gunicorn, for chunked bodies too): there a body of
        unknown length is a _CappedStream, and one of a known length, checked against the
        limit just before, is the server's own stream, which ends where the body does."""
        limit = self.max_content_length
        # Checks Content-Length against the limit (413) and refuses a shallow request.
        stream = super().stream
        if limit is None or "wsgi.input_terminated" not in self.environ:
            return stream
        if get_content_length(self.environ) is not None:
            # werkzeug's LimitedStream around it would only count to the limit the length
            # is within: reading through it took a webhook three times as long.
            return cast(IO[bytes], self.environ["wsgi.input"])
        # Cast as werkzeug's get_input_stream casts its own LimitedStream (a RawIOBase).
        return cast(IO[bytes], _CappedStream(self.environ["wsgi.input"], limit, is_max=True))
