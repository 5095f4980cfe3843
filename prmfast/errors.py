"""Errors a stage raises when it cannot run; `python -m prmfast.train` prints them without a
traceback and exits 1."""


class StageError(RuntimeError):
    """A stage cannot run with what the run folder holds; the message says what to do."""
