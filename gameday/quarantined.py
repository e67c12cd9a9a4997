"""The `redeploy_bad_image` game day: once Backstop rolled a bad image back, the pipeline
ships it again, and the cluster itself refuses it.

The bad release of APP is rolled back as in `bad_deploy`, which quarantines its image.
Then "the pipeline" re-deploys that image: the API server asks Backstop's admission webhook
(`/admission/validate`, docs/quarantine.md) and denies the update, with a message naming
the rollback and its Jira issue. Then a fixed image goes out, is admitted, and is healthy.

The API server calls webhooks over TLS only, and the game day's receiver speaks plain HTTP
to Alertmanager and the game day itself: so a second receiver, the same app on the same
Redis (a replica, as behind the Service of deploy/examples/admission.yaml), serves the
webhook over TLS with a throwaway CA (testbed/doubles/tls.py). The
ValidatingWebhookConfiguration names it by URL with that CA, asks only about APP's
Deployment in the game day's namespace (a label this scenario puts on the namespace,
since the API server labels namespaces with their name only from v1.21, and an
objectSelector on APP), so it never touches other workloads or other tests sharing the
cluster; `failurePolicy: Ignore`, as in production. Both go with the stack.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import requests
from kubernetes import client

from core.records import Decision
from gameday import rules
from gameday.scenarios import Result, Run, Scenario, _rollback_timeline, image, seconds
from gameday.stack import Service, Stack
from testbed.doubles.tls import make_certificates
from testbed.servers import Gunicorn

log = logging.getLogger("backstop.gameday")

NAME = "redeploy_bad_image"
APP = "tickets"
GOOD, BAD, FIXED = image(APP, "1.0.0"), image(APP, "1.1.0-errors"), image(APP, "1.1.1")
VALIDATE = "/admission/validate"
NAMESPACE_LABEL = "admission.gameday.backstop.io/namespace"
QUARANTINE_TIMEOUT = 30.0
# After the fix rolled out: the rate window and a scrape and an evaluation, so the error
# ratio Prometheus answers is the fixed pods' alone.
SETTLE = seconds(rules.RATE_WINDOW) + 2.0


class AdmissionWebhook:
    """A TLS replica of the receiver with the admission webhook on, and the
    ValidatingWebhookConfiguration that sends it APP's Deployment; stopped with the stack."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.name = f"backstop-gameday-{stack.namespace}"
        self.server: Gunicorn | None = None

    def start(self) -> None:
        """Serve the webhook over TLS, then register it with the API server."""
        self.stack.add(self)
        directory = self.stack.workdir / "admission"
        directory.mkdir(exist_ok=True)
        certs = make_certificates(directory)
        metrics = directory / "metrics"  # its own: gunicorn empties the directory at start
        metrics.mkdir(exist_ok=True)
        env = {
            **self.stack.backstop_env(),
            "BACKSTOP_ADMISSION": "true",
            "BACKSTOP_TLS_CERT": str(certs.cert),
            "BACKSTOP_TLS_KEY": str(certs.key),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
        self.server = Gunicorn(
            "receiver.app:create_app()",
            env,
            workers=1,
            log=directory / "receiver.log",
            ca=certs.ca,
        ).start()
        with self.stack.api_client() as api:
            self._label_namespace(api, self.stack.namespace)
            self._register(api, base64.b64encode(certs.ca.read_bytes()).decode())

    def _label_namespace(self, api: client.ApiClient, value: str | None) -> None:
        labels = {"metadata": {"labels": {NAMESPACE_LABEL: value}}}
        client.CoreV1Api(api).patch_namespace(self.stack.namespace, labels)

    def _register(self, api: client.ApiClient, ca_bundle: str) -> None:
        """Create the configuration; one left by an earlier run (a kept cluster) goes first."""
        admission = client.AdmissionregistrationV1Api(api)
        try:
            admission.delete_validating_webhook_configuration(self.name)
        except client.ApiException as error:
            if error.status != 404:
                raise
        admission.create_validating_webhook_configuration(self.configuration(ca_bundle))

    def configuration(self, ca_bundle: str) -> Any:
        """The ValidatingWebhookConfiguration: APP's Deployment in this namespace only (a
        dict, which the client sends as it is)."""
        assert self.server is not None, "started before it is registered"
        return {
            "metadata": {"name": self.name, "labels": {"app.kubernetes.io/name": "backstop"}},
            "webhooks": [
                {
                    "name": "quarantine.backstop.io",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Ignore",
                    "timeoutSeconds": 5,
                    "clientConfig": {"url": f"{self.server.url}{VALIDATE}", "caBundle": ca_bundle},
                    "rules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                            "scope": "Namespaced",
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: self.stack.namespace}},
                    "objectSelector": {"matchLabels": {"app": APP}},
                }
            ],
        }

    def stop(self) -> None:
        """Unregister first (the API server stops asking), then stop the replica."""
        try:
            with self.stack.api_client() as api:
                client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(
                    self.name
                )
                self._label_namespace(api, None)
        except Exception as error:  # the stack must go on stopping its other parts
            log.warning("could not unregister the admission webhook %s: %s", self.name, error)
        finally:
            if self.server is not None:
                self.server.stop()


