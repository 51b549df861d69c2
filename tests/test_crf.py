"""CRF: likelihood, Viterbi and marginals against brute-force enumeration; BIO constraints."""

import itertools

import pytest
import torch

from mmie.modules.crf import CRF, FORBIDDEN, allowed_transitions_bio

LABELS = ["O", "B-X", "I-X"]


def _random_crf(constraints=None, seed=0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(3, constraints=constraints)
    with torch.no_grad():  # larger than the default +-0.1 so transitions matter
        for p in crf.parameters():
            p.uniform_(-1.5, 1.5)
    return crf


def _path_score(crf: CRF, em: torch.Tensor, path, penalise: bool) -> float:
    start, trans, end = (crf.crf.start_transitions, crf.crf.transitions, crf.crf.end_transitions)
    if penalise:
        start = start + crf.penalty_start
        trans = trans + crf.penalty_transitions
        end = end + crf.penalty_end
    s = start[path[0]] + em[0, path[0]]
    for i in range(1, len(path)):
        s = s + trans[path[i - 1], path[i]] + em[i, path[i]]
    return float((s + end[path[-1]]).detach())


def _brute(crf, em_row, n, penalise):
    """All K**n paths of the first n positions: (scores dict, logZ, marginals [n, K])."""
    scores = {p: _path_score(crf, em_row, p, penalise)
              for p in itertools.product(range(crf.num_tags), repeat=n)}
    log_z = torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0).item()
    marg = torch.zeros(n, crf.num_tags, dtype=torch.float64)
    for p, s in scores.items():
        w = torch.exp(torch.tensor(s - log_z, dtype=torch.float64))
        for t, k in enumerate(p):
            marg[t, k] += w
    return scores, log_z, marg


LENGTHS = [4, 2, 3, 1, 0]


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(len(LENGTHS), 4, 3, generator=g) * 2
    mask = torch.tensor([[t < n for t in range(4)] for n in LENGTHS])
    tags = torch.randint(0, 3, (len(LENGTHS), 4), generator=g)
    tags[~mask] = -100  # padding may carry the usual ignore index
    return em, tags, mask


@pytest.mark.parametrize("constrained", [False, True])
def test_against_brute_force(constrained):
    cons = allowed_transitions_bio(LABELS) if constrained else None
    crf = _random_crf(cons)
    em, tags, mask = _batch()
    nll = crf.nll(em, tags, mask, reduction="none")
    paths = crf.decode(em, mask)
    marg = crf.token_marginals(em, mask)
    log_z = crf.log_partition(em, mask)
    for b, n in enumerate(LENGTHS):
        if n == 0:
            assert nll[b].item() == 0.0 and paths[b] == [] and marg[b].abs().sum() == 0
            continue
        # likelihood: never constrained
        scores, lz, _ = _brute(crf, em[b], n, penalise=False)
        gold = tuple(tags[b, :n].tolist())
        assert nll[b].item() == pytest.approx(lz - scores[gold], abs=1e-4)
        assert log_z[b].item() == pytest.approx(lz, abs=1e-4)
        # decoding and marginals: constrained when constraints are set
        scores_c, _, marg_bf = _brute(crf, em[b], n, penalise=constrained)
        assert tuple(paths[b]) == max(scores_c, key=scores_c.get)
        assert torch.allclose(marg[b, :n].double(), marg_bf, atol=1e-5)
        assert torch.allclose(marg[b, :n].sum(-1), torch.ones(n), atol=1e-5)
        assert marg[b, n:].abs().sum() == 0


