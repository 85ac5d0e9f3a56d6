"""What a label or query may be. One rule for the vocabulary, the background, standing queries,
the query topic and the ``ground`` service, so a text accepted anywhere can be embedded everywhere.

A label is one or more synonyms separated by ``;`` ("sofa; couch"), scored as the max over them.
"""
from __future__ import annotations

from typing import List, Sequence

MAX_QUERY_BYTES = 1024
MAX_SYNONYMS = 16
MAX_LABELS = 2048  # vocabulary + background (LVIS has 1203); a large vocabulary is embedded off the frame thread


class LabelError(ValueError):
    """A text that cannot be a label or query; the message says why."""


def split_synonyms(label: str) -> List[str]:
    """"sofa; couch" -> ["sofa", "couch"]; raises LabelError when nothing is left to embed."""
    check_text(label)
    names = [s.strip() for s in label.split(";")]
    names = [s for s in names if s]
    if not names:
        raise LabelError(f"label {label!r} has no text (only separators or spaces)")
    if len(names) > MAX_SYNONYMS:
        raise LabelError(f"label has {len(names)} synonyms; at most {MAX_SYNONYMS}")
    return names


def check_text(text: str) -> None:
    if not isinstance(text, str):
        raise LabelError(f"expected a string, got {type(text).__name__}")
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_QUERY_BYTES:
        raise LabelError(f"longer than {MAX_QUERY_BYTES} bytes")
    if "\x00" in text:
        # rclpy would cut the string at the NUL on the way out; we refuse rather than guess.
        raise LabelError("contains a NUL character")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise LabelError("contains invalid UTF-8 (a lone surrogate)")
    if any(not ch.isprintable() and not ch.isspace() for ch in text):
        raise LabelError("contains control characters")


def normalize_query(text: str) -> str:
    """A query as the node keeps it: stripped; "" clears. Raises LabelError for anything else."""
    text = text.strip() if isinstance(text, str) else text
    if text == "":
        return ""
    split_synonyms(text)
    return text


def check_labels(labels: Sequence[str], what: str = "vocabulary") -> None:
    """Every entry must be a label; the whole list is rejected on the first bad one."""
    for i, label in enumerate(labels):
        try:
            split_synonyms(label)
        except LabelError as exc:
            raise LabelError(f"{what}[{i}]: {exc}") from None
