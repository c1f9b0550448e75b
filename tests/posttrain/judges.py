"""Judges named by dotted path in the tests (train.dpo.judge): `fn(prompts, completions, **columns) -> list[float | None]`."""


def prefers_short(prompts, completions, **columns):
    """Shorter answers score higher; an empty answer is not scored (None)."""
    return [None if not c else -float(len(c)) for c in completions]