def test_nll_reductions_and_gradient():
    crf = _random_crf()
    em, tags, mask = _batch()
    em.requires_grad_(True)
    per_row = crf.nll(em, tags, mask, reduction="none")
    nonempty = per_row[torch.tensor(LENGTHS) > 0]
    assert crf.nll(em, tags, mask).item() == pytest.approx(nonempty.mean().item(), rel=1e-6)
    assert crf.nll(em, tags, mask, "sum").item() == pytest.approx(per_row.sum().item(), rel=1e-6)
    assert crf.nll(em, tags, mask, "token_mean").item() == \
        pytest.approx(per_row.sum().item() / sum(LENGTHS), rel=1e-6)
    loss = crf(em, tags, mask)  # forward == nll
    loss.backward()
    assert em.grad[~mask].abs().sum() == 0 and em.grad[mask].abs().sum() > 0
    assert crf.crf.transitions.grad.abs().sum() > 0
    # all rows empty: an exact 0 that still backpropagates
    empty = crf.nll(em, tags, torch.zeros_like(mask))
    assert empty.item() == 0.0 and empty.requires_grad


def test_unconstrained_decode_matches_pytorch_crf():
    crf = _random_crf(seed=3)
    g = torch.Generator().manual_seed(5)
    em = torch.randn(6, 7, 3, generator=g)
    mask = torch.tensor([[t < n for t in range(7)] for n in [7, 5, 1, 3, 7, 2]])
    assert crf.decode(em, mask) == crf.crf.decode(em, mask)


def test_allowed_transitions_bio():
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    c = allowed_transitions_bio(labels)
    expected = torch.tensor([
        # to: O  B-P   I-P    B-L   I-L
        [1, 1, 0, 1, 0],  # from O
        [1, 1, 1, 1, 0],  # from B-PER
        [1, 1, 1, 1, 0],  # from I-PER
        [1, 1, 0, 1, 1],  # from B-LOC
        [1, 1, 0, 1, 1],  # from I-LOC
    ], dtype=torch.bool)
    assert torch.equal(c.transitions, expected)
    assert c.start.tolist() == [True, True, False, True, False]
    assert c.end.all()
    # mapping form and non-BIO extras
    c2 = allowed_transitions_bio({0: "O", 1: "B-A", 2: "I-A", 3: "X"})
    assert c2.transitions[3, 2].item() is False and c2.transitions[1, 2].item() is True
    with pytest.raises(ValueError, match="not BIO"):
        allowed_transitions_bio(["O", "S-PER"])


def test_constraints_make_decoding_valid():
    crf = CRF(3, constraints=allowed_transitions_bio(LABELS))
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
    # emissions prefer I-X at the start and after O: invalid BIO unconstrained
    em = torch.tensor([[[0.0, 1.0, 3.0], [2.0, -1.0, 0.5], [0.0, 0.5, 3.0]]])
    assert crf.decode(em, constrained=False) == [[2, 0, 2]]  # I O I: 3 + 2 + 3
    assert crf.decode(em) == [[1, 2, 2]]  # best valid: B I I = 1 + 0.5 + 3
    marg = crf.token_marginals(em)
    assert marg[0, 0, 2].item() < 1e-3  # I-X cannot open a sequence
    assert crf.penalty_transitions[0, 2].item() == FORBIDDEN
    # constraints are not saved in checkpoints (rebuilt from the label set)
    assert set(crf.state_dict()) == {"crf.start_transitions", "crf.end_transitions",
                                     "crf.transitions"}


def test_mask_must_be_left_aligned():
    crf = CRF(3)
    with pytest.raises(ValueError, match="left-aligned"):
        crf.decode(torch.zeros(1, 3, 3), torch.tensor([[True, False, True]]))
    with pytest.raises(ValueError, match="emissions"):
        crf.decode(torch.zeros(1, 3, 4))


# ---- vectorised Viterbi (issue 20) against the sequential decode it replaced --------------------
def _sequential_viterbi(crf: CRF, emissions, mask, constrained=True):
    """The decode of mmie <= issue 20, kept verbatim as the reference: a loop over positions
    for the recursion and another for the back-pointers (first maximum wins every tie)."""
    B, T, _ = emissions.shape
    if T == 0:
        return [[] for _ in range(B)]
    start, trans, end = crf._params(constrained)
    em = emissions.float()
    score = start + em[:, 0]
    history = []
    for t in range(1, T):
        cand = score.unsqueeze(2) + trans.unsqueeze(0) + em[:, t].unsqueeze(1)
        best, idx = cand.max(dim=1)
        score = torch.where(mask[:, t : t + 1], best, score)
        history.append(idx)
    score = score + end
    cur = score.argmax(dim=-1)
    out = torch.zeros(B, T, dtype=torch.long)
    for t in range(T - 1, -1, -1):
        out[:, t] = cur
        if t > 0:
            prev = history[t - 1].gather(1, cur.unsqueeze(1)).squeeze(1)
            cur = torch.where(mask[:, t], prev, cur)
    return [row[:n] for row, n in zip(out.tolist(), mask.sum(1).tolist())]


