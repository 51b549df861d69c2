"""The one tweet-aware word splitter of mmie, with character offsets.

Raw text given to the Python API, the CLI or the service is split into words by
:func:`split_words`; each word keeps its ``(start, end)`` character offsets into the input
string (``end`` exclusive, so ``text[start:end] == word`` always holds). Models work on these
words; predictions are mapped back to character offsets through them.

Rules, tried in this order at every position (whitespace and invisible separators such as
U+200B ZERO WIDTH SPACE, U+2060 and U+FEFF separate words and never appear in one):

==================  =======================================================================
URL                 ``http://…``, ``https://…``, ``www.…``, ``pic.twitter.com/…``; trailing
                    sentence punctuation (``.,;:!?)]}'"…``) is split off, except a ``)``
                    that closes a ``(`` inside the URL
e-mail              ``name@example.com``
@mention            ``@user_name`` (``@user's`` -> ``@user``, ``'s``)
#hashtag            ``#NBAFinals`` (one word, as in Twitter-2015), ``#1``
cashtag             ``$AAPL`` (letters only; ``$5`` is ``$``, ``5``)
emoji               one word per emoji: a pictograph with its variation selector and skin
                    tone, a ZWJ sequence (👩‍👩‍👧), a flag (🇺🇸 and tag sequences), a keycap (1️⃣)
emoticon            ``:)`` ``:-(`` ``;D`` ``:P`` ``<3`` ``^_^`` (not inside a word)
HTML entity         ``&amp;`` ``&#39;``
abbreviation        single letters with periods (``U.S.``, ``U.S.A.``, ``e.g.``, ``J.K.``) and a
                    short list of titles and company suffixes (``Mr.``, ``Dr.``, ``St.``,
                    ``Inc.``, ``Ltd.``, ``vs.`` …)
number              ``1,000,000``, ``3.14``, ``1,234.5``, ``10:30``, ``192.168.0.1`` (a sign
                    or currency symbol is its own word; ``50%`` is ``50``, ``%``)
contraction         split the Penn Treebank way, as in MNRE: ``don't`` -> ``do``, ``n't``;
                    ``can't`` -> ``ca``, ``n't``; ``it's`` -> ``it``, ``'s``; ``I'm``,
                    ``we're``, ``you've``, ``they'll``, ``she'd`` likewise. Apostrophes inside
                    names stay (``O'Brien``, ``Nyong'o``, ``Y'all``); ``’`` counts as ``'``
word                letters, marks and digits, joined by inner hyphens or apostrophes
                    (``Jay-Z``, ``COVID-19``, ``state-of-the-art``); any script
punctuation         ``...``, ``!!!``, ``?!`` and ``--`` runs are one word; every other
                    character (one grapheme cluster) is a word of its own
==================  =======================================================================

``RT`` is an ordinary word: ``RT @user: hi`` -> ``RT``, ``@user``, ``:``, ``hi``.

Uses the ``regex`` package (a dependency of ``transformers``) for Unicode properties
(``Extended_Pictographic``, grapheme clusters, ``\\w`` that includes combining marks).
"""

from __future__ import annotations

import re
from typing import Sequence

import regex

from mmie.errors import DataError

__all__ = ["split_words", "words_to_text", "join_words", "SPLITTER_VERSION"]

#: Bumped whenever the splitting rules change (models record it with their vocabulary).
SPLITTER_VERSION = 1

# Characters that separate words besides Unicode whitespace and never belong to one.
_INVISIBLE = "\u200b\u2060\ufeff\u200e\u200f"
_SEP = rf"[\s{_INVISIBLE}]"

_TRAIL = r"""[.,;:!?)\]}'"»…]"""
_URL = (rf"(?:https?://|www\.|pic\.twitter\.com/)[^\s{_INVISIBLE}\p{{Extended_Pictographic}}]+?"
        rf"(?={_TRAIL}*(?:{_SEP}|\p{{Extended_Pictographic}}|$))")
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_MENTION = r"@\w+"
_HASHTAG = r"[#＃]\w+"
_CASHTAG = r"\$[A-Za-z]{1,6}(?![\w])"
_EMO_UNIT = r"\p{Extended_Pictographic}[\uFE0F\uFE0E\p{Emoji_Modifier}]*"
_EMOJI = (r"(?:\p{Regional_Indicator}{2}"
          r"|[0-9#*]\uFE0F?\u20E3"
          rf"|{_EMO_UNIT}(?:[\U000E0020-\U000E007E]+\U000E007F)?(?:\u200D{_EMO_UNIT})*"
          r"|\p{Emoji_Modifier})")
_EMOTICON = (r"(?<![\w])(?:[:;=][-^o']?[)(\]\[DPpO3/\\|*]|<3|\^_\^|[)(\]\[][-^']?[:;=])"
             r"(?![\w])")
_ENTITY = r"&(?:[A-Za-z]+|#[0-9]+|#x[0-9A-Fa-f]+);"
_TITLES = ("Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|vs|etc|Inc|Ltd|Corp|Co|Bros|Gen|Gov|Sen|Rep|Sgt|"
           "Capt|Lt|Col|Jan|Feb|Aug|Sept|Oct|Nov|Dec")
