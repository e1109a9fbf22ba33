"""Discovery figures against a truth: a partial truth never calls its unlisted finds false, group purity is
judged at the group's own positions, and the split's leaks of truth duplicates are counted."""

import pandas as pd

from tiledup.evaluate.discovery_figures import decisions, purity, split_leaks


def frame(rows, columns=("img1", "img2", "tag", "is_dup")):
    return pd.DataFrame(rows, columns=list(columns))


# verify found a~b, b~c, c~d duplicate and d~e not; the truth (20 lines' worth) lists a~b 1 and d~e 1 only
FOUND = frame([("a", "b", "18", True), ("b", "c", "18", True), ("c", "d", "18", True), ("d", "e", "18", False)])
TRUTH = frame([("a", "b", "18", True, True), ("d", "e", "18", True, True)],
              ("img1", "img2", "tag", "is_dup", "decidable"))


def test_a_partial_truth_reports_unlisted_finds_as_unlabelled_not_false():
    d = decisions(TRUTH, FOUND, complete=False)
    assert (d["tp"], d["fp"], d["fn"], d["n_unlabelled_found_dups"]) == (1, 0, 1, 2)
    assert d["precision"] == 1.0 and d["recall"] == 0.5 and not d["truth_complete"]


def test_a_complete_truth_counts_unlisted_finds_as_false():
    d = decisions(TRUTH, FOUND, complete=True)
    assert (d["tp"], d["fp"], d["fp_not_in_truth"], d["n_unlabelled_found_dups"]) == (1, 2, 2, 0)
    assert d["precision"] == 1 / 3


GROUPS = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "group": [0, 0, 1, 1], "row": [0, 0, 0, 0],
                       "col": [0, 1, 0, 2], "n_images": [2, 2, 2, 2]})


def test_purity_is_judged_at_the_groups_own_positions():
    dups = frame([("a", "b", "18", True), ("c", "d", "28", True)])
    # a truth non-duplicate for another offset of a correctly placed pair (a~b at 08) says nothing
    other_offset = frame([("a", "b", "08", False), ("a", "b", "18", True)])
    p = purity(GROUPS, dups, other_offset, None, complete=False)
    assert p["n_impure"] == 0 and p["n_judged"] == 1  # only group 0 has a truth line at its positions
    # the same pair labelled not duplicate at the very position the group gives them: impure
    at_position = frame([("c", "d", "28", False)])
    p = purity(GROUPS, dups, at_position, None, complete=False)
    assert p["n_impure"] == 1 and p["impure_groups"][0]["group"] == 1 and p["impure_groups"][0]["explained"]


def test_truth_duplicates_split_across_splits_are_counted():
    split = pd.DataFrame({"image_id": ["a", "b", "c", "d", "e"], "split": ["train", "train", "test", "train", "val"]})
    truth = frame([("a", "b", "18", True), ("b", "c", "18", True), ("d", "e", "08", False), ("a", "x", "08", True)])
    leaks = split_leaks(truth, split)
    assert leaks["truth_duplicate_overlaps"] == 2 and leaks["leaked"] == 1 and leaks["leaked_share"] == 0.5
    assert leaks["leaked_overlaps"] == [{"img1": "b", "img2": "c", "tag": "18"}]
