"""The admission webhook that keeps quarantined images out: AdmissionReviews over HTTP
(switched off, token, odd bodies, what is allowed), and on the real API server, which asks
the receiver under gunicorn over TLS before it creates or updates a Deployment."""

import base64
import json
import time

import pytest
from kubernetes import client

from config.policy import Policy
from core.records import Incident, Quarantine, utcnow
from core.store import Store
from receiver.app import create_app
from testbed.doubles.tls import make_certificates
from testbed.servers import Gunicorn
from tests import samples
from tests.workloads import deployment

pytestmark = pytest.mark.integration

VALIDATE = "/admission/validate"
BAD, FIXED = "shop/checkout:2", "shop/checkout:3"


def quarantine(**fields) -> Quarantine:
    """Checkout's revision 2, BAD, quarantined by rollback rb-1."""
    return samples.quarantine(**{"images": [BAD], **fields})


def review(image: str | None, *, old_image: str | None = None, kind="Deployment", op="CREATE"):
    def workload(name):
        containers = [{"name": "app", "image": name}]
        return {"spec": {"template": {"spec": {"containers": containers}}}}

    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "apps", "version": "v1", "kind": kind},
            "operation": op,
            "namespace": "shop",
            "name": "checkout",
            "object": workload(image) if image else None,
            "oldObject": workload(old_image) if old_image else None,
        },
    }


@pytest.fixture
def app(make_settings):
    made = create_app(make_settings(admission=True), policy=Policy())
    store = made.extensions["backstop"].store
    store.quarantine.add(quarantine())
    incident = Incident(id="rb-1", key="k")
    incident.jira.ref = "OPS-4"
    store.incidents.save(incident)
    return made


def ask(app, body, **headers):
    answer = app.test_client().post(VALIDATE, json=body, headers=headers)
    return answer.status_code, answer.get_json()


def test_a_quarantined_image_is_denied_naming_the_rollback_and_the_issue(app):
    status, body = ask(app, review(f"docker.io/{BAD}"))
    assert status == 200 and body["kind"] == "AdmissionReview"
    answer = body["response"]
    assert answer["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002" and answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert "rollback rb-1" in answer["status"]["message"] and "OPS-4" in answer["status"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        review(FIXED),  # a fix
        review(BAD, old_image=BAD, op="UPDATE"),  # already running it: a scale, a label
        review(BAD, kind="Pod"),  # not a workload
        review(BAD, op="DELETE"),
        review(None),
    ],
)
def test_everything_else_is_allowed(app, body):
    status, answer = ask(app, body)
    assert status == 200 and answer["response"]["allowed"] is True
    assert "status" not in answer["response"]


def test_an_update_that_brings_the_image_back_is_denied(app):
    _, body = ask(app, review(BAD, old_image=FIXED, op="UPDATE"))
    assert body["response"]["allowed"] is False


def test_a_released_quarantine_denies_nothing(app):
    store = app.extensions["backstop"].store

    store.quarantine.end("rb-1", "released", by="api:alice", reason="fixed", at=utcnow())
    assert ask(app, review(BAD))[1]["response"]["allowed"] is True


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"request": {}}', b'{"request": {"uid": 5}}']
)
def test_what_the_api_server_could_not_have_sent_is_a_400(app, body):
    answer = app.test_client().post(VALIDATE, data=body, content_type="application/json")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"].startswith("invalid")


def test_off_by_default_and_the_token_when_one_is_set(make_settings):
    off = create_app(make_settings(), policy=Policy())
    assert off.test_client().post(VALIDATE, json=review(BAD)).status_code == 404
    guarded = create_app(
        make_settings(admission=True, admission_token="admission-secret"), policy=Policy()
    )
    assert guarded.test_client().post(VALIDATE, json=review(BAD)).status_code == 401
    ok = guarded.test_client().post(
        VALIDATE, json=review(BAD), headers={"Authorization": "Bearer admission-secret"}
    )
    assert ok.status_code == 200


# -- on the real API server --------------------------------------------------------------


@pytest.fixture
def webhook(kube, kube_namespace, redis_url, redis_client, receiver_env, tmp_path):
    """The receiver under gunicorn over TLS with the admission webhook on, and a
    ValidatingWebhookConfiguration for Deployments in the test namespace only."""
    certs = make_certificates(tmp_path)
    env = {
        **receiver_env,
        "REDIS_URL": redis_url,
        "BACKSTOP_ADMISSION": "true",
        "BACKSTOP_TLS_CERT": str(certs.cert),
        "BACKSTOP_TLS_KEY": str(certs.key),
    }
    server = Gunicorn("receiver.app:create_app()", env, log=tmp_path / "gunicorn.log", ca=certs.ca)
    server.start()
    api = client.AdmissionregistrationV1Api(kube.api_client())
    name = f"backstop-quarantine-{kube_namespace}"
    # The API server labels namespaces with their name only from v1.21: label it here.
    labels = {"metadata": {"labels": {"backstop.io/admission-test": kube_namespace}}}
    client.CoreV1Api(kube.api_client()).patch_namespace(kube_namespace, labels)
    api.create_validating_webhook_configuration(
        {
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "quarantine.backstop.io",
                    "clientConfig": {
                        "url": f"{server.url}{VALIDATE}",
                        "caBundle": base64.b64encode(certs.ca.read_bytes()).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"backstop.io/admission-test": kube_namespace}
                    },
                    "failurePolicy": "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                }
            ],
        }
    )
    try:
        yield server, Store(redis_client, Policy())
    finally:
        api.delete_validating_webhook_configuration(name)
        server.stop()


def create(kube, namespace, name, image):
    apps = client.AppsV1Api(kube.api_client())
    apps.create_namespaced_deployment(namespace, deployment(name, image))


def test_the_api_server_denies_a_redeploy_of_the_quarantined_image(kube, kube_namespace, webhook):
    server, store = webhook
    store.quarantine.add(quarantine())
    # The API server reads webhook configurations from its cache: wait until it asks.
    deadline = time.monotonic() + 30
    while True:
        try:
            create(kube, kube_namespace, f"probe-{int(time.monotonic() * 1000)}", BAD)
        except client.ApiException as exc:
            assert exc.status == 403
            message = json.loads(exc.body)["message"]
            assert "quarantined" in message and "rollback rb-1" in message
            break
        assert time.monotonic() < deadline, "the API server never asked the webhook"
        time.sleep(0.5)
    create(kube, kube_namespace, "fixed", FIXED)  # a fix goes out

    store.quarantine.end("rb-1", "released", by="api:alice", reason="fixed", at=utcnow())
    create(kube, kube_namespace, "released", BAD)
    # Backstop down: failurePolicy Ignore lets deploys through.
    store.quarantine.add(quarantine(id="rb-2", rollback_id="rb-2"))
    server.stop()
    create(kube, kube_namespace, "backstop-down", BAD)
