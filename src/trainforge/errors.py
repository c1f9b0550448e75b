"""Errors a person can act on.

A `UserError` is a mistake in the input (a missing file, a bad config key, broken YAML): the CLI
prints its message without a traceback and exits 2. Anything else is our bug: exit 1.
"""


class UserError(Exception):
    """Bad input or config. The message names the file, line or key and says what to do."""

    exit_code = 2


class StageFailed(Exception):
    """A pipeline stage raised; earlier outputs are kept and the next run resumes here."""

    def __init__(self, stage: str, cause: BaseException):
        super().__init__(f"stage '{stage}' failed: {cause}")
        self.stage = stage
        self.cause = cause
