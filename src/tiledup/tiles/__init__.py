"""Stage `tiles`: the manifest, chip decoding, 9 tiles per chip with their hashes, rejects."""
