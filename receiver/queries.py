"""Query strings as pydantic models: what the routes read from `?…`, and what the OpenAPI
document (receiver/openapi.py) says they read, from one definition.

`parse_query(Model)` validates `request.args` against a model; any problem is a 400
`invalid_query` naming the parameter. Unknown parameters are ignored, as browsers and
proxies add their own. A field typed as a list reads every value of a repeated parameter
(`?image=a&image=b`); any other field reads the first.
"""

from collections.abc import Iterable
from typing import Annotated, Any, TypeVar, get_origin

from flask import request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError, core_schema

from config.policy import field_path
from core import queues, registries
from core.models import KINDS
from core.vocabulary import OUTCOMES, REASONS, ROLLBACK_STATUSES
from receiver.errors import ApiError

Q = TypeVar("Q", bound=BaseModel)
MAX_LIMIT = 1000
MAX_IMAGES = 50
MAX_REFERENCE = 1000  # characters of one image reference
MAX_WORKLOAD = 800
# `?all=` as the routes have always read it, in any letter case.
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _limit(value: Any) -> Any:
    """Digits only (no sign, space or decimal point), 1..MAX_LIMIT."""
    digits = isinstance(value, str) and value.isascii() and value.isdigit()
    if digits and 1 <= int(value) <= MAX_LIMIT:
        return int(value)
    raise PydanticCustomError("limit", f"must be an integer from 1 to {MAX_LIMIT}")


def _boolean(value: Any) -> Any:
    """true/false/1/0 in any case; anything else a 400."""
    found = BOOLEANS.get(value.lower()) if isinstance(value, str) else None
    if found is None:
        raise PydanticCustomError("boolean", "must be true or false")
    return found


class OneOf:
    """Annotated metadata: a string that must be one of `choices` (an enum in the
    document), with the message the API has always given."""

    def __init__(self, choices: Iterable[str]):
        self.choices = tuple(choices)

    def check(self, value: str) -> str:
        if value not in self.choices:
            raise PydanticCustomError("one_of", f"must be one of {', '.join(self.choices)}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler):
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema, handler: GetJsonSchemaHandler):
        return {"type": "string", "enum": list(self.choices)}


Limit = Annotated[
    int,
    BeforeValidator(_limit),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
]
# Documented as the strings the route reads (any letter case); validated to a bool.
Flag = Annotated[
    bool,
    BeforeValidator(_boolean),
    WithJsonSchema({"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$"}),
]
Text = Annotated[str, Field(max_length=1000)]


def _visible(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be blank")
    return value


# An image reference: 1..MAX_REFERENCE characters, not only spaces.
Reference = Annotated[
    str, Field(min_length=1, max_length=MAX_REFERENCE, pattern=r"\S"), AfterValidator(_visible)
]


class Query(BaseModel):
    """Base for query models: unknown parameters are ignored."""

    model_config = ConfigDict(extra="ignore")


class LimitQuery(Query):
    """How many records, newest first."""

    limit: Limit = 50


class AlertsQuery(LimitQuery):
    status: Annotated[str, OneOf(("firing", "resolved"))] | None = None


class DecisionsQuery(LimitQuery):
    outcome: Annotated[str, OneOf(OUTCOMES)] | None = None
    reason: Annotated[str, OneOf(REASONS)] | None = None
    workload: Text | None = Field(None, description="cluster/namespace/Kind/name")


class DeploymentsQuery(LimitQuery):
    namespace: Text | None = None
    name: Text | None = None


class RollbacksQuery(LimitQuery):
    status: Annotated[str, OneOf(ROLLBACK_STATUSES)] | None = None


class AuditQuery(LimitQuery):
    limit: Limit = 100


class JobsQuery(LimitQuery):
    registry: Annotated[str, OneOf(registries.REGISTRIES)] = "failed"
    queue: Annotated[str, OneOf(queues.QUEUE_NAMES)] | None = None


class ListQuery(LimitQuery):
    """Those in force, or with `all=true` ended ones too."""

    all: Flag = Field(False, json_schema_extra={"default": "false"})


class CheckQuery(Query):
    """Images a pipeline is about to deploy, and optionally the workload."""

    image: list[Reference] = Field(min_length=1, max_length=MAX_IMAGES)
    workload: str | None = Field(
        None, min_length=1, max_length=MAX_WORKLOAD, description="namespace/kind/name"
    )


class GateQuery(Query):
    """Which workload the URL names, and how the verdict is answered."""

    kind: Annotated[str, OneOf(KINDS)] = "Deployment"
    cluster: Text | None = None
    service: Text | None = None
    verdict: Annotated[str, OneOf(("status", "body"))] = "status"


class SnapshotQuery(Query):
    """A signed link's expiry and signature (both, or neither and a credential)."""

    exp: Text | None = None
    sig: Text | None = None


def parse_query(model: type[Q]) -> Q:
    """`request.args` validated as `model`; a 400 invalid_query naming the parameter."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name not in request.args:
            continue
        many = get_origin(field.annotation) is list
        values[name] = request.args.getlist(name) if many else request.args.get(name)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        path = field_path(error["loc"])
        raise ApiError(400, "invalid_query", f"{path}: {error['msg']}") from None