def _random_case(g, B, T, K, integer):
    """Emissions and parameters; ``integer``: small integers, so exact ties are common (every
    sum is exact in float32) and the tie-breaking rule is what decides the path."""
    if integer:
        em = torch.randint(-2, 3, (B, T, K), generator=g).float()
        params = [torch.randint(-1, 2, s, generator=g).float() for s in ((K,), (K,), (K, K))]
    else:
        em = torch.randn(B, T, K, generator=g) * 3
        params = [torch.randn(s, generator=g) for s in ((K,), (K,), (K, K))]
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    lengths[0] = T  # the longest row has the full width
    mask = torch.arange(T)[None] < lengths[:, None]
    return em, params, mask


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("constrained", [False, True])
def test_vectorised_viterbi_equals_sequential_decode(integer, constrained):
    labels = ["O", "B-A", "I-A", "B-B", "I-B"]
    g = torch.Generator().manual_seed(11 + integer)
    n_ties = 0
    for case in range(40):
        T = [1, 2, 3, 5, 8, 13, 31, 64][case % 8]
        crf = CRF(5, constraints=allowed_transitions_bio(labels))
        em, (start, end, trans), mask = _random_case(g, 9, T, 5, integer)
        with torch.no_grad():
            crf.crf.start_transitions.copy_(start)
            crf.crf.end_transitions.copy_(end)
            crf.crf.transitions.copy_(trans)
        ref = _sequential_viterbi(crf, em, mask, constrained)
        assert crf.decode(em, mask, constrained=constrained) == ref, (case, T)
        paths, lengths = crf.decode_tensor(em, mask, constrained=constrained)
        assert paths.shape == (9, T) and lengths.tolist() == mask.sum(1).tolist()
        if integer:  # count steps whose best previous tag was tied (so ties were exercised)
            s, tr, _ = crf._params(constrained)
            score = s + em[:, 0]
            for t in range(1, T):
                cand = score.unsqueeze(2) + tr.unsqueeze(0) + em[:, t].unsqueeze(1)
                best = cand.max(dim=1).values
                n_ties += int(((cand == best.unsqueeze(1)).sum(1) > 1).sum())
                score = torch.where(mask[:, t : t + 1], best, score)
    if integer:
        assert n_ties > 100


