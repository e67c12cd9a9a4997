"""The API reference page (docs/openapi.md) and the JSON copy (docs/openapi.json), written
from the OpenAPI document by `python -m receiver.openapi --write docs/`.

The page lists every operation with its credentials, parameters, body and answers, and
opens with curl examples of the on-call actions. tests/integration/test_openapi.py fails
when the committed files differ from what this writes.
"""

import json

HEADER = """# API reference

<!-- Generated from the OpenAPI document by `python -m receiver.openapi --write docs/`;
do not edit: change the routes' models or receiver/operations.py, and regenerate. -->

Backstop serves this document as OpenAPI 3.1 at `GET /api/v1/openapi.json` (API token or
session), and a copy is [openapi.json](openapi.json): generate a client from it, or read
it with any OpenAPI viewer. [HTTP interface](api.md) explains the behaviour behind it:
credentials, limits, what happens to an alert.

## On-call actions with curl

Every action needs the API token (or an operator's dashboard session with its CSRF
token), is audited with who did it and why, and answers the error envelope on failure.
`X-Backstop-Actor` names you in the audit log.

```sh
export BACKSTOP=https://backstop.example.com
export AUTH="Authorization: Bearer $BACKSTOP_API_TOKEN"
export WHO="X-Backstop-Actor: $USER"

# Pause automation globally, or for one workload (a reason is required)
curl -sf -X POST "$BACKSTOP/api/v1/automation/pause" -H "$AUTH" -H "$WHO" \\
  -H 'Content-Type: application/json' \\
  -d '{"reason": "incident 1234: hands off", "workload": {"namespace": "shop", "name": "checkout"}}'

# Resume it
curl -sf -X POST "$BACKSTOP/api/v1/automation/resume" -H "$AUTH" -H "$WHO" \\
  -H 'Content-Type: application/json' \\
  -d '{"reason": "incident 1234 over", "workload": {"namespace": "shop", "name": "checkout"}}'

# Decisions waiting for a human, then approve or deny one
curl -sf "$BACKSTOP/api/v1/decisions?outcome=awaiting_approval" -H "$AUTH"
curl -sf -X POST "$BACKSTOP/api/v1/decisions/$DECISION_ID/approve" -H "$AUTH" -H "$WHO" \\
  -H 'Content-Type: application/json' -d '{"reason": "error rate doubled after 1.4.0"}'
curl -sf -X POST "$BACKSTOP/api/v1/decisions/$DECISION_ID/deny" -H "$AUTH" -H "$WHO" \\
  -H 'Content-Type: application/json' -d '{"reason": "the alert is a dependency outage"}'

# Run a blocked, failed or verification-failed rollback again
curl -sf -X POST "$BACKSTOP/api/v1/rollbacks/$ROLLBACK_ID/retry" -H "$AUTH" -H "$WHO"

# Release a quarantined revision, so its images may deploy again (a reason is required)
curl -sf "$BACKSTOP/api/v1/quarantine" -H "$AUTH"
curl -sf -X POST "$BACKSTOP/api/v1/quarantine/$QUARANTINE_ID/release" -H "$AUTH" -H "$WHO" \\
  -H 'Content-Type: application/json' -d '{"reason": "root cause fixed in 1.4.1"}'
```

An action that does not apply to the record as it is now (approving a decision that no
longer awaits approval, releasing an ended quarantine) answers `409 conflict`.
"""

SCHEMES = {
    "apiToken": "API token",
    "session": "session",
    "csrf": "CSRF token",
    "webhookToken": "webhook token",
    "webhookBasic": "webhook basic auth",
    "gateToken": "gate token",
    "admissionToken": "admission token",
    "signedLink": "signed link",
}


def files(document: dict) -> dict[str, str]:
    """{file name: content} of what `--write` writes."""
    return {
        "openapi.json": json.dumps(document, indent=2, ensure_ascii=False) + "\n",
        "openapi.md": page(document),
    }


def page(document: dict) -> str:
    """The API reference page: the curl examples, then every operation by tag."""
    lines = [HEADER]
    by_tag: dict[str, list[tuple[str, str, dict]]] = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append((path, method, op))
    for tag, ops in by_tag.items():
        lines.append(f"## {tag}\n")
        for path, method, op in ops:
            lines += _operation(path, method, op)
    return "\n".join(lines).rstrip() + "\n"


def _operation(path: str, method: str, op: dict) -> list[str]:
    lines = [f"### `{method.upper()} {path}`\n", op["summary"] + "\n"]
    if op.get("description"):
        lines.append(op["description"] + "\n")
    lines.append(f"- **Credentials:** {_security(op['security'])}")
    for parameter in op.get("parameters", []):
        lines.append(
            f"- **{parameter['in'].title()}** `{parameter['name']}`: {_parameter(parameter)}"
        )
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        need = "required" if op["requestBody"]["required"] else "optional"
        lines.append(f"- **Body** ({need}, JSON): {_schema_name(schema)}")
    answers = ", ".join(
        f"`{status}` {_answer(response)}" for status, response in op["responses"].items()
    )
    lines.append(f"- **Answers:** {answers}\n")
    return lines


def _security(requirements: list[dict]) -> str:
    if not requirements:
        return "none"
    ways = [" + ".join(SCHEMES[name] for name in r) or "none" for r in requirements]
    return ", or ".join(ways)


def _parameter(parameter: dict) -> str:
    schema = parameter["schema"]
    parts = ["required" if parameter["required"] else "optional"]
    if "enum" in schema:
        parts.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    elif schema.get("type") == "array":
        parts.append(f"repeatable, {schema.get('minItems', 0)} to {schema.get('maxItems')}")
    elif schema.get("type") == "integer":
        parts.append(f"integer {schema.get('minimum')} to {schema.get('maximum')}")
    if "default" in schema:
        parts.append(f"default `{schema['default']}`")
    if parameter.get("description"):
        parts.append(parameter["description"])
    return "; ".join(parts)


def _answer(response: dict) -> str:
    content = response.get("content", {})
    if "application/json" in content:
        return _schema_name(content["application/json"]["schema"])
    return " or ".join(f"`{media}`" for media in content) or ""


def _schema_name(schema: dict) -> str:
    """`Name` for a reference, the names of anyOf branches, or "object"."""
    if "$ref" in schema:
        return "`" + schema["$ref"].rpartition("/")[2] + "`"
    if "anyOf" in schema:
        return " or ".join(_schema_name(branch) for branch in schema["anyOf"])
    if schema.get("type") == "object" and "properties" in schema:
        key, value = next(iter(schema["properties"].items()))
        if value.get("type") == "array":
            return "`{" + key + ": [" + _schema_name(value["items"]).strip("`") + "]}`"
    return "object"
