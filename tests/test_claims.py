"""Every quoted claim is the article's own words, and every claim has a registered study."""

from pathlib import Path

import pytest

from actlab.article.claims import CLAIMS
from actlab.studies import STUDIES

ARTICLE = Path(__file__).resolve().parents[2] / "shared" / "article.md"
# The article's closing advice, which the convergence study's GELU comparison judges.
RECOMMENDATION = "If you're tweaking a model, start with GELU for transformer compatibility."


@pytest.mark.skipif(not ARTICLE.is_file(), reason="the article is not beside this checkout")
@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_quotes_are_verbatim(claim):
    text = ARTICLE.read_text(encoding="utf-8")
    for part in CLAIMS[claim].quote.split(" [...] "):
        assert part in text, part[:60]
    assert RECOMMENDATION in text


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_each_claim_has_its_study(claim):
    study = STUDIES[CLAIMS[claim].study]
    assert study.claim == claim
