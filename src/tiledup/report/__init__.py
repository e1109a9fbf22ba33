"""The HTML report and its mosaics (written by the `evaluate` rule's command)."""
