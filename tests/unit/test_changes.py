"""What changed between two pod templates (core/changes.py): every area the responder
needs, secrets never shown, sizes bounded."""

from datetime import UTC, datetime

import pytest

from core.changes import HIDDEN, MAX_CHANGES, MAX_VALUE, references, what_changed
from core.errors import PermanentError


def template(containers, volumes=None, annotations=None, **spec) -> dict:
    return {
        "metadata": {"annotations": annotations or {}},
        "spec": {"containers": containers, "volumes": volumes or [], **spec},
    }


def app(**fields) -> dict:
    return {"name": "app", "image": "shop/checkout:1", **fields}


def changed(target, bad) -> dict[tuple[str, str], tuple]:
    found = what_changed(target, bad)
    assert found["more"] == 0
    return {(c["where"], c["field"]): (c["before"], c["after"]) for c in found["changes"]}


def test_identical_templates_changed_nothing():
    same = template([app(env=[{"name": "A", "value": "1"}])])
    assert what_changed(same, same) == {"changes": [], "more": 0, "configs": []}


def test_image_command_args_resources_and_probes_are_compared():
    before = template([app(args=["--fast"], resources={"limits": {"memory": "256Mi"}})])
    after = template(
        [
            app(
                image="shop/checkout:2",
                args=["--fast", "--cache=off"],
                resources={"limits": {"memory": "128Mi"}},
                readinessProbe={"httpGet": {"path": "/ready", "port": 8080}},
            )
        ]
    )
    found = changed(before, after)
    assert found[("container app", "image")] == ("shop/checkout:1", "shop/checkout:2")
    assert found[("container app", "args")] == ('["--fast"]', '["--fast", "--cache=off"]')
    assert found[("container app", "resources")] == (
        '{"limits": {"memory": "256Mi"}}',
        '{"limits": {"memory": "128Mi"}}',
    )
    assert found[("container app", "readinessProbe")][0] is None


def test_literal_values_show_and_secrets_never_do():
    before = template(
        [
            app(
                env=[
                    {"name": "DB_HOST", "value": "db-1"},
                    {"name": "DB_PASSWORD", "value": "hunter2"},
                    {"name": "API", "valueFrom": {"secretKeyRef": {"name": "api", "key": "t"}}},
                ]
            )
        ]
    )
    after = template(
        [
            app(
                env=[
                    {"name": "DB_HOST", "value": "db-2"},
                    {"name": "DB_PASSWORD", "value": "hunter3"},
                    {"name": "API", "valueFrom": {"secretKeyRef": {"name": "api2", "key": "t"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "m"}}},
                ]
            )
        ]
    )
    found = changed(before, after)
    assert found[("container app", "env DB_HOST")] == ("db-1", "db-2")
    assert found[("container app", "env DB_PASSWORD")] == (HIDDEN, HIDDEN)
    assert found[("container app", "env API")] == ("Secret api/t", "Secret api2/t")
    assert found[("container app", "env MODE")] == (None, "ConfigMap cfg/m")
    assert "hunter" not in str(what_changed(before, after))


def test_volumes_name_what_they_mount_and_env_from_its_sources():
    before = template(
        [app(envFrom=[{"configMapRef": {"name": "settings"}}])],
        volumes=[{"name": "config", "configMap": {"name": "app-config-v1"}}],
    )
    after = template(
        [app(envFrom=[{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "keys"}}])],
        volumes=[
            {"name": "config", "configMap": {"name": "app-config-v2"}},
            {"name": "tls", "secret": {"secretName": "tls"}},
        ],
    )
    found = changed(before, after)
    assert found[("pod", "volume config")] == ("ConfigMap app-config-v1", "ConfigMap app-config-v2")
    assert found[("pod", "volume tls")] == (None, "Secret tls")
    assert found[("container app", "envFrom")] == (
        "ConfigMap settings",
        "ConfigMap settings, Secret keys",
    )


def test_added_containers_pod_fields_and_annotations():
    before = template([app()], annotations={"kubernetes.io/change-cause": "v1"})
    after = template(
        [app(), {"name": "proxy", "image": "envoy:1.30"}],
        annotations={"kubernetes.io/change-cause": "v2"},
        serviceAccountName="checkout-v2",
        initContainers=[{"name": "migrate", "image": "shop/migrate:2"}],
    )
    found = changed(before, after)
    assert found[("container proxy", "container")] == (None, "envoy:1.30")
    assert found[("init container migrate", "container")] == (None, "shop/migrate:2")
    assert found[("pod", "serviceAccountName")] == (None, "checkout-v2")
    assert found[("pod", "annotation kubernetes.io/change-cause")] == ("v1", "v2")


def test_sizes_are_bounded():
    long = "x" * 10_000
    env = [{"name": f"V{i}", "value": f"{i}"} for i in range(MAX_CHANGES + 20)]
    found = what_changed(template([app()]), template([app(image=long, env=env)]))
    assert len(found["changes"]) == MAX_CHANGES and found["more"] == 21
    assert all(len(c["after"] or "") <= MAX_VALUE for c in found["changes"])


def test_odd_templates_do_not_break_it():
    assert what_changed({}, {}) == {"changes": [], "more": 0, "configs": []}
    odd = {"spec": {"containers": [None, "x", {"name": "app"}], "volumes": None}}
    assert what_changed(odd, {"spec": {}})["changes"][0]["field"] == "container"


# -- ConfigMaps and Secrets ------------------------------------------------------------------

