"""Phase A0: reference clips of the target speaker."""
