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

`configs` lists the ConfigMaps and Secrets either template names (volumes, projected
volumes, `envFrom`, `env[].valueFrom`), with the revision that uses each: `bad`, `target`
or `both`. Secrets are only names. A ConfigMap is not part of a revision, and nothing
records its version when a revision rolls out, so its `resourceVersion` is read from the
cluster when the evidence is captured (`read_config_map`, before the revert), with its
creation time and its newest `managedFields` time (whole seconds). Against the moment the
bad rollout began, `since_rollout` says only what those times prove:

- `created_after`: created in a later second than the bad rollout began;
- `changed_after`: a managedFields entry was stamped in a later second: some writer added,
  took or dropped fields of it since (also listed as a change: the alert may come from
  the ConfigMap, and a rollback does not revert it);
- `unknown`: nothing proves a write since. Not "unchanged": the API server does not
  restamp a manager's entry when it only changes a value it already owned (seen on
  v1.20), so a change of a value can leave no trace in the times;
- `missing` (not found), `unreadable` (the cluster refused or failed the read).
"""

import json
import re
from collections.abc import Callable
from datetime import datetime

from core.errors import PermanentError, TransientError

MAX_VALUE = 300
MAX_CHANGES = 100
SECRET_NAMES = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH|COOKIE|SIGN", re.I)
HIDDEN = "(value hidden)"
CONTAINER_FIELDS = ("image", "command", "args", "resources", "workingDir")
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
POD_FIELDS = ("serviceAccountName", "nodeSelector")
MAX_CONFIGS = 50  # ConfigMaps and Secrets listed (and ConfigMaps read) per rollback
ReadConfigMap = Callable[[str], dict | None]  # name -> the ConfigMap, None when not found


def what_changed(
    target: dict,
    bad: dict,
    *,
    read_config_map: ReadConfigMap | None = None,
    rolled_out_at: datetime | None = None,
) -> dict:
    """The changes from `target`'s pod template to `bad`'s (both `spec.template` shapes),
    as {"changes": [...], "more": how many were left out, "configs": [...]}; each
    ConfigMap read with `read_config_map` when given, judged against `rolled_out_at` (when
    the bad rollout began)."""
    found = _template_changes(target, bad)
    configs = references(target, bad)
    if read_config_map is not None:
        configs = [
            _versioned(ref, read_config_map, rolled_out_at) if ref["kind"] == "ConfigMap" else ref
            for ref in configs
        ]
    found["changes"] += [change for ref in configs if (change := _config_change(ref))]
    found["configs"] = configs
    return found


def _template_changes(target: dict, bad: dict) -> dict:
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


# -- ConfigMaps and Secrets ------------------------------------------------------------------


def references(target: dict, bad: dict) -> list[dict]:
    """The ConfigMaps and Secrets each template names, the bad revision's first:
    [{"kind", "name", "used_by": "bad" | "target" | "both"}], at most MAX_CONFIGS."""
    used_by_bad, used_by_target = _named(bad), _named(target)
    found = []
    for ref in _ordered(used_by_bad, used_by_target):
        used = "both" if ref in used_by_bad and ref in used_by_target else None
        used = used or ("bad" if ref in used_by_bad else "target")
        found.append({"kind": ref[0], "name": _short(ref[1]), "used_by": used})
    return found[:MAX_CONFIGS]


def _named(template: dict) -> dict[tuple[str, str], None]:
    """(kind, name) of every ConfigMap and Secret one pod template uses, in order."""
    spec = template.get("spec") or {}
    found: dict[tuple[str, str], None] = {}

    def add(kind: str, name) -> None:
        if isinstance(name, str) and name:
            found[(kind, name)] = None

    for volume in _dicts(spec.get("volumes")):
        add("ConfigMap", (volume.get("configMap") or {}).get("name"))
        add("Secret", (volume.get("secret") or {}).get("secretName"))
        for source in _dicts((volume.get("projected") or {}).get("sources")):
            add("ConfigMap", (source.get("configMap") or {}).get("name"))
            add("Secret", (source.get("secret") or {}).get("name"))
    for container in _dicts(spec.get("initContainers")) + _dicts(spec.get("containers")):
        for source in _dicts(container.get("envFrom")):
            add("ConfigMap", (source.get("configMapRef") or {}).get("name"))
            add("Secret", (source.get("secretRef") or {}).get("name"))
        for variable in _dicts(container.get("env")):
            value_from = variable.get("valueFrom") or {}
            if isinstance(value_from, dict):
                add("ConfigMap", (value_from.get("configMapKeyRef") or {}).get("name"))
                add("Secret", (value_from.get("secretKeyRef") or {}).get("name"))
    return found


def _dicts(items) -> list[dict]:
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _versioned(ref: dict, read: ReadConfigMap, rolled_out_at: datetime | None) -> dict:
    """A ConfigMap reference with its resourceVersion, creation and last write, and what
    they prove against the bad rollout's start."""
    try:
        found = read(ref["name"])
    except (PermanentError, TransientError) as exc:
        # The diff is evidence, not a step: a refused read is said, never fatal.
        return {**ref, "since_rollout": "unreadable", "error": _short(str(exc))}
    if found is None:
        return {**ref, "since_rollout": "missing"}
    metadata = found.get("metadata") or {}
    created = _time(metadata.get("creationTimestamp"))
    writes = [_time(e.get("time")) for e in _dicts(metadata.get("managedFields"))]
    written = max((w for w in writes if w is not None), default=None)
    version = metadata.get("resourceVersion")
    return {
        **ref,
        "resource_version": _short(version) if isinstance(version, str) else None,
        "created_at": created.isoformat() if created else None,
        "written_at": written.isoformat() if written else None,
        "since_rollout": _since(created, written, rolled_out_at),
    }


def _since(created: datetime | None, written: datetime | None, began: datetime | None) -> str:
    """What the API server's whole-second times prove about the ConfigMap since `began`:
    a time T stands for a moment in [T, T + 1 s), so only T > `began` is after it."""
    if began is None:
        return "unknown"
    if created is not None and created > began:
        return "created_after"
    if written is not None and written > began:
        return "changed_after"
    return "unknown"


def _config_change(ref: dict) -> dict | None:
    """The change a ConfigMap written after the bad rollout began makes to the list."""
    since = ref.get("since_rollout")
    if since not in ("created_after", "changed_after"):
        return None
    when = ref.get("created_at") if since == "created_after" else ref.get("written_at")
    return {
        "where": f"ConfigMap {ref['name']}",
        "field": f"{since.split('_')[0]} after the bad rollout began",
        "before": None,
        "after": _short(f"resourceVersion {ref.get('resource_version')}, at {when}"),
    }


def _time(value) -> datetime | None:
    """An API server timestamp (RFC 3339, `Z`), None for anything else."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
