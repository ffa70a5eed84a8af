"""The run on the GPU host: state machine, phases, dispatcher, preflight, abort, space."""
