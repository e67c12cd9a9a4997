"""Owner marks on a workload: which tool reconciles it, read from its metadata."""

import pytest

from core.models import Workload
from core.owners import Claim, claims, tracking_claim

CHECKOUT = Workload("default", "shop", "Deployment", "checkout")


def meta(labels=None, annotations=None) -> dict:
    return {"labels": labels or {}, "annotations": annotations or {}}


def test_an_argocd_tracking_id_naming_this_object_is_certain():
    found = claims(
        meta(annotations={"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/checkout"}),
        CHECKOUT,
    )
    assert found == [Claim("argocd", "argocd", "shop", "annotation argocd.argoproj.io/tracking-id")]


def test_an_application_outside_argocds_namespace_is_named_namespace_underscore_name():
    found = tracking_claim("team-a_shop:apps/Deployment:shop/checkout", CHECKOUT, "argocd")
    assert (found.namespace, found.name) == ("team-a", "shop")


@pytest.mark.parametrize(
    "value",
    [
        "shop:apps/Deployment:shop/cart",  # copied from another object
        "shop:apps/StatefulSet:shop/checkout",
        "shop:apps/Deployment:other/checkout",
        "shop:/Deployment:shop/checkout",  # wrong group
        "garbage",
        "",
    ],
)
def test_a_tracking_id_that_names_another_object_or_is_malformed_claims_nothing(value):
    assert tracking_claim(value, CHECKOUT, "argocd") is None


def test_flux_labels_name_the_kustomization_and_its_namespace():
    labels = {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    [found] = claims(meta(labels=labels), CHECKOUT)
    assert (found.kind, found.namespace, found.name, found.certain) == (
        "kustomization",
        "flux-system",
        "apps",
        True,
    )


def test_a_helmrelease_wins_over_the_helm_annotations_it_also_leaves():
    labels = {"helm.toolkit.fluxcd.io/name": "shop", "helm.toolkit.fluxcd.io/namespace": "flux"}
    annotations = {"meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "shop"}
    assert [c.kind for c in claims(meta(labels, annotations), CHECKOUT)] == ["helmrelease"]


def test_helm_annotations_alone_are_a_claim_to_confirm_against_the_release_secret():
    annotations = {"meta.helm.sh/release-name": "shop"}
    [found] = claims(meta(annotations=annotations), CHECKOUT)
    assert (found.kind, found.namespace, found.name, found.certain) == (
        "helm",
        "shop",
        "shop",
        False,
    )


def test_managed_by_helm_alone_proves_nothing():
    assert claims(meta(labels={"app.kubernetes.io/managed-by": "Helm"}), CHECKOUT) == []


def test_the_instance_label_is_an_unconfirmed_argocd_claim_unless_a_tracking_id_exists():
    [found] = claims(meta(labels={"app.kubernetes.io/instance": "shop"}), CHECKOUT)
    assert (found.kind, found.name, found.certain) == ("argocd", "shop", False)
    tracked = meta(
        labels={"app.kubernetes.io/instance": "shop"},
        annotations={"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/checkout"},
    )
    assert [c.certain for c in claims(tracked, CHECKOUT)] == [True]


def test_no_marks_no_owner():
    assert claims({}, CHECKOUT) == []
