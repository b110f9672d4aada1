"""Captions longer than the text encoder reads: counted once per cache build and reported with the limit.

A CLIP text encoder reads 77 tokens; the pipeline cuts the rest, and transformers says so once per batch in
a line that does not say how many captions lost words. The user should know how much of the data is cut.
"""
from __future__ import annotations

import logging

log = logging.getLogger("agsm.data")
TOKENIZERS = ("tokenizer", "tokenizer_2")  # the CLIP tokenizers of SD1.5, SDXL and SD3; T5's limit is far higher
UNLIMITED = 100_000  # transformers' stand-in for "no limit" is a huge model_max_length


def long_captions(captions: list[str], encoder) -> dict | None:
    """{'count', 'total', 'limit', 'longest', 'example'} for captions longer than the encoder's tokenizer limit,
    or None when none is (or the encoder has no tokenizers to ask, like a test's fake encoder)."""
    tokenizers = [t for name in TOKENIZERS
                  if (t := getattr(getattr(encoder, "pipe", None), name, None)) is not None
                  and 0 < getattr(t, "model_max_length", UNLIMITED) < UNLIMITED]
    if not tokenizers or not captions:
        return None
    tokenizer = min(tokenizers, key=lambda t: t.model_max_length)
    limit = tokenizer.model_max_length
    unique = sorted(set(captions))
    lengths = dict(zip(unique, (len(ids) for ids in tokenizer(unique, truncation=False, verbose=False)["input_ids"])))
    over = [c for c in captions if lengths[c] > limit]
    if not over:
        return None
    longest = max(over, key=lambda c: lengths[c])
    return {"count": len(over), "total": len(captions), "limit": limit, "longest": lengths[longest],
            "example": longest[:60] + ("..." if len(longest) > 60 else "")}


def warn_long_captions(report: dict | None) -> None:
    if report:
        log.warning("%d of %d captions are longer than the text encoder's limit of %d tokens and are cut there "
                    "(longest: %d tokens, %r); shorten them to keep every word", report["count"], report["total"],
                    report["limit"], report["longest"], report["example"])
