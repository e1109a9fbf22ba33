"""Stages `pairs` and `dataset`: self-supervised tile pairs per shard, sampled and split."""
