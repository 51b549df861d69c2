"""Tests of the tweet-aware word splitter (mmie.data.tokenize)."""

from __future__ import annotations

import random

import pytest

from mmie.data.tokenize import split_words, words_to_text
from mmie.errors import DataError


def words(text: str) -> list[str]:
    out = split_words(text)
    for w, s, e in out:
        assert text[s:e] == w
    return [w for w, _, _ in out]


TWEETS = [
    ("RT @nba: Jordan's back!!! 🏀 https://t.co/x1Ab.",
     ["RT", "@nba", ":", "Jordan", "'s", "back", "!!!", "🏀", "https://t.co/x1Ab", "."]),
    ("I don't think the U.S. team can't win... #WorldCup2018 😂😂",
     ["I", "do", "n't", "think", "the", "U.S.", "team", "ca", "n't", "win", "...",
      "#WorldCup2018", "😂", "😂"]),
    ("Tickets from $1,250.50 (was 2,000) at 10:30pm: www.example.com/tix?id=3, hurry!",
     ["Tickets", "from", "$", "1,250.50", "(", "was", "2,000", ")", "at", "10:30", "pm", ":",
      "www.example.com/tix?id=3", ",", "hurry", "!"]),
    ("Mr. O'Brien & Dr. Lupita Nyong'o vs. Jay-Z :) <3",
     ["Mr.", "O'Brien", "&", "Dr.", "Lupita", "Nyong'o", "vs.", "Jay-Z", ":)", "<3"]),
    ("It’s 3.5% up for $AAPL &amp; $TSLA — y'all ready?!",
     ["It", "’s", "3.5", "%", "up", "for", "$AAPL", "&amp;", "$TSLA", "—", "y'all", "ready",
      "?!"]),
    ("Family day 👨‍👩‍👧‍👦👍🏽 in 🇫🇷 Paris 1️⃣ ❤️🔥",
     ["Family", "day", "👨‍👩‍👧‍👦", "👍🏽", "in", "🇫🇷", "Paris", "1️⃣", "❤️", "🔥"]),
    ("Café naïve résumé — नमस्ते दुनिया! @josé_m",
     ["Café", "naïve", "résumé", "—", "नमस्ते", "दुनिया", "!", "@josé_m"]),
    ("see (https://en.wikipedia.org/wiki/Foo_(bar)) and http://t.co/abc😍 now",
     ["see", "(", "https://en.wikipedia.org/wiki/Foo_(bar)", ")", "and", "http://t.co/abc",
      "😍", "now"]),
    ("mail me: first.last+tag@mail.co.uk, we'll see I'm sure they've gone",
     ["mail", "me", ":", "first.last+tag@mail.co.uk", ",", "we", "'ll", "see", "I", "'m",
      "sure", "they", "'ve", "gone"]),
    ("state-of-the-art COVID-19 test\u200bresults\ufeff 192.168.0.1 e.g. J.K. Rowling's",
     ["state-of-the-art", "COVID-19", "test", "results", "192.168.0.1", "e.g.", "J.K.",
      "Rowling", "'s"]),
]


@pytest.mark.parametrize("text,expected", TWEETS)
def test_realistic_tweets(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_offsets_are_exact_character_offsets() -> None:
    text = "RT @Yankees: 👩🏽‍🚀 Jeter's #1 at 3:05 in N.Y.!"
    got = split_words(text)
    assert got == [("RT", 0, 2), ("@Yankees", 3, 11), (":", 11, 12), ("👩🏽‍🚀", 13, 17),
                   ("Jeter", 18, 23), ("'s", 23, 25), ("#1", 26, 28), ("at", 29, 31),
                   ("3:05", 32, 36), ("in", 37, 39), ("N.Y.", 40, 44), ("!", 44, 45)]


def test_each_emoji_and_zwj_sequence_is_one_word() -> None:
    seqs = ["😂", "👍🏿", "❤️", "👩‍❤️‍👨", "🏳️‍🌈", "🇺🇸", "#️⃣", "🏴\U000e0067\U000e0062\U000e0065"
            "\U000e006e\U000e0067\U000e007f"]
    assert words("".join(seqs)) == seqs
    assert words("great🔥🔥game") == ["great", "🔥", "🔥", "game"]


def test_no_character_is_lost_and_words_hold_no_whitespace() -> None:
    """Random strings from a tweet-like alphabet: words are in order, do not overlap, contain
    no whitespace, and together cover every character that is not a separator."""
    rng = random.Random(7)
    alphabet = list("abcXYZ019 .,:;!?'’-_@#$%&()/\\\"") + [
        "\n", "\t", "😂", "🏽", "\u200d", "\ufe0f", "🇫", "é", "\u0301", "न", "\u094d", "東",
        "\u200b", "http://", "www.", "n't", "U.S."]
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        got = split_words(text)
        pos = 0
        for w, s, e in got:
            assert text[s:e] == w and w
            assert s >= pos
            assert text[pos:s].strip("\u200b\u2060\ufeff\u200e\u200f \t\n\r\x0b\x0c") == ""
            assert not any(ch.isspace() for ch in w)
            pos = e
        assert text[pos:].strip("\u200b\u2060\ufeff\u200e\u200f \t\n\r\x0b\x0c") == ""


@pytest.mark.parametrize("text,_", TWEETS)
def test_joining_and_splitting_again_is_stable(text: str, _: list[str]) -> None:
    ws = words(text)
    joined, offsets = words_to_text(ws)
    assert [joined[s:e] for s, e in offsets] == ws
    assert words(joined) == ws


def test_words_to_text_offsets() -> None:
    text, offsets = words_to_text(["RT", "@a", ":", "Jordan", "🏀"])
    assert text == "RT @a : Jordan 🏀"
    assert offsets == [(0, 2), (3, 5), (6, 7), (8, 14), (15, 16)]
    assert words_to_text([]) == ("", [])


def test_bad_inputs_raise_data_errors() -> None:
    with pytest.raises(DataError, match="word 1 is empty"):
        words_to_text(["a", "", "b"])
    with pytest.raises(DataError, match="word 0 contains whitespace"):
        words_to_text(["a b"])
    with pytest.raises(DataError, match="expected text as a string"):
        split_words(None)  # type: ignore[arg-type]
    assert split_words("") == [] and split_words(" \n\u200b ") == []
