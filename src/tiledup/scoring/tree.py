"""The combined baseline: a decision tree over every image-metric baseline's tile-pair scores.

The system this project implements compared DupNet with a decision tree over
the image metrics. Here the tree is fitted on the validation tile pairs that
already choose every baseline's threshold (augmented as in training, with
"same place, another time" non-duplicates; no truth label is ever seen), and
then scores a tile pair like any other method: P(duplicate) from the tree,
aggregated over an overlap by the minimum like the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from tiledup.scoring import baselines

NAME = "tree"
FEATURES = baselines.METHODS  # the per-tile-pair similarity of every baseline


def fit_tree(val_scores: pd.DataFrame, *, depth: int, min_leaf: int, seed: int) -> DecisionTreeClassifier:
    """A depth-limited tree on the validation pairs' baseline scores (columns FEATURES, label is_dup)."""
    tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=min_leaf, random_state=seed)
    return tree.fit(val_scores[list(FEATURES)].to_numpy(np.float64), val_scores.is_dup.to_numpy(bool))


def tree_scores(tree: DecisionTreeClassifier, scores: pd.DataFrame) -> np.ndarray:
    """float32 P(duplicate) per row of a frame with the FEATURES columns (empty frame: empty array)."""
    if len(scores) == 0:
        return np.zeros(0, np.float32)
    proba = tree.predict_proba(scores[list(FEATURES)].to_numpy(np.float64))
    return proba[:, list(tree.classes_).index(True)].astype(np.float32)


def describe(tree: DecisionTreeClassifier) -> dict:
    """What metrics.json keeps of the tree: its size and each baseline's share of the splits' gain."""
    return {"depth": int(tree.get_depth()), "leaves": int(tree.get_n_leaves()),
            "importance": {f: round(float(v), 4) for f, v in zip(FEATURES, tree.feature_importances_)}}
