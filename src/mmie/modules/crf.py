"""Linear-chain CRF for BIO tagging: likelihood (pytorch-crf), Viterbi and marginals.

:class:`CRF` wraps :class:`torchcrf.CRF` (its parameters and its negative log-likelihood)
and adds what pytorch-crf lacks: optional BIO transition constraints at decoding time and
per-token posterior marginals (forward-backward), used as confidence scores of predicted
entities.

Why the constraints apply at decoding only: gold tag sequences of real data sets break BIO
(Twitter-2015 has I- tags that open an entity), so a constrained likelihood could be
infinite on them; the model learns unconstrained transition scores, and decoding (and the
marginals that score decoded spans) is restricted to well-formed BIO sequences by adding
``-1e4`` to every forbidden transition (``O -> I-X``, ``B-X/I-X -> I-Y`` with ``Y != X``,
``START -> I-X``). Use ``constraints=None`` to turn it off.

Masks are boolean ``[B, T]`` with True on valid positions; they must be left-aligned (a
prefix of each row), as pytorch-crf assumes. Rows with no valid position are allowed: they
contribute nothing to the loss and decode to ``[]``.

Public API: :class:`CRF`, :func:`allowed_transitions_bio`, :class:`TransitionConstraints`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torchcrf import CRF as _TorchCRF

#: score added to a forbidden transition (finite, so a sequence is always decodable).
FORBIDDEN = -1e4

_BIO = re.compile(r"^([BI])-(.+)$")


class TransitionConstraints(NamedTuple):
    """Allowed moves: ``transitions[i, j]`` (tag i -> tag j), ``start[j]``, ``end[i]``."""

    transitions: torch.Tensor  # bool [K, K]
    start: torch.Tensor  # bool [K]
    end: torch.Tensor  # bool [K]


def allowed_transitions_bio(id2label: Sequence[str] | Mapping[int, str]) -> TransitionConstraints:
    """BIO constraints for a label set given as a list (index = id) or an ``{id: label}`` map.

    ``I-X`` may follow only ``B-X`` or ``I-X``; it may not start a sequence. Every other
    move is allowed (any tag may end a sequence). Labels that are neither ``B-*`` nor
    ``I-*`` (``O``, and e.g. ``X``/``[CLS]`` of sub-word schemes) behave like ``O``.
    BIOES-style labels (``E-``, ``S-``, ``L-``, ``U-``) raise ``ValueError``.
    """
    if isinstance(id2label, Mapping):
        ids = sorted(id2label)
        if ids != list(range(len(ids))):
            raise ValueError(f"allowed_transitions_bio: label ids must be 0..{len(ids) - 1}, "
                             f"got {ids}")
        labels = [id2label[i] for i in ids]
    else:
        labels = list(id2label)
    parsed: list[tuple[str, str | None]] = []
    for lab in labels:
        if re.match(r"^[ESLU]-", lab):
            raise ValueError(f"allowed_transitions_bio: label {lab!r} is not BIO "
                             f"(BIOES/BILOU constraints are not implemented)")
        m = _BIO.match(lab)
        parsed.append((m.group(1), m.group(2)) if m else ("O", None))
    K = len(labels)
    trans = torch.ones(K, K, dtype=torch.bool)
    start = torch.ones(K, dtype=torch.bool)
    for j, (pj, tj) in enumerate(parsed):
        if pj != "I":
            continue
        start[j] = False
        for i, (pi, ti) in enumerate(parsed):
            trans[i, j] = pi in ("B", "I") and ti == tj
    return TransitionConstraints(trans, start, torch.ones(K, dtype=torch.bool))


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags (batch first).

    Args:
        num_tags: number of tags ``K``.
        constraints: ``None`` (unconstrained), a :class:`TransitionConstraints` (e.g. from
            :func:`allowed_transitions_bio`) or a bool ``[K, K]`` matrix of allowed
            transitions. Applied by :meth:`decode` and :meth:`token_marginals` (by default),
            never by :meth:`nll`.

    Methods: :meth:`nll` (training loss), :meth:`decode` (Viterbi), :meth:`token_marginals`
    (forward-backward posteriors ``p(y_t = k | x)``), :meth:`decode_with_scores` (both, for
    prediction; optionally replayed from CUDA graphs: :meth:`use_cuda_graphs`),
    :meth:`log_partition`.
    """

    def __init__(self, num_tags: int, *, constraints: TransitionConstraints | torch.Tensor
                 | None = None):
        super().__init__()
        self.num_tags = num_tags
        self.crf = _TorchCRF(num_tags, batch_first=True)
        self.has_constraints = constraints is not None
        pen_t = torch.zeros(num_tags, num_tags)
        pen_s = torch.zeros(num_tags)
        pen_e = torch.zeros(num_tags)
        if constraints is not None:
            if isinstance(constraints, torch.Tensor):
                constraints = TransitionConstraints(constraints.bool(),
                                                    torch.ones(num_tags, dtype=torch.bool),
                                                    torch.ones(num_tags, dtype=torch.bool))
            if constraints.transitions.shape != (num_tags, num_tags):
                raise ValueError(f"CRF: constraints are for {constraints.transitions.shape[0]}"
                                 f" tags, the CRF has {num_tags}")
            pen_t = (~constraints.transitions.bool()).float() * FORBIDDEN
            pen_s = (~constraints.start.bool()).float() * FORBIDDEN
            pen_e = (~constraints.end.bool()).float() * FORBIDDEN
        # not persistent: rebuilt from the label set, so checkpoints do not depend on them
        self.register_buffer("penalty_transitions", pen_t, persistent=False)
        self.register_buffer("penalty_start", pen_s, persistent=False)
        self.register_buffer("penalty_end", pen_e, persistent=False)
        self._graphs = None  # GraphCache of decode_with_scores (use_cuda_graphs)

    # ---- helpers --------------------------------------------------------------------------
    def _check(self, emissions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(f"CRF: emissions must be [B, T, {self.num_tags}], got "
                             f"{tuple(emissions.shape)}")
        if mask is None:
            return torch.ones(emissions.shape[:2], dtype=torch.bool, device=emissions.device)
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"CRF: mask {tuple(mask.shape)} must be {tuple(emissions.shape[:2])}")
        mask = mask.bool()
        if mask.shape[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("CRF: mask must be left-aligned (valid positions form a prefix "
                             "of each row)")
        return mask

    def _params(self, constrained: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = self.crf.start_transitions.float()
        trans = self.crf.transitions.float()
        end = self.crf.end_transitions.float()
        if constrained and self.has_constraints:
            start = start + self.penalty_start
            trans = trans + self.penalty_transitions
            end = end + self.penalty_end
        return start, trans, end

    # ---- training -------------------------------------------------------------------------
    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None,
            reduction: str = "mean") -> torch.Tensor:
        """Negative log-likelihood of ``tags [B, T]`` (unconstrained, via pytorch-crf).

        ``reduction``: ``"mean"`` over sequences (default, as HVPNeT/MMIB's code),
        ``"token_mean"`` over valid tokens, ``"sum"``, or ``"none"`` (``[B]``, 0 for empty
        rows). Tags at padded positions are ignored (any value, e.g. -100).
        """
        if reduction not in ("mean", "token_mean", "sum", "none"):
            raise ValueError(f"CRF.nll: unknown reduction {reduction!r}")
        mask = self._check(emissions, mask)
        if tags.shape != mask.shape:
            raise ValueError(f"CRF.nll: tags {tuple(tags.shape)} must be {tuple(mask.shape)}")
        em = emissions.float()
        tags = tags.long().masked_fill(~mask, 0)
        keep = mask[:, 0]
        out = em.new_zeros(em.shape[0])
        if bool(keep.any()):
            llh = self.crf(em[keep], tags[keep], mask[keep], reduction="none")
            out = out.masked_scatter(keep, -llh) if not bool(keep.all()) else -llh
        if reduction == "none":
            return out
        # empty rows contribute an exact 0 that stays connected to the graph
        total = out.sum() + em.sum() * 0.0
        if reduction == "sum":
            return total
        if reduction == "mean":
            return total / keep.sum().clamp_min(1)
        return total / mask.sum().clamp_min(1)

    forward = nll  # ``crf(emissions, tags, mask)`` is the training loss

    # ---- inference ------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None,
               constrained: bool = True) -> list[list[int]]:
        """Viterbi: the best tag sequence per row (``len`` = the row's valid length).

        With ``constrained`` (default) and constraints set, forbidden transitions get
        ``-1e4``, so the result is well-formed BIO whenever any well-formed path exists.
        Ties go to the lowest previous tag at every step and the lowest last tag (the first
        maximum), as :meth:`decode_tensor` computes them.
        """
        paths, lengths = self.decode_tensor(emissions, mask, constrained=constrained)
        rows = paths.tolist()
        return [row[:n] for row, n in zip(rows, lengths.tolist())]

    @torch.no_grad()
    def decode_tensor(self, emissions: torch.Tensor, mask: torch.Tensor | None = None,
                      constrained: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched Viterbi on the emissions' device: ``(paths [B, T] long, lengths [B])``;
        positions past a row's length hold its last tag (0 for empty rows).

        One loop over time steps (the max-product recursion, a few kernels per step, no
        Python per row); the back-pointers are followed for all positions at once by
        composing them by pointer doubling (``ceil(log2 T)`` gathers), not step by step.
        The scores are added in the same order as the textbook loop (``score_i + trans_ij``
        then ``+ emission_j``), and ``max`` returns the first maximum, so the result,
        ties included, is that of the sequential decode (tested against it and against
        brute-force enumeration).
        """
        return self._viterbi(emissions, self._check(emissions, mask), constrained)

    def _viterbi(self, emissions: torch.Tensor, mask: torch.Tensor,
                 constrained: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`decode_tensor` on a checked mask (no host synchronisation)."""
        B, T, K = emissions.shape
        dev = emissions.device
        lengths = mask.sum(1)
        if T == 0:
            return torch.zeros(B, 0, dtype=torch.long, device=dev), lengths
        start, trans, end = self._params(constrained)
        em = emissions.float()
        score = start + em[:, 0]
        trans0 = trans.unsqueeze(0)
        idxs = []
        for t in range(1, T):
            cand = score.unsqueeze(2) + trans0 + em[:, t].unsqueeze(1)
            best, idx = cand.max(dim=1)
            score = torch.where(mask[:, t : t + 1], best, score)
            idxs.append(idx)
        last = (score + end).argmax(dim=-1)  # [B]
        ident = torch.arange(K, device=dev)
        # back-pointers g [B, T, K]: g[b, s, j] = best tag at s given tag j at s+1; the
        # identity at padded steps and at T-1, so a row keeps its last tag past its end
        g = ident.expand(B, T, K)
        if T > 1:
            g = torch.cat([torch.where(mask[:, 1:, None], torch.stack(idxs, 1), ident),
                           g[:, :1]], dim=1)
        # compose suffixes by pointer doubling: after the loop g[:, s] = g_s o ... o g_{T-1},
        # so the tag at s is g[:, s](last)
        d = 1
        while d < T:
            g = torch.cat([torch.gather(g[:, : T - d], 2, g[:, d:]), g[:, T - d:]], dim=1)
            d *= 2
        paths = torch.gather(g, 2, last.view(B, 1, 1).expand(B, T, 1)).squeeze(2)
        paths = paths.masked_fill(lengths.view(B, 1) == 0, 0)
        return paths, lengths

    def _forward_backward(self, emissions: torch.Tensor, mask: torch.Tensor, constrained: bool):
        start, trans, end = self._params(constrained)
        em = emissions.float()
        B, T, K = em.shape
        alphas = [start + em[:, 0]]
        for t in range(1, T):
            nxt = torch.logsumexp(alphas[-1].unsqueeze(2) + trans.unsqueeze(0), dim=1) + em[:, t]
            alphas.append(torch.where(mask[:, t : t + 1], nxt, alphas[-1]))
        betas = [end.expand(B, K)]
        for t in range(T - 2, -1, -1):
            nxt = torch.logsumexp(trans.unsqueeze(0) + (em[:, t + 1] + betas[0]).unsqueeze(1),
                                  dim=2)
            betas.insert(0, torch.where(mask[:, t + 1 : t + 2], nxt, end.expand(B, K)))
        alpha = torch.stack(alphas, dim=1)
        beta = torch.stack(betas, dim=1)
        log_z = torch.logsumexp(alphas[-1] + end, dim=-1)
        return alpha, beta, log_z

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor | None = None,
                      constrained: bool = False) -> torch.Tensor:
        """``log Z`` per row ``[B]`` (0 for rows with no valid position)."""
        mask = self._check(emissions, mask)
        if emissions.shape[1] == 0:
            return emissions.new_zeros(emissions.shape[0], dtype=torch.float)
        _, _, log_z = self._forward_backward(emissions, mask, constrained)
        return torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))

    def token_marginals(self, emissions: torch.Tensor, mask: torch.Tensor | None = None,
                        constrained: bool = True) -> torch.Tensor:
        """Posterior marginals ``p(y_t = k | x)``: ``[B, T, K]`` float, rows summing to 1 on
        valid positions and 0 on padding. With ``constrained`` (default) the distribution is
        the one :meth:`decode` maximises (restricted to well-formed BIO sequences).

        A predicted entity's score is then e.g. the mean marginal of its tokens' tags.
        """
        return self._marginals(emissions, self._check(emissions, mask), constrained)

    def _marginals(self, emissions: torch.Tensor, mask: torch.Tensor,
                   constrained: bool) -> torch.Tensor:
        B, T, K = emissions.shape
        if T == 0:
            return emissions.new_zeros(B, 0, K, dtype=torch.float)
        alpha, beta, log_z = self._forward_backward(emissions, mask, constrained)
        marg = torch.exp(alpha + beta - log_z[:, None, None])
        return marg * mask.unsqueeze(-1).to(marg.dtype)

    def _decode_scores(self, emissions: torch.Tensor,
                       mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        paths, lengths = self._viterbi(emissions, mask, True)
        marg = self._marginals(emissions, mask, True)
        return paths, lengths, marg.gather(2, paths.unsqueeze(2)).squeeze(2)

    def decode_with_scores(self, emissions: torch.Tensor, mask: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Constrained Viterbi paths ``[B, T]``, lengths ``[B]`` and the marginal of each
        decoded tag ``[B, T]`` (what prediction reports): :meth:`decode_tensor` and
        :meth:`token_marginals` in one call, the mask checked once.

        With ``cuda_graphs`` set (:meth:`use_cuda_graphs`) and the emissions on a GPU, the
        two loops over time steps are replayed from a CUDA graph captured per (batch,
        length, dtype): the same kernels, one launch (:class:`mmie.modules.cuda_graphs.GraphCache`).
        """
        mask = self._check(emissions, mask)
        if self._graphs is not None and emissions.is_cuda and emissions.shape[1] > 0:
            return self._graphs(emissions, mask)
        return self._decode_scores(emissions, mask)

    def use_cuda_graphs(self, enabled: bool = True, max_graphs: int = 32) -> None:
        """Turn graph replay of :meth:`decode_with_scores` on or off (off by default; only
        GPU inputs are affected). Each distinct (batch, length) keeps one graph and its
        buffers, so pad lengths to a few buckets when batches vary. A graph reads the CRF's
        parameters where they were at capture (in-place updates are seen): after moving the
        module to another device, call this again to drop the old graphs."""
        from mmie.modules.cuda_graphs import GraphCache

        self._graphs = (GraphCache(self._decode_scores, max_graphs=max_graphs, name="CRF")
                        if enabled else None)

    @property
    def cuda_graphs(self):
        """The graph cache when graph replay is on, else None."""
        return self._graphs

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constraints={self.has_constraints}"


__all__ = ["CRF", "allowed_transitions_bio", "TransitionConstraints", "FORBIDDEN"]
