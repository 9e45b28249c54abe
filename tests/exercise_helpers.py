"""Shared helpers for testing the notebooks' exercise checks."""


def not_attempted(*args):
    """A learner's function that has not been written yet."""
    raise NotImplementedError


def assert_fails(check, fn, capsys, *phrases):
    """`check(fn)` returns False and its printed feedback contains every phrase; returns the feedback."""
    assert check(fn) is False
    out = capsys.readouterr().out
    assert "not yet" in out or "not attempted" in out, out
    for phrase in phrases:
        assert phrase in out, f"{phrase!r} missing from feedback: {out}"
    return out
