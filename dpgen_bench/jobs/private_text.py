"""What a private job may write as text: error messages, tracebacks and warning lines without private figures.

A private job's exception or warning can print private quantities: a shape mismatch prints the Poisson batch
size, an out-of-memory message the memory in use, a loss the value of an un-noised statistic. So for a job
trained at a finite ε (``Job.private``) every figure in such text is replaced by ``#`` (:func:`scrub_figures`);
the exception type, the words and the code locations of a traceback (file, line, function, source line: code,
not data) stay. ε = ∞ jobs keep the full text. The environment variable :data:`UNSCRUBBED_ENV` (``=1``, set in
the shell or in the executor's ``env:``) keeps private jobs' full text too, for debugging on data the operator
may look at; the stored text then starts with :data:`UNSCRUBBED_MARK`.

Not covered: output a method prints itself (its ``log.txt``), and the bit "this job failed" (README, privacy).
"""

from __future__ import annotations

import os
import re
import traceback

UNSCRUBBED_ENV = "DPGEN_BENCH_UNSCRUBBED_ERRORS"
"""Set to ``1`` to keep the full error text and traceback of private jobs (the row is then marked)."""

UNSCRUBBED_MARK = "[unscrubbed: may carry private figures] "
"""Prefix of the error text of a private job kept whole under :data:`UNSCRUBBED_ENV`."""

SCRUBBED = "#"
"""What every figure of a private job's text becomes."""

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?")
"""Identifiers (kept: ``Conv2d``, ``float32``) and numbers (scrubbed: ``12``, ``0.5``, ``1e-5``, ``0x7f``'s 0)."""


def _scrub(match: re.Match[str]) -> str:
    token = match.group()
    if token[0].isalpha() or token[0] == "_":
        if token[0] in "xX" and token[1:2].isalnum() and any(c.isdigit() for c in token[1:]):
            return token[0] + SCRUBBED  # "12x64" (a shape) and "0x7f3a" (an address): the x and a figure
        return token
    return SCRUBBED


def scrub_figures(text: str) -> str:
    """``text`` with every number replaced by ``#`` (integers, decimals, exponents, hexadecimal, digits of
    any script); identifiers that contain digits (``Conv2d``, ``mat1``) stay, except ``x<digits>`` (a shape's
    ``12x64``)."""
    return _TOKEN.sub(_scrub, text)


def unscrubbed_opted_in() -> bool:
    """Whether the operator asked for private jobs' full error text (:data:`UNSCRUBBED_ENV` set, not ``0``)."""
    return os.environ.get(UNSCRUBBED_ENV, "").strip() not in ("", "0")


def job_error_text(text: str, private: bool) -> str:
    """The error text a job's record may carry: ``text`` itself for a non-private job, marked under the
    opt-in, else with its figures scrubbed."""
    if not private:
        return text
    if unscrubbed_opted_in():
        return text if text.startswith(UNSCRUBBED_MARK) else UNSCRUBBED_MARK + text
    return scrub_figures(text)


def exception_report(exc: BaseException, private: bool) -> tuple[str, str]:
    """(the one-line error of a job's row, the text of its ``error.txt``) for ``exc`` being handled.

    Non-private (or opted in): ``"Type: message"`` and the full traceback. Private: the same with every
    exception message of the chain scrubbed; the frames (code locations) stay."""
    error = f"{type(exc).__name__}: {exc}"
    if not private or unscrubbed_opted_in():
        full = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return job_error_text(error, private), (UNSCRUBBED_MARK.strip() + "\n" + full if private else full)
    parts = []
    for link in _chain(exc):
        frames = "".join(traceback.format_tb(link.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(link).__name__}: "
                     f"{scrub_figures(str(link))}\n")
    return scrub_figures(error), "\nwhich led to:\n\n".join(parts)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, oldest first."""
    out: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and all(link is not seen for seen in out):
        out.append(link)
        link = link.__cause__ if link.__cause__ is not None else (None if link.__suppress_context__ else link.__context__)
    return out[::-1]


__all__ = ["SCRUBBED", "UNSCRUBBED_ENV", "UNSCRUBBED_MARK", "exception_report", "job_error_text", "scrub_figures",
           "unscrubbed_opted_in"]
