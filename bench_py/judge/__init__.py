"""Judging: speaker similarity, blind pairing, scores, statistics, the decision rule."""
