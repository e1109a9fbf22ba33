"""Stage `evaluate`: a dup_truth file scored by DupNet and the baselines; discovery figures."""
