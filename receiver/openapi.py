"""The OpenAPI 3.1 document of Backstop's HTTP interface, built from the operation table
(receiver/operations.py) and the pydantic models the routes use, and served at
`GET /api/v1/openapi.json` with the API's credentials.

`python -m receiver.openapi --write docs/` writes docs/openapi.json and the API reference
page docs/openapi.md (receiver/apidoc.py); a test fails when the committed copies are stale.
"""

import argparse
import functools
import json
import re
import sys
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from receiver import api
from receiver.answers import ErrorEnvelope, Flat, Listing
from receiver.operations import API_READ, OPERATIONS, Media, Operation

bp = Blueprint("openapi", __name__, url_prefix="/api/v1")
bp.before_request(api.authenticate)

VERSION = "1"
REF = "#/components/schemas/{model}"
PATH_PARAMETER = re.compile(r"{(\w+)}")
DESCRIPTIONS = {
    200: "OK",
    202: "Accepted: the work is recorded or queued",
    400: "The request is malformed: its body (`invalid_json`, `invalid_payload`, naming the "
    "field) or its query (`invalid_query`, naming the parameter)",
    401: "Missing or invalid credentials (`WWW-Authenticate` says which scheme)",
    403: "Not allowed: a viewer acting, a session without its CSRF token (`csrf_failed`), "
    "or an invalid or expired signed link",
    404: "No such record, no such route, or the feature is off",
    409: "The action does not apply to the record as it is now (`conflict`)",
    412: "Unhealthy: the verdict, with every reason (`?verdict=body` answers 200 instead)",
    413: "The body is over BACKSTOP_MAX_BODY_BYTES, or a webhook brings more alerts than "
    "BACKSTOP_MAX_ALERTS_PER_WEBHOOK (`too_many_alerts`)",
    415: "The body is not `application/json`",
    503: "Redis (or, for a gate, Prometheus) is unavailable: retry later",
}
SECURITY_SCHEMES = {
    "apiToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "BACKSTOP_API_TOKEN. `X-Backstop-Actor: <name>` names the caller in "
        "the audit log (`api:<name>`).",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "backstop_session",
        "description": "A dashboard session (POST /login); a viewer may read, an operator act.",
    },
    "csrf": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "The session's CSRF token: every state change by a session needs it.",
    },
    "webhookToken": {"type": "http", "scheme": "bearer", "description": "BACKSTOP_WEBHOOK_TOKEN"},
    "webhookBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "BACKSTOP_WEBHOOK_USER (default `backstop`) and the webhook token. "
        "Grafana's webhook also needs its HMAC signature when BACKSTOP_GRAFANA_HMAC_SECRET is set.",
    },
    "gateToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "BACKSTOP_GATE_TOKEN (also as the basic-auth password), good for gates "
        "and the quarantine check only",
    },
    "admissionToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "BACKSTOP_ADMISSION_TOKEN; without one set, the webhook needs none",
    },
    "signedLink": {
        "type": "apiKey",
        "in": "query",
        "name": "sig",
        "description": "A signed, expiring snapshot link (`?exp=&sig=`), as tickets carry",
    },
}


def document_view():
    """This document: every operation of Backstop's HTTP interface."""
    return jsonify(document())


SELF = Operation(
    "get",
    "/api/v1/openapi.json",
    document_view,
    "API",
    API_READ,
    {200: Media("application/json", "the OpenAPI 3.1 document", {"type": "object"})},
)
bp.add_url_rule("/openapi.json", view_func=document_view, methods=["GET"])


def operations() -> tuple[Operation, ...]:
    """Every documented operation, this document's own included."""
    return (*OPERATIONS, SELF)


@functools.cache
def document() -> dict:
    """The OpenAPI 3.1 document (built once; it depends on code only)."""
    ops = operations()
    schemas = Schemas(ops)
    paths: dict[str, dict] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backstop",
            "version": VERSION,
            "description": "Alert webhooks in, rollback decisions and on-call actions out. "
            'Every error is the envelope `{"error": {"code", "message", '
            '"request_id"}}`; the `X-Request-Id` header carries the same id.',
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas.components, "securitySchemes": SECURITY_SCHEMES},
    }


