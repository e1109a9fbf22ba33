"""Overlap -> tile pairs -> evidence rule -> scores: shared by verify, compare and evaluate."""