BEGAN = datetime(2026, 11, 1, 10, 0, 30, 500_000, tzinfo=UTC)  # the bad rollout began


def uses_configs(config: str, secret: str) -> dict:
    """A template naming a ConfigMap and a Secret in every way a pod can."""
    return template(
        [
            app(
                envFrom=[
                    {"configMapRef": {"name": f"{config}-env"}},
                    {"secretRef": {"name": secret}},
                ],
                env=[
                    {
                        "name": "MODE",
                        "valueFrom": {"configMapKeyRef": {"name": config, "key": "m"}},
                    },
                    {
                        "name": "DB",
                        "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                    },
                ],
            )
        ],
        volumes=[
            {"name": "config", "configMap": {"name": config}},
            {"name": "tls", "secret": {"secretName": "tls"}},
            {
                "name": "all",
                "projected": {
                    "sources": [{"configMap": {"name": "shared"}}, {"secret": {"name": "token"}}]
                },
            },
        ],
    )


def config_map(name: str, *, created: str, written: list[str], version: str = "4711") -> dict:
    return {
        "metadata": {
            "name": name,
            "resourceVersion": version,
            "creationTimestamp": created,
            "managedFields": [
                {"manager": m, "time": t} for m, t in zip("ab", written, strict=False)
            ],
        },
        "data": {"password": "never shown"},
    }


def test_every_configmap_and_secret_either_revision_names_is_listed_by_name():
    found = references(uses_configs("app-v1", "creds-v1"), uses_configs("app-v2", "creds-v1"))
    listed = {(r["kind"], r["name"]): r["used_by"] for r in found}
    assert listed == {
        ("ConfigMap", "app-v2"): "bad",
        ("ConfigMap", "app-v2-env"): "bad",
        ("ConfigMap", "app-v1"): "target",
        ("ConfigMap", "app-v1-env"): "target",
        ("ConfigMap", "shared"): "both",
        ("Secret", "creds-v1"): "both",
        ("Secret", "db"): "both",
        ("Secret", "tls"): "both",
        ("Secret", "token"): "both",
    }
    assert [r["name"] for r in found][:2] == ["app-v2", "tls"]  # the bad one's first, volumes first


@pytest.mark.parametrize(
    ("created", "written", "since"),
    [
        ("2026-11-01T10:00:31Z", ["2026-11-01T10:00:31Z"], "created_after"),
        ("2026-11-01T09:00:00Z", ["2026-11-01T09:00:00Z", "2026-11-01T10:00:31Z"], "changed_after"),
        # No later stamp proves no change: a value change need not restamp its entry.
        ("2026-11-01T09:00:00Z", ["2026-11-01T10:00:29Z"], "unknown"),
        # Within the rollout's second: the API server's times cannot tell before from after.
        ("2026-11-01T09:00:00Z", ["2026-11-01T10:00:30Z"], "unknown"),
        ("2026-11-01T09:00:00Z", [], "unknown"),
    ],
)
def test_a_configmaps_version_is_judged_only_as_far_as_its_times_prove(created, written, since):
    same = uses_configs("app", "creds")
    read = {"app": config_map("app", created=created, written=written)}
    found = what_changed(same, same, read_config_map=read.get, rolled_out_at=BEGAN)
    [app_config] = [c for c in found["configs"] if c["name"] == "app"]
    assert app_config["since_rollout"] == since
    assert app_config["resource_version"] == "4711" and app_config["created_at"]
    rows = [c for c in found["changes"] if c["where"] == "ConfigMap app"]
    if since in ("created_after", "changed_after"):
        when = app_config["created_at" if since == "created_after" else "written_at"]
        word = since.split("_")[0]
        assert rows == [
            {
                "where": "ConfigMap app",
                "field": f"{word} after the bad rollout began",
                "before": None,
                "after": f"resourceVersion 4711, at {when}",
            }
        ]
    else:
        assert rows == []
    assert "never shown" not in str(found)


def test_missing_unreadable_and_without_a_rollout_time_claim_nothing():
    def read(name):
        if name == "broken":
            raise PermanentError("forbidden: configmaps is forbidden")
        if name == "app":
            return config_map("app", created="2026-11-01T11:00:00Z", written=[])
        return None

    target = template([app()], volumes=[{"name": "c", "configMap": {"name": "broken"}}])
    bad = uses_configs("app", "creds")
    found = what_changed(target, bad, read_config_map=read)
    by_name = {c["name"]: c for c in found["configs"]}
    assert by_name["broken"]["since_rollout"] == "unreadable"
    assert "forbidden" in by_name["broken"]["error"]
    assert by_name["shared"]["since_rollout"] == "missing"
    assert by_name["app"]["since_rollout"] == "unknown"  # no rollout time to judge by
    assert by_name["creds"] == {"kind": "Secret", "name": "creds", "used_by": "bad"}
    assert not [c for c in found["changes"] if c["where"].startswith("ConfigMap")]


def test_secrets_are_never_read_and_odd_references_are_skipped():
    asked = []
    odd = template(
        [app(envFrom=[{"configMapRef": None}, "x", {"secretRef": {"name": 7}}], env="x")],
        volumes=[{"name": "v", "configMap": {}}, {"name": "p", "projected": {"sources": "x"}}],
    )
    found = what_changed(odd, uses_configs("app", "creds"), read_config_map=asked.append)
    assert {c["kind"] for c in found["configs"]} == {"ConfigMap", "Secret"}
    assert sorted(asked) == ["app", "app-env", "shared"]
