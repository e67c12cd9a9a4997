"""What changed between two pod templates (core/changes.py): every area the responder
needs, secrets never shown, sizes bounded."""

from core.changes import HIDDEN, MAX_CHANGES, MAX_VALUE, what_changed


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
    assert what_changed(same, same) == {"changes": [], "more": 0}


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
    assert what_changed({}, {}) == {"changes": [], "more": 0}
    odd = {"spec": {"containers": [None, "x", {"name": "app"}], "volumes": None}}
    assert what_changed(odd, {"spec": {}})["changes"][0]["field"] == "container"
