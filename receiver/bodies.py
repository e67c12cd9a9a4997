"""Request bodies: JSON only, validated by a pydantic model, errors as clear 400s."""

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

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
    """The request body validated as `model`; an empty body means `{}` when optional."""
    body = request.get_data(cache=False)
    if optional and not body.strip():
        return model()
    require_json()
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_payload(exc) from None
