"""Tokenise each post once: a caching front for :class:`~mmie.encoders.text.TextEncoder`.

Training and evaluation loaders collate the same posts every epoch; tokenisation and the
word-to-sub-token alignment are the same each time. :class:`TokenCache` stands in for the
text encoder in a task's ``collate`` (it has the same ``encode_words`` / ``encode_pair`` /
``encode_texts``; everything else is looked up on the wrapped encoder): the first time a post
is seen its encoding is computed by the encoder and kept as plain lists, afterwards batches
are assembled from those lists (padding only). The tensors equal those of the encoder
itself, padding included (a post's encoding does not depend on the other posts of its
batch; tested), so using it changes no result.

Keys are the post's words, its marker spans (if any) and ``max_length``, so the cache is
only useful where posts repeat (epochs, dev evaluations): a stream of new posts gains
nothing from it. It holds one entry per distinct post (a few hundred bytes each).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

from mmie.encoders.text import TextEncoder, WordBatch


class TokenCache:
    """Memoising ``encode_words`` / ``encode_pair`` / ``encode_texts`` of ``encoder``.

    ``hits`` / ``misses`` count posts (label-text batches for ``encode_texts``).
    """

    def __init__(self, encoder: TextEncoder):
        self.encoder = encoder
        self._posts: dict[tuple, tuple[list[int], list[int], list[bool], list[int], bool]] = {}
        self._texts: dict[tuple, WordBatch] = {}
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:  # tokenizer, entity_markers, pad ids, ...
        if name == "encoder":  # not set yet (unpickling): avoid recursing
            raise AttributeError(name)
        return getattr(self.encoder, name)

    def __len__(self) -> int:
        return len(self._posts)

    # the pair encoding only adds markers around the two mentions and calls encode_words,
    # which resolves to the cached one below
    encode_pair = TextEncoder.encode_pair

    def encode_words(self, words_batch: Sequence[Sequence[str]], max_length: int = 128, *,
                     markers: Sequence[Sequence[tuple[int, int, str, str]]] | None = None,
                     warn: bool = True) -> WordBatch:
        """Same result as :meth:`TextEncoder.encode_words`, from the cache where possible."""
        if markers is not None and len(markers) != len(words_batch):
            return self.encoder.encode_words(words_batch, max_length, markers=markers, warn=warn)
        max_length = int(max_length)
        keys = [(tuple(w), None if markers is None else tuple(tuple(m) for m in markers[b]),
                 max_length) for b, w in enumerate(words_batch)]
        miss = [b for b, k in enumerate(keys) if k not in self._posts]
        if miss:
            self._fill([words_batch[b] for b in miss],
                       None if markers is None else [markers[b] for b in miss],
                       [keys[b] for b in miss], max_length)
        self.hits += len(keys) - len(miss)
        self.misses += len(miss)
        entries = [self._posts[k] for k in keys]
        B = len(entries)
        pad = self.encoder.tokenizer.pad_token_id
        pad = pad if pad is not None else 0
        n_special = self.encoder.tokenizer.num_special_tokens_to_add(pair=False)
        T = max((len(e[0]) for e in entries), default=n_special)
        W = max((len(w) for w in words_batch), default=0)
        M = max((len(m) for m in markers), default=0) if markers is not None else 0
        ids = [e[0] + [pad] * (T - len(e[0])) for e in entries]
        att = [[1] * len(e[0]) + [0] * (T - len(e[0])) for e in entries]
        wi = [e[1] + [0] * (W - len(e[1])) for e in entries]
        wm = [e[2] + [False] * (W - len(e[2])) for e in entries]
        n_truncated = sum(e[4] for e in entries)
        if n_truncated and warn:
            warnings.warn(f"{n_truncated} of {B} posts did not fit in max_length={max_length} "
                          "sub-tokens; their cut words are predicted 'O'", stacklevel=2)
        marker_pos = None
        if markers is not None:
            marker_pos = torch.tensor([e[3] + [0] * (M - len(e[3])) for e in entries],
                                      dtype=torch.long).view(B, M)
        return WordBatch(torch.tensor(ids, dtype=torch.long).view(B, T),
                         torch.tensor(att, dtype=torch.long).view(B, T),
                         torch.tensor(wi, dtype=torch.long).view(B, W),
                         torch.tensor(wm, dtype=torch.bool).view(B, W), n_truncated, marker_pos)

    def _fill(self, words_batch, markers, keys, max_length: int) -> None:
        enc = self.encoder.encode_words(words_batch, max_length, markers=markers, warn=False)
        lengths = enc.attention_mask.sum(1).tolist()
        ids = enc.input_ids.tolist()
        wi = enc.word_index.tolist()
        wm = enc.word_mask.tolist()
        mp = enc.marker_pos.tolist() if enc.marker_pos is not None else None
        for b, key in enumerate(keys):
            n_words = len(words_batch[b])
            word_mask = wm[b][:n_words]
            # a post lost words iff it was truncated (markers always survive, vanished words
            # become [UNK] and stay)
            self._posts[key] = (ids[b][:lengths[b]], wi[b][:n_words], word_mask,
                                mp[b][:len(markers[b])] if mp is not None else [],
                                not all(word_mask))

    def encode_texts(self, texts: Sequence[str], max_length: int = 64) -> WordBatch:
        """Same result as :meth:`TextEncoder.encode_texts` (label names: the same few batches
        again and again); a fresh copy each call, so callers may change it."""
        key = (tuple(texts), int(max_length))
        if key not in self._texts:
            self._texts[key] = self.encoder.encode_texts(texts, max_length)
            self.misses += 1
        else:
            self.hits += 1
        wb = self._texts[key]
        return WordBatch(wb.input_ids.clone(), wb.attention_mask.clone(), wb.word_index.clone(),
                         wb.word_mask.clone(), wb.n_truncated)

    def stats(self) -> dict[str, int]:
        return {"posts": len(self._posts), "hits": self.hits, "misses": self.misses}


__all__ = ["TokenCache"]
