"""Answer extraction, weighted tallies, tie-breaking and semantic clusters (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.patterns.kit.tally import (
    central,
    clusters,
    extract,
    extract_label,
    extract_numeric,
    normalize_number,
    tally_keys,
    tally_semantic,
)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("She pays 3 * 4 = 12 dollars.\n#### 12", "12"),
        ("#### 1,200.50", "1200.5"),
        ("The total is $1,200 and then 7 more.\n#### $1,207", "1207"),
        ("first 5 then 9", "9"),  # no '####': the last number
        ("#### -3", "-3"),
        ("#### 42.0", "42"),
        ("#### +8", "8"),
        ("12 apples\n#### about 12 apples", "12"),
        ("no number here", None),
        ("#### none", None),
        ("earlier 4\n#### none", None),  # a final answer line with no number states a non-number
        ("#### Step 1: add\nso 3 + 4 = 7 apples", "7"),  # a heading with text after it is no answer
    ],
)
def test_numeric_extraction(text, key):
    assert extract_numeric(text) == key


def test_numeric_final_marker_wins_over_later_numbers():
    assert extract_numeric("#### 7\n(checked 3 times)") == "7"


def test_normalize_number_rejects_non_numbers():
    assert normalize_number("1e400") is None  # not finite
    assert normalize_number("abc") is None
    assert normalize_number("0.50") == "0.5"


def test_label_extraction_prefers_the_longest_matching_label():
    assert extract_label("Positive.", ["neg", "positive"]) == "positive"
    assert extract_label("not sure", ["positive", "negative"]) is None
    assert extract_label("negative-ish", ["neg", "negative"]) == "negative"


def test_exact_extraction_collapses_space_and_case():
    assert extract("exact", "  Paris \n") == extract("exact", "paris") == "paris"
    assert extract("exact", "   ") is None


def test_semantic_is_not_a_key_extractor():
    with pytest.raises(ValueError, match="clustered"):
        extract("semantic", "x")


def test_majority_wins_and_agreement_is_its_share():
    t = tally_keys(["a", "b", "a"], [1, 1, 1])
    assert t.key == "a" and t.winner == 0 and not t.tie
    assert t.agreement == pytest.approx(2 / 3)


def test_tie_goes_to_the_group_whose_first_member_comes_first():
    t = tally_keys(["b", "a", "a", "b"], [1, 1, 1, 1])
    assert t.key == "b" and t.winner == 0 and t.tie
    assert t.agreement == pytest.approx(0.5)


def test_weights_overturn_a_headcount_majority():
    t = tally_keys(["a", "a", "b"], [1, 1, 3])
    assert t.key == "b" and t.winner == 2
    assert t.agreement == pytest.approx(0.6)


def test_unextractable_answers_count_against_agreement_but_never_win():
    t = tally_keys([None, "7", None, None], [1, 1, 1, 1])
    assert t.key == "7" and t.agreement == pytest.approx(0.25)
    nothing = tally_keys([None, None], [1, 1])
    assert nothing.winner is None and nothing.key is None and nothing.agreement == 0.0


def test_clusters_are_connected_components_independent_of_order():
    v = [[1, 0], [0, 1], [0.99, 0.14], [0.1, 0.99]]
    assert clusters(v, 0.9) == [[0, 2], [1, 3]]
    assert clusters(list(reversed(v)), 0.9) == [[0, 2], [1, 3]]


def test_central_member_has_the_highest_mean_similarity():
    v = [[1.0, 0.0], [0.8, 0.6], [0.95, 0.31]]
    assert central([0, 1, 2], v) == 2


def test_semantic_tally_picks_the_heaviest_cluster_and_its_central_answer():
    v = [[0, 1], [1, 0], [0.95, 0.31], [0.98, 0.2]]
    t = tally_semantic(v, [1, 1, 1, 1], 0.9)
    assert t.groups[0].members == (1, 2, 3)
    assert t.winner == 3  # the most central of 1, 2, 3
    assert t.agreement == pytest.approx(0.75)
    weighted = tally_semantic(v, [5, 1, 1, 1], 0.9)
    assert weighted.winner == 0 and weighted.agreement == pytest.approx(5 / 8)


@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.sampled_from("abc")), st.floats(0.1, 5.0)),
        min_size=1,
        max_size=12,
    )
)
def test_winner_is_a_heaviest_group_and_agreement_its_share(votes):
    keys = [k for k, _ in votes]
    weights = [w for _, w in votes]
    t = tally_keys(keys, weights)
    if all(k is None for k in keys):
        assert t.winner is None
        return
    totals = {k: sum(w for kk, w in votes if kk == k) for k in set(keys) - {None}}
    assert totals[t.key] == pytest.approx(max(totals.values()))
    assert keys[t.winner] == t.key and t.winner == keys.index(t.key)
    assert t.agreement == pytest.approx(totals[t.key] / sum(weights))
    assert 0.0 < t.agreement <= 1.0
