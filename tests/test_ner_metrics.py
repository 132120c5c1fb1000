"""Entity-level precision, recall and F1 (conlleval's exact span match) on hand-made spans."""
from __future__ import annotations

import pytest

from xentlib import metrics


def test_spans_follow_conlleval_for_well_formed_and_ill_formed_tags():
    tags = ["O", "B-PER", "I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-LOC"]
    assert metrics.entity_spans(tags) == [("PER", 1, 4), ("PER", 4, 5), ("LOC", 6, 8),
                                          ("ORG", 8, 9), ("LOC", 9, 10)]
    assert metrics.entity_spans(["O", "<pad>"]) == []
    names = ("<pad>", "O", "B-PER", "I-PER")
    assert metrics.entity_spans([2, 3, 1, 0], names) == [("PER", 0, 2)]


def test_scores_count_exact_spans_only():
    true = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"],
            ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O", "O"],       # PER right, LOC too short
            ["B-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "B-PER"]]  # ORG right, PER typed LOC, extra PER
    s = metrics.entity_scores(true, pred)
    # true: PER x2, LOC x1, ORG x1 (4); predicted: PER x2, LOC x2, ORG x1 (5); correct: PER 1, ORG 1
    assert s["overall"] == {"precision": 2 / 5, "recall": 2 / 4, "f1": pytest.approx(4 / 9),
                            "true": 4, "predicted": 5, "correct": 2}
    assert (s["PER"]["precision"], s["PER"]["recall"]) == (0.5, 0.5)
    assert (s["LOC"]["precision"], s["LOC"]["recall"], s["LOC"]["f1"]) == (0.0, 0.0, 0.0)
    assert (s["ORG"]["precision"], s["ORG"]["recall"], s["ORG"]["f1"]) == (1.0, 1.0, 1.0)
    assert list(s) == ["LOC", "ORG", "PER", "overall"]


def test_scores_take_ids_and_report_zero_for_empty_denominators():
    names = ("<pad>", "O", "B-PER", "I-PER")
    s = metrics.entity_scores([[2, 3, 1]], [[1, 1, 1]], names)
    assert s["PER"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                        "true": 1, "predicted": 0, "correct": 0}
    assert metrics.entity_scores([[1]], [[1]], names) == {
        "overall": {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                    "true": 0, "predicted": 0, "correct": 0}}


def test_entities_are_matched_within_their_own_sentence():
    s = metrics.entity_scores([["B-PER"], ["O"]], [["O"], ["B-PER"]])
    assert s["overall"]["correct"] == 0


def test_mismatched_inputs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="^pred_tags must have one tag sequence per sentence"):
        metrics.entity_scores([["O"]], [])
    with pytest.raises(ValueError, match="^pred_tags must match the true tags' lengths"):
        metrics.entity_scores([["O", "O"]], [["O"]])
