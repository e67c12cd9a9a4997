"""Compare links between two deployed commits on known forges (core/urls.py compare_url)."""

import pytest

from core.urls import compare_url

OLD, NEW = "1a2b3c4d", "9f8e7d6c5b4a"


@pytest.mark.parametrize(
    ("repository", "link"),
    [
        (
            "https://github.com/shop/checkout",
            f"https://github.com/shop/checkout/compare/{OLD}...{NEW}",
        ),
        (
            "https://github.com/shop/checkout.git/",
            f"https://github.com/shop/checkout/compare/{OLD}...{NEW}",
        ),
        (
            "https://gitlab.com/shop/team/checkout",
            f"https://gitlab.com/shop/team/checkout/-/compare/{OLD}...{NEW}",
        ),
        (
            "https://gitlab.example.com/shop/checkout",
            f"https://gitlab.example.com/shop/checkout/-/compare/{OLD}...{NEW}",
        ),
        (
            "https://bitbucket.org/shop/checkout",
            f"https://bitbucket.org/shop/checkout/branches/compare/{NEW}%0D{OLD}",
        ),
    ],
)
def test_a_known_forge_gets_its_compare_page(repository, link):
    assert compare_url(repository, OLD, NEW) == link


@pytest.mark.parametrize(
    ("repository", "old", "new"),
    [
        ("https://git.example.com/shop/checkout", OLD, NEW),  # an unknown forge
        ("javascript:alert(1)//github.com/x", OLD, NEW),
        ("https://github.com/shop/checkout?x=1", OLD, NEW),
        ("https://github.com/shop/checkout", "main", NEW),  # not a SHA
        ("https://github.com/shop/checkout", OLD, "9f8e/../../evil"),
        ("https://github.com/shop/checkout", "", NEW),
        ("", OLD, NEW),
    ],
)
def test_anything_else_gets_no_link(repository, old, new):
    assert compare_url(repository, old, new) is None
