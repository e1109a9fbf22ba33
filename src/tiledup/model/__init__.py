"""Stage `train`: DupNet, its loader, augmentations, "another time" negatives and training."""
