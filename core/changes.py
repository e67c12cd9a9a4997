"""What changed from the revision Backstop returns to (the target) to the bad revision: a
diff of their pod templates, for the responder who must find the cause.

`what_changed(target, bad)` compares, container by container (init containers too, matched
by name): the image, command and args, environment variables, `envFrom`, resources, probes
and volume mounts; and for the pod: its volumes (with the ConfigMaps, Secrets and claims
they name), service account, node selector and annotations. Each change is a dict:
`{"where": "container app", "field": "env DB_HOST", "before": ..., "after": ...}`
("pod" for the pod's own fields), None for a side that lacks it.

Secrets never appear: an environment variable's value is shown only when it is a literal
`value` and its name does not look like a credential (SECRET_NAMES); otherwise "(value
hidden)". A value from a Secret or ConfigMap shows where it comes from (`Secret db/password`),
never the value. Every value is a string of at most MAX_VALUE characters, and at most
MAX_CHANGES changes are listed (the count of the rest is said). Values come from the cluster:
whoever shows them escapes them for where they go.
"""

import json
import re

MAX_VALUE = 300
MAX_CHANGES = 100
SECRET_NAMES = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH|COOKIE|SIGN", re.I)
HIDDEN = "(value hidden)"
CONTAINER_FIELDS = ("image", "command", "args", "resources", "workingDir")
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
POD_FIELDS = ("serviceAccountName", "nodeSelector")


def what_changed(target: dict, bad: dict) -> dict:
    """The changes from `target`'s pod template to `bad`'s (both `spec.template` shapes),
    as {"changes": [...], "more": how many were left out}."""
    changes: list[dict] = []
    target_spec, bad_spec = target.get("spec") or {}, bad.get("spec") or {}
    for kind in ("initContainers", "containers"):
        before = _by_name(target_spec.get(kind))
        after = _by_name(bad_spec.get(kind))
        for name in _ordered(before, after):
            label = f"{'init container' if kind == 'initContainers' else 'container'} {name}"
            _container(changes, label, before.get(name), after.get(name))
    _volumes(changes, _by_name(target_spec.get("volumes")), _by_name(bad_spec.get("volumes")))
    for field in POD_FIELDS:
        _compare(changes, "pod", field, target_spec.get(field), bad_spec.get(field))
    before = (target.get("metadata") or {}).get("annotations") or {}
    after = (bad.get("metadata") or {}).get("annotations") or {}
    for name in _ordered(before, after):
        _compare(changes, "pod", f"annotation {name}", before.get(name), after.get(name))
    return {"changes": changes[:MAX_CHANGES], "more": max(0, len(changes) - MAX_CHANGES)}


def _container(changes: list[dict], where: str, before: dict | None, after: dict | None) -> None:
    if before is None or after is None:
        image = (after or before or {}).get("image")
        _add(
            changes,
            where,
            "container",
            None if before is None else image,
            None if after is None else image,
        )
        return
    for field in (*CONTAINER_FIELDS, *PROBES):
        _compare(changes, where, field, before.get(field), after.get(field))
    old_env, new_env = _by_name(before.get("env")), _by_name(after.get("env"))
    for name in _ordered(old_env, new_env):
        if old_env.get(name) != new_env.get(name):
            # A hidden value that changed shows as hidden on both sides: it changed.
            old, new = _env_value(old_env.get(name)), _env_value(new_env.get(name))
            _add(changes, where, f"env {name}", old, new)
    _compare(
        changes, where, "envFrom", _sources(before.get("envFrom")), _sources(after.get("envFrom"))
    )
    mounts = {m.get("mountPath"): m.get("name") for m in before.get("volumeMounts") or []}
    new_mounts = {m.get("mountPath"): m.get("name") for m in after.get("volumeMounts") or []}
    for path in _ordered(mounts, new_mounts):
        _compare(changes, where, f"mount {path}", mounts.get(path), new_mounts.get(path))


def _volumes(changes: list[dict], before: dict, after: dict) -> None:
    for name in _ordered(before, after):
        _compare(
            changes, "pod", f"volume {name}", _volume(before.get(name)), _volume(after.get(name))
        )


def _volume(volume: dict | None) -> str | None:
    """A volume as what it refers to: `ConfigMap app-config`, `Secret tls`, `claim data`."""
    if volume is None:
        return None
    for key, word, field in (
        ("configMap", "ConfigMap", "name"),
        ("secret", "Secret", "secretName"),
        ("persistentVolumeClaim", "claim", "claimName"),
    ):
        if key in volume:
            return f"{word} {(volume.get(key) or {}).get(field)}"
    return _text({k: v for k, v in volume.items() if k != "name"})


def _env_value(variable: dict | None) -> str | None:
    """What an environment variable shows: a literal non-secret value, or where it comes from."""
    if variable is None:
        return None
    if "valueFrom" in variable:
        source = variable.get("valueFrom") or {}
        for key, word in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            if key in source:
                ref = source.get(key) or {}
                return f"{word} {ref.get('name')}/{ref.get('key')}"
        return _text(source)
    if SECRET_NAMES.search(str(variable.get("name", ""))):
        return HIDDEN
    return _text(variable.get("value", ""))


def _sources(env_from: list | None) -> str | None:
    if not env_from:
        return None
    names = []
    for source in env_from:
        for key, word in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key in source:
                names.append(f"{word} {(source.get(key) or {}).get('name')}")
    return ", ".join(names)


def _compare(changes: list[dict], where: str, field: str, before, after) -> None:
    if before != after:
        _add(changes, where, field, _text(before), _text(after))


def _add(changes: list[dict], where: str, field: str, before, after) -> None:
    changes.append({"where": where, "field": _short(field), "before": before, "after": after})


def _text(value) -> str | None:
    """A value as a bounded string (JSON for structures), None for a missing one."""
    if value is None:
        return None
    shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return _short(shown)


def _short(text: str) -> str:
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _by_name(items: list | None) -> dict[str, dict]:
    return {str(item.get("name")): item for item in items or [] if isinstance(item, dict)}


def _ordered(before: dict, after: dict) -> list:
    """Keys of both, those of `before` first in their order, then the new ones."""
    return [*before, *(key for key in after if key not in before)]
