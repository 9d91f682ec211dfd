"""Frozen Lake as language: a character tokenizer for lakes (prompts) and plans (responses).

A sample is one string, prompt then response:

    SFFF/FHFH/FFFH/HFFG>  RRDDDR.
    \\_____ prompt _____/  \\resp./

- prompt: the map row by row (``S F H G``), rows joined by ``/``, then the marker ``>``;
- response: the plan, one character per move (``L D R U`` = Gymnasium's actions 0 1 2 3),
  then the end token ``.``;
- ``_`` pads a batch to a common length (never a target of any loss).

Every character is one token, so the vocabulary is the 12 characters below. Characters
outside it raise ``ValueError`` naming them and their position: a map with a typo must not
silently become some other lake.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lakelab.lakes import ACTIONS

PAD, END, MARKER, ROW_SEP = "_", ".", ">", "/"
CELL_CHARS = "SFHG"
ACTION_CHARS = "".join(name[0] for name in ACTIONS)  # "LDRU", index = Gymnasium action
VOCAB = PAD + CELL_CHARS + ROW_SEP + MARKER + ACTION_CHARS + END
"""Token id = index in this string: ``_SFHG/>LDRU.`` (12 tokens)."""
STOI = {c: i for i, c in enumerate(VOCAB)}
PAD_ID, END_ID = STOI[PAD], STOI[END]
ACTION_IDS = tuple(STOI[c] for c in ACTION_CHARS)  # token id of Gymnasium action a


def encode(text: str) -> list[int]:
    """Token ids of ``text``; ValueError naming the first character outside ``VOCAB``."""
    if not isinstance(text, str):
        raise ValueError(f"encode takes a string, got {type(text).__name__}")
    try:
        return [STOI[c] for c in text]
    except KeyError:
        pos = next(i for i, c in enumerate(text) if c not in STOI)
        raise ValueError(
            f"character {text[pos]!r} at position {pos} of {text!r} is not in the vocabulary "
            f"{VOCAB!r} (cells {CELL_CHARS}, row separator {ROW_SEP!r}, marker {MARKER!r}, "
            f"actions {ACTION_CHARS}, end {END!r}, pad {PAD!r})"
        ) from None


def decode(ids: Iterable[int]) -> str:
    """The string of token ids; ValueError for an id outside ``0 .. len(VOCAB) - 1``."""
    out = []
    for pos, i in enumerate(ids):
        i = int(i)
        if not 0 <= i < len(VOCAB):
            raise ValueError(f"token id {i} at position {pos} is outside 0..{len(VOCAB) - 1}")
        out.append(VOCAB[i])
    return "".join(out)


def prompt_text(desc: Sequence[str]) -> str:
    """The prompt of a lake: ``"SFFF/FHFH/FFFH/HFFG>"``."""
    return ROW_SEP.join(desc) + MARKER


def prompt_length(size: int) -> int:
    """Tokens of a size x size lake's prompt: cells, row separators and the marker."""
    return size * size + size - 1 + 1


def plan_text(actions: Sequence[int]) -> str:
    """The response of a plan of Gymnasium actions: ``[2, 2, 1] -> "RRD."``."""
    return "".join(ACTION_CHARS[a] for a in actions) + END


def parse_plan(response: str) -> list[int] | None:
    """Gymnasium actions of a response up to its first end token; None if a character before
    it is not an action (e.g. the model wrote a cell letter: not a plan at all). A response
    without an end token is read to its last character (a plan cut at the length limit)."""
    body = response.split(END, 1)[0]
    if any(c not in ACTION_CHARS for c in body):
        return None
    return [ACTION_CHARS.index(c) for c in body]
