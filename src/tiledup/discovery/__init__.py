"""Stages `candidates`, `verify`, `groups`: hash search, lattice, verification, groups, split."""
