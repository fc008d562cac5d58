"""Wording of messages a person reads: counts ("1 slide", "2 slides", never "1 slides"), whether a
model is calibrated, and another library's exception as the one line it can give."""

from __future__ import annotations


def count_noun(count: int, singular: str, plural: str | None = None) -> str:
    """`count` with the noun in the number it needs ("1 lesion", "0 lesions", "3 patches")."""
    if count == 1:
        return f"1 {singular}"
    return f"{count} {plural or _plural(singular)}"


def _plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name when it has none
    (for one-line errors that quote another library)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


NOT_CALIBRATED = "not calibrated (P(tumour) is the raw softmax)"


def calibration_wording(temperature: float | None, fitted_on: str | None) -> str:
    """Whether P(tumour) was calibrated and on what, as `model-info`, `diagnose` and the viewer's
    diagnosis card say it: `calibrated (T=1.8, on ...)` or `not calibrated`. `fitted_on` None:
    the data was not recorded (a store written before it was)."""
    if temperature is None:
        return NOT_CALIBRATED
    return f"calibrated (T={temperature:.4g}, on {fitted_on or 'data not recorded'})"