def setup(run: Run) -> None:
    """The webhook first, then APP's good version (its create is asked about too)."""
    webhook = AdmissionWebhook(run.stack)
    webhook.start()
    run.parts[NAME] = webhook
    run.cluster.create(APP, GOOD)


def redeploy_bad_image(run: Run, result: Result) -> None:
    result.at("deploy the bad image", datetime.now(UTC))
    run.cluster.deploy(APP, BAD)
    rollback = run.finished_rollback(APP)
    decision = Decision.model_validate(run.stack.api("GET", f"/decisions/{rollback.decision_id}"))
    _rollback_timeline(run, result, rollback, decision)
    result.check("rolled back and verified", rollback.status == "verified", rollback.reason)
    result.check(
        "the good image runs again", run.cluster.image(APP) == GOOD, run.cluster.image(APP)
    )
    jira = run.filed(result, rollback).jira.ref
    quarantine = run.wait(
        lambda: _quarantine(run, rollback.id), "the bad revision's quarantine", QUARANTINE_TIMEOUT
    )
    result.at("bad revision quarantined", quarantine["quarantined_at"])
    result.check(
        "the bad image is quarantined", BAD in quarantine["images"], str(quarantine["images"])
    )

    revision = run.cluster.revision(APP)
    result.at("the pipeline re-deploys the bad image", datetime.now(UTC))
    denial = _deploy(run, BAD)
    result.check("the re-deploy is denied by the admission webhook", denial is not None)
    denial = denial or ""
    result.check(
        "the denial names the rollback and the Jira issue",
        f"rollback {rollback.id}" in denial and bool(jira) and jira in denial,
        denial,
    )
    result.check(
        "nothing rolled out",
        (run.cluster.image(APP), run.cluster.revision(APP)) == (GOOD, revision),
        f"{run.cluster.image(APP)} at revision {run.cluster.revision(APP)}",
    )

    result.at("a fixed image goes out", datetime.now(UTC))
    refused = _deploy(run, FIXED)
    result.check("the fixed image is admitted", refused is None, refused or "")
    run.cluster.wait_rolled_out(APP)
    result.at("fixed image rolled out", datetime.now(UTC))
    time.sleep(SETTLE)
    ratio = _error_ratio(run)
    result.check(
        "the fixed image is healthy",
        ratio is not None and ratio < rules.ERROR_RATIO_THRESHOLD,
        f"5xx ratio {ratio}",
    )
    result.check("exactly one rollback", len(run.rollbacks(APP)) == 1)


def _quarantine(run: Run, rollback_id: str) -> dict | None:
    found = run.stack.api("GET", "/quarantine?limit=1000")["quarantine"]
    return next((q for q in found if q["rollback_id"] == rollback_id), None)


def _deploy(run: Run, wanted: str) -> str | None:
    """Ship `wanted` as the pipeline would: None when admitted, else the API server's
    message (the webhook's denial)."""
    try:
        run.cluster.deploy(APP, wanted)
    except client.ApiException as error:
        if error.status != 403:
            raise
        return str(json.loads(error.body or "{}").get("message", ""))
    return None


def _error_ratio(run: Run) -> float | None:
    """APP's 5xx ratio now, as the kill switch computes it; None without data."""
    selector = f'namespace="{run.stack.namespace}",deployment="{APP}"'
    answer = requests.get(
        f"{run.stack.prometheus_url}/api/v1/query",
        params={"query": rules.error_ratio(selector)},
        timeout=10,
    )
    answer.raise_for_status()
    found = answer.json()["data"]["result"]
    return float(found[0]["value"][1]) if found else None


SCENARIO = Scenario(
    NAME,
    "the rolled-back image, shipped again, is denied by the admission webhook naming the "
    "rollback and the Jira issue; a fixed image is admitted and healthy",
    [Service(APP)],
    redeploy_bad_image,
    setup=setup,
)
