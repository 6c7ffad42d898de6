"""Close-match suggestions for a mistyped name: `did you mean 'meta-llama/Llama-3.1-8B-Instruct'?`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest of `known` to `name`, or '' when none is close."""
    candidates = list(known)
    folded = {c.casefold(): c for c in candidates}
    if name.casefold() in folded and folded[name.casefold()] != name:
        return f"; did you mean {folded[name.casefold()]!r}?"
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f"; did you mean {match[0]!r}?" if match else ""
