"""The one vocabulary: every word has its sentence, and every place that shows words uses it."""

from pathlib import Path
from typing import get_args

import pytest

from core import vocabulary
from core.vocabulary import OUTCOMES, REASONS, ROLLBACK_STATUSES, SKIP_REASONS, TERMINAL

DOCS = Path(__file__).resolve().parents[2] / "docs" / "decisions.md"


def test_every_outcome_and_status_of_the_records_has_its_sentence():
    assert set(get_args(vocabulary.Outcome)) == set(OUTCOMES)
    assert set(get_args(vocabulary.RollbackStatus)) == set(ROLLBACK_STATUSES)


@pytest.mark.parametrize(
    "words", [OUTCOMES, REASONS, ROLLBACK_STATUSES], ids=["outcomes", "reasons", "statuses"]
)
def test_every_word_has_a_sentence(words):
    empty = [word for word, sentence in words.items() if not sentence.strip()]
    assert not empty, f"words without a sentence: {empty}"


def test_skips_are_reasons_and_terminal_statuses_are_statuses():
    assert set(SKIP_REASONS) <= set(REASONS)
    assert set(TERMINAL) == set(ROLLBACK_STATUSES) - {"running"}


def test_an_unknown_reason_is_shown_as_it_is():
    assert vocabulary.explain("from_a_newer_version") == "from_a_newer_version"
    assert vocabulary.explain("paused") == "automation is paused"


def test_the_docs_glossary_is_the_vocabulary():
    text = DOCS.read_text()
    documented = text.split("<!-- vocabulary:start -->\n", 1)[1].split("<!-- vocabulary:end -->")[0]
    assert documented == vocabulary.glossary(), "run: python -m core.vocabulary"


def test_the_dashboard_and_the_api_filter_with_the_vocabulary():
    from receiver import dashboard, queries

    assert dashboard.OUTCOMES is OUTCOMES and dashboard.REASONS is REASONS
    # The API's filters are its query models: their choices are the vocabulary's words.
    decisions = queries.DecisionsQuery.model_json_schema()["properties"]
    rollbacks = queries.RollbacksQuery.model_json_schema()["properties"]
    assert decisions["outcome"]["anyOf"][0]["enum"] == list(OUTCOMES)
    assert decisions["reason"]["anyOf"][0]["enum"] == list(REASONS)
    assert rollbacks["status"]["anyOf"][0]["enum"] == list(ROLLBACK_STATUSES)