class Schemas:
    """The JSON schemas of every model the operations name, as components."""

    def __init__(self, ops: tuple[Operation, ...]):
        wanted: list[tuple[type[BaseModel], Any]] = [(ErrorEnvelope, "serialization")]
        for op in ops:
            if op.body is not None:
                wanted.append((op.body, "validation"))
            for answer in op.answers.values():
                wanted += [(m, "serialization") for m in _models(answer)]
        unique = list(dict.fromkeys(wanted))
        self.refs, top = models_json_schema(unique, ref_template=REF)
        self.components: dict[str, Any] = dict(sorted(top.get("$defs", {}).items()))
        self.flats: dict[int, dict] = {}

    def ref(self, model: type[BaseModel], mode: str = "serialization") -> dict:
        return self.refs[(model, mode)]  # type: ignore[index]

    def answer(self, answer: Any) -> dict:
        """The schema of an answer: a model's reference, a merged Flat, a Listing."""
        if isinstance(answer, Listing):
            items = self.answer(answer.item)
            return {
                "type": "object",
                "properties": {answer.key: {"type": "array", "items": items}},
                "required": [answer.key],
            }
        if isinstance(answer, Flat):
            return self._flat(answer)
        return self.ref(answer)

    def _flat(self, flat: Flat) -> dict:
        """One object with every part's properties (allOf would not do: a part that
        forbids other properties would refuse the rest)."""
        name = flat.name
        if name not in self.components:
            properties: dict = {}
            required: list[str] = []
            for part in flat.parts:
                target = self.ref(part)["$ref"].rpartition("/")[2]
                schema = self.components[target]
                properties.update(schema.get("properties", {}))
                required += [r for r in schema.get("required", []) if r not in required]
            self.components[name] = {
                "type": "object",
                "title": name,
                "description": flat.description,
                "properties": properties,
                "required": required,
            }
        return {"$ref": REF.format(model=name)}


def _models(answer: Any) -> list[type[BaseModel]]:
    """The pydantic models an answer is made of."""
    if isinstance(answer, tuple):
        return [m for a in answer for m in _models(a)]
    if isinstance(answer, Listing):
        return _models(answer.item)
    if isinstance(answer, Flat):
        return list(answer.parts)
    if isinstance(answer, type) and issubclass(answer, BaseModel):
        return [answer]
    return []


def _operation(op: Operation, schemas: Schemas) -> dict:
    """One operation object."""
    summary, _, description = (op.view.__doc__ or "").strip().partition("\n")
    found: dict[str, Any] = {
        "operationId": _operation_id(op),
        "tags": [op.tag],
        "summary": " ".join(summary.split()),
        "security": op.security,
        "parameters": _path_parameters(op) + _query_parameters(op),
        "responses": _responses(op, schemas),
    }
    if description.strip():
        found["description"] = " ".join(description.split())
    if op.body is not None:
        found["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": schemas.ref(op.body, "validation")}},
        }
    if not found["parameters"]:
        del found["parameters"]
    return found


def _operation_id(op: Operation) -> str:
    shared = sum(1 for other in OPERATIONS if other.endpoint == op.endpoint) > 1
    return f"{op.endpoint}.{op.method}" if shared else op.endpoint


def _path_parameters(op: Operation) -> list[dict]:
    found = []
    for name in PATH_PARAMETER.findall(op.path):
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        if name == "ext":
            schema = {"type": "string", "enum": ["png", "csv"]}
        found.append({"name": name, "in": "path", "required": True, "schema": schema})
    return found


def _query_parameters(op: Operation) -> list[dict]:
    if op.query is None:
        return []
    schema = op.query.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema.get("properties", {}).items():
        prop = _not_null(prop)
        description = prop.pop("description", None)
        parameter = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        found.append(parameter)
    return found


def _not_null(schema: dict) -> dict:
    """A query parameter is absent or a string, never null: drop the null branch, the
    title and a null default."""
    schema = dict(schema)
    branches = schema.pop("anyOf", None)
    if branches:
        kept = [b for b in branches if b != {"type": "null"}]
        schema = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **schema}
    schema.pop("title", None)
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _responses(op: Operation, schemas: Schemas) -> dict:
    """Its answers, and the error envelope for every refusal the route can make."""
    found: dict[int, dict] = {}
    for status, answer in op.answers.items():
        found[status] = {"description": DESCRIPTIONS.get(status, "OK"), "content": {}}
        for part in answer if isinstance(answer, tuple) else (answer,):
            if isinstance(part, Media):
                found[status]["description"] = part.description
                found[status]["content"][part.media_type] = {"schema": part.schema}
            else:
                content = found[status]["content"].setdefault("application/json", {})
                schema = schemas.answer(part)
                if "schema" in content:
                    schema = {"anyOf": [content["schema"], schema]}
                content["schema"] = schema
    envelope = {"application/json": {"schema": schemas.ref(ErrorEnvelope)}}
    for status in _error_statuses(op):
        found.setdefault(status, {"description": DESCRIPTIONS[status], "content": envelope})
    return {str(status): found[status] for status in sorted(found)}


def _error_statuses(op: Operation) -> set[int]:
    """The refusals every route of its kind can make, and its own."""
    statuses = {503, *op.errors}
    if op.security:
        statuses.add(401)
    if any("csrf" in requirement for requirement in op.security):
        statuses.add(403)  # a viewer acting, or a session without its CSRF token
    if op.body is not None:
        statuses |= {400, 413, 415}
    if op.query is not None:
        statuses.add(400)
    if PATH_PARAMETER.search(op.path):
        statuses.add(404)
    return statuses


def main(argv: list[str] | None = None) -> int:
    """`python -m receiver.openapi --write docs/`: write openapi.json and openapi.md."""
    from receiver import apidoc

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write", metavar="DIR", type=Path, help="write both files there")
    args = parser.parse_args(argv)
    if args.write is None:
        json.dump(document(), sys.stdout, indent=2)
        return 0
    for name, text in apidoc.files(document()).items():
        (args.write / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.write / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
