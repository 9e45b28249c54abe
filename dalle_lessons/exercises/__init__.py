"""Self-checks for the notebooks' exercises: each says in plain words what is right or wrong.

A check runs the learner's function against the library's own implementation. It never raises for
a wrong or unfinished answer (so a notebook still runs top to bottom); it prints feedback and
returns False. The solution notebooks assert that every check returns True.
"""
from __future__ import annotations

from typing import Callable


class Feedback(Exception):
    """Raised inside a check with a message for the learner: what is wrong, and a hint."""


def report(title: str, check: Callable[[], None]) -> bool:
    """Run `check`; print 'correct' or the plain-words feedback; return whether it passed."""
    try:
        check()
    except NotImplementedError:
        print(f"{title}: not attempted yet. Replace `raise NotImplementedError` with your code, "
              "then run this cell again.")
        return False
    except Feedback as feedback:
        print(f"{title}: not yet. {feedback}")
        return False
    print(f"{title}: correct ✓")
    return True


def call_learner(fn: Callable, what: str, *args, hint: str = ""):
    """Call the learner's function; turn a crash (other than NotImplementedError) into feedback."""
    try:
        return fn(*args)
    except (NotImplementedError, Feedback):
        raise
    except Exception as error:  # noqa: BLE001 - the learner's code, so any error is possible
        raise Feedback(f"{what} raised {type(error).__name__}: {str(error).rstrip('.')}.{hint}") from None