def test_vectorised_viterbi_against_brute_force_on_tiny_sizes():
    """Every path of every row enumerated (K = 3, T <= 5): the decoded path has the best score,
    and among equally good paths (integer scores) it is the one the tie rule picks."""
    g = torch.Generator().manual_seed(4)
    for integer in (False, True):
        for case in range(12):
            crf = CRF(3)
            em, (start, end, trans), mask = _random_case(g, 6, 5, 3, integer)
            with torch.no_grad():
                crf.crf.start_transitions.copy_(start)
                crf.crf.end_transitions.copy_(end)
                crf.crf.transitions.copy_(trans)
            paths = crf.decode(em, mask)
            for b, n in enumerate(mask.sum(1).tolist()):
                if n == 0:
                    assert paths[b] == []
                    continue
                scores, _, _ = _brute(crf, em[b], n, penalise=False)
                best = max(scores.values())
                assert len(paths[b]) == n
                assert scores[tuple(paths[b])] == pytest.approx(best, abs=1e-4)
    # a hand-made tie: every path scores 0, the rule gives the all-lowest-tag path
    crf = CRF(3)
    with torch.no_grad():
        for p in crf.parameters():
            p.zero_()
    assert crf.decode(torch.zeros(1, 4, 3)) == [[0, 0, 0, 0]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_vectorised_viterbi_same_on_cuda():
    g = torch.Generator().manual_seed(2)
    crf = CRF(5)
    em, (start, end, trans), mask = _random_case(g, 64, 40, 5, integer=True)
    with torch.no_grad():
        crf.crf.start_transitions.copy_(start)
        crf.crf.end_transitions.copy_(end)
        crf.crf.transitions.copy_(trans)
    ref = _sequential_viterbi(crf, em, mask)
    assert crf.cuda().decode(em.cuda(), mask.cuda()) == ref


def _bio_crf_case(seed, B, T):
    labels = ["O", "B-A", "I-A", "B-B", "I-B"]
    g = torch.Generator().manual_seed(seed)
    crf = CRF(5, constraints=allowed_transitions_bio(labels))
    em, (start, end, trans), mask = _random_case(g, B, T, 5, integer=False)
    with torch.no_grad():
        crf.crf.start_transitions.copy_(start)
        crf.crf.end_transitions.copy_(end)
        crf.crf.transitions.copy_(trans)
    return crf, em, mask


def test_decode_with_scores_is_decode_and_marginals_in_one_call():
    crf, em, mask = _bio_crf_case(5, 7, 13)
    crf.requires_grad_(False)
    paths, lengths, scores = crf.decode_with_scores(em, mask)
    ref_paths, ref_lengths = crf.decode_tensor(em, mask)
    marg = crf.token_marginals(em, mask)
    assert torch.equal(paths, ref_paths) and torch.equal(lengths, ref_lengths)
    assert torch.equal(scores, marg.gather(2, ref_paths.unsqueeze(2)).squeeze(2))
    # a score is a probability; padded positions score 0
    assert float(scores.max()) <= 1.0 + 1e-6 and float(scores.min()) >= 0.0
    assert bool((scores[~mask] == 0).all())
    # the mask is still checked
    bad = mask.clone()
    bad[0, 0] = False
    with pytest.raises(ValueError, match="left-aligned"):
        crf.decode_with_scores(em, bad)
    # graph replay on: CPU inputs run eagerly, same tensors, no graph captured
    crf.use_cuda_graphs()
    out = crf.decode_with_scores(em, mask)
    assert all(torch.equal(a, b) for a, b in zip(out, (paths, lengths, scores)))
    assert crf.cuda_graphs.graphs == {} and crf.cuda_graphs.replays == 0
    crf.use_cuda_graphs(False)
    assert crf.cuda_graphs is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_graph_replay_is_bit_identical_to_eager_on_cuda():
    crf, _, _ = _bio_crf_case(6, 32, 24)
    crf = crf.cuda()
    cases = [_bio_crf_case(seed, 32, 24)[1:] for seed in (7, 8, 9)]
    cases.append(_bio_crf_case(10, 16, 9)[1:])  # another shape: a second graph
    eager = [crf.decode_with_scores(em.cuda(), m.cuda()) for em, m in cases]
    crf.use_cuda_graphs()
    for _ in range(2):  # the first pass captures, the second only replays
        for (em, m), ref in zip(cases, eager):
            out = crf.decode_with_scores(em.cuda(), m.cuda())
            assert all(torch.equal(a, b) for a, b in zip(out, ref))
    cache = crf.cuda_graphs
    assert len(cache.graphs) == 2 and cache.failures == 0 and cache.replays == 8
    # parameters changed in place are seen by the captured graph
    with torch.no_grad():
        crf.crf.transitions.mul_(0.5)
    em, m = cases[0]
    crf.use_cuda_graphs(False)
    ref = crf.decode_with_scores(em.cuda(), m.cuda())
    crf.use_cuda_graphs()
    crf.decode_with_scores(em.cuda(), m.cuda())  # capture
    with torch.no_grad():
        crf.crf.transitions.mul_(2.0)
    out = crf.decode_with_scores(em.cuda(), m.cuda())
    crf.use_cuda_graphs(False)
    assert all(torch.equal(a, b) for a, b in zip(out, crf.decode_with_scores(em.cuda(),
                                                                               m.cuda())))
    assert not torch.equal(ref[2], out[2])
