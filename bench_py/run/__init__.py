"""The run: state machine, dispatcher, results files, report, artifacts branch."""