_ABBREV = rf"(?:\p{{L}}\.){{2,}}|(?i:{_TITLES})\.(?!\w)"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?![\d,])(?:\.\d+)?|\d+(?:\.\d+)+|\d{1,2}(?::\d{2}){1,2}(?!\d)"
_APOS = "['’]"
_NT_STEM = rf"\w+?(?=[nN]{_APOS}[tT](?!\w))"
_NT = rf"[nN]{_APOS}[tT](?!\w)"
_CLITIC_STEM = rf"\w+(?:[-'’]\w+)*?(?={_APOS}(?i:s|m|re|ve|ll|d)(?!\w))"
_CLITIC = rf"{_APOS}(?i:s|m|re|ve|ll|d)(?!\w)"
_WORD = r"\w+(?:[-'’]\w+)*"
_PUNCT_RUN = r"\.{2,}|[!?]{2,}|-{2,}"
_OTHER = rf"(?!{_SEP})\X"

_PATTERN = regex.compile("|".join(f"(?:{p})" for p in (
    _URL, _EMAIL, _MENTION, _HASHTAG, _CASHTAG, _EMOJI, _EMOTICON, _ENTITY, _ABBREV, _NUMBER,
    _NT_STEM, _NT, _CLITIC_STEM, _CLITIC, _WORD, _PUNCT_RUN, _OTHER)), regex.V0)


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Split ``text`` into words with character offsets: ``[(word, start, end), ...]``.

    ``end`` is exclusive and ``text[start:end] == word`` for every word; words are in order,
    do not overlap and contain no whitespace. See the module docstring for the rules.

    >>> split_words("RT @nba: Jordan's back!!! 🏀 https://t.co/x1.")
    ... # doctest: +NORMALIZE_WHITESPACE
    [('RT', 0, 2), ('@nba', 3, 7), (':', 7, 8), ('Jordan', 9, 15), ("'s", 15, 17),
     ('back', 18, 22), ('!!!', 22, 25), ('🏀', 26, 27), ('https://t.co/x1', 28, 43),
     ('.', 43, 44)]
    """
    if not isinstance(text, str):
        raise DataError(f"expected text as a string, got {type(text).__name__}", field="text")
    out: list[tuple[str, int, int]] = []
    for m in _PATTERN.finditer(text):
        word, start, end = m.group(), m.start(), m.end()
        # A URL keeps a closing parenthesis that balances one inside it (Foo_(bar)).
        if (word == ")" and out and out[-1][2] == start and _is_url(out[-1][0])
                and out[-1][0].count("(") > out[-1][0].count(")")):
            prev, pstart, _ = out.pop()
            word, start = prev + word, pstart
        out.append((word, start, end))
    return out


def _is_url(word: str) -> bool:
    return word.startswith(("http://", "https://", "www.", "pic.twitter.com/"))


def words_to_text(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join words with single spaces; return the text and each word's ``(start, end)``.

    The inverse direction of :func:`split_words` for data that comes already split into words
    (CoNLL, MNRE): ``text[start:end] == words[i]``. Words must be non-empty strings without
    whitespace, otherwise a :class:`DataError` names the offending word.
    """
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    for i, w in enumerate(words):
        if not isinstance(w, str) or not w:
            raise DataError(f"word {i} is empty or not a string: {w!r}", field="tokens")
        if any(ch.isspace() for ch in w):
            raise DataError(f"word {i} contains whitespace: {w!r}", field="tokens")
        if i:
            pos += 1
        offsets.append((pos, pos + len(w)))
        parts.append(w)
        pos += len(w)
    return " ".join(parts), offsets


#: words written against the previous one: clitics and closing punctuation
_ATTACH = regex.compile(r"^(?:n't|'s|'re|'ve|'ll|'d|'m|[,.!?;:%)\]}]+|\.\.\.|…)$", regex.IGNORECASE)


def join_words(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Words (as :func:`split_words` makes them) back into natural text: clitics (``n't``,
    ``'s``) and closing punctuation go against the previous word, so ``["Ca", "n't", "stop",
    "!"]`` gives ``"Can't stop!"``. The result is checked: when :func:`split_words` of it does
    not give ``words`` back, the words are joined by single spaces (:func:`words_to_text`).
    Returns the text and each word's ``(start, end)``."""
    text, offsets = "", []
    for i, w in enumerate(words):
        if i and not _ATTACH.match(w):
            text += " "
        offsets.append((len(text), len(text) + len(w)))
        text += w
    if [(w, s, e) for w, (s, e) in zip(words, offsets)] == split_words(text):
        return text, offsets
    return words_to_text(words)


def fill_template(template: str, names: Sequence[str]) -> tuple[list[str], list[tuple[int, int]]]:
    """Put ``names`` into the ``{0}``/``{1}`` slots, split the text into words with
    :func:`split_words`, and return the words and each name's token span ``[start, end)``."""
    parts = re.split(r"\{(\d)\}", template)
    text, char_spans = "", {}
    for k, part in enumerate(parts):
        if k % 2:
            slot = int(part)
            char_spans[slot] = (len(text), len(text) + len(names[slot]))
            text += names[slot]
        else:
            text += part
    words = split_words(text)
    starts = {s: i for i, (_, s, _) in enumerate(words)}
    ends = {e: i + 1 for i, (_, _, e) in enumerate(words)}
    spans = []
    for slot in range(len(names)):
        cs, ce = char_spans[slot]
        if cs not in starts or ce not in ends:
            raise RuntimeError(f"template {template!r}: name {names[slot]!r} does not fall on "
                               f"word boundaries")
        spans.append((starts[cs], ends[ce]))
    return [w for w, _, _ in words], spans
