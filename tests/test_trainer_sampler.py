"""Episode sampler properties over thousands of episodes."""

from __future__ import annotations

import pytest
import torch

from rfmml.trainer.sampler import EpisodeSampler, EpisodeSpec, acf_spec, ret_spec

# 6 majority classes (40..60 images) and 3 minority classes (5, 6, 8 images)
COUNTS = [40, 45, 50, 55, 60, 42, 5, 6, 8]
MAJORITY = list(range(6))
N_MAX = 5


@pytest.fixture(scope="module")
def labels() -> torch.Tensor:
    lab = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    return lab[torch.randperm(len(lab), generator=torch.Generator().manual_seed(3))]


def _check_episode(ep, labels, spec, k_range, n_range):
    assert k_range[0] <= ep.k <= k_range[1]
    assert n_range[0] <= ep.n <= n_range[1]
    assert ep.support.shape == (ep.k * ep.n,)
    support, query = ep.support.tolist(), ep.query.tolist()
    assert len(set(support)) == len(support)
    assert len(set(query)) == len(query)
    assert not set(support) & set(query), "support and query share an image"
    classes = ep.classes.tolist()
    assert len(set(classes)) == ep.k and set(classes) <= set(spec.classes)
    # support is class-major and the labels agree with the images' true classes
    assert labels[ep.support].view(ep.k, ep.n).tolist() == [[c] * ep.n for c in classes]
    assert labels[ep.query].tolist() == [classes[i] for i in ep.query_labels.tolist()]


def test_ret_episodes(labels):
    sampler = EpisodeSampler(labels, len(COUNTS), seed=0, device="cpu")
    spec = ret_spec(MAJORITY, N_MAX, queries=5)
    sampler.check(spec)
    ks, ns = set(), set()
    for _ in range(2000):
        ep = sampler.sample(spec)
        _check_episode(ep, labels, spec, (2, 6), (1, N_MAX - 1))
        assert set(ep.classes.tolist()) <= set(MAJORITY)
        assert ep.n_query == ep.k * 5  # majority classes are large: never capped
        assert sum(ep.queries_per_class()) == ep.n_query
        ks.add(ep.k)
        ns.add(ep.n)
    assert ks == set(range(2, 7))
    assert ns == set(range(1, N_MAX))


def test_ret_queries_pooled_uniformly(labels):
    """Pooled queries: per-class counts vary, and on average each class gets `queries`."""
    sampler = EpisodeSampler(labels, len(COUNTS), seed=1, device="cpu")
    spec = EpisodeSpec(tuple(MAJORITY), 3, 3, 2, 2, 4, "pool")
    per_class = torch.tensor([sampler.sample(spec).queries_per_class() for _ in range(1500)]).float()
    assert per_class.sum(1).eq(12).all()
    assert per_class.std() > 0.5  # not balanced
    assert per_class.mean().item() == pytest.approx(4.0, abs=0.1)


def test_acf_episodes_balanced(labels):
    sampler = EpisodeSampler(labels, len(COUNTS), seed=2, device="cpu")
    spec = acf_spec(len(COUNTS), N_MAX, queries=5)
    sampler.check(spec)
    ns = set()
    for _ in range(2000):
        ep = sampler.sample(spec)
        _check_episode(ep, labels, spec, (9, 9), (1, N_MAX - 1))
        q = min(5, N_MAX - ep.n)
        assert ep.queries_per_class() == [q] * 9
        ns.add(ep.n)
    assert ns == set(range(1, N_MAX))


def test_n_max_two_means_one_shot():
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 2)
    sampler = EpisodeSampler(labels, 3, seed=0, device="cpu")
    ret, acf = ret_spec([0, 1], 2, 5), acf_spec(3, 2, 5)
    assert (ret.n_min, ret.n_max) == (1, 1)
    for _ in range(300):
        assert sampler.sample(ret).n == 1
        ep = sampler.sample(acf)
        assert ep.n == 1 and ep.queries_per_class() == [1, 1, 1]  # the 2-image class: 1 shot + 1 query


def test_pool_capped_by_small_classes():
    """RET on small classes: the query count is capped so that it can always be filled."""
    labels = torch.tensor([0] * 3 + [1] * 4)
    sampler = EpisodeSampler(labels, 2, seed=0, device="cpu")
    spec = EpisodeSpec((0, 1), 2, 2, 2, 2, 5, "pool")
    for _ in range(200):
        ep = sampler.sample(spec)
        assert ep.n_query == 3 and not set(ep.support.tolist()) & set(ep.query.tolist())


def test_check_rejects_impossible_spec(labels):
    sampler = EpisodeSampler(labels, len(COUNTS), seed=0, device="cpu")
    with pytest.raises(ValueError):
        sampler.check(acf_spec(len(COUNTS), 7, 5))  # the 5-image class cannot give 6 shots + 1 query


def test_same_seed_same_episodes_and_state_roundtrip(labels):
    spec = ret_spec(MAJORITY, N_MAX, 5)
    a = EpisodeSampler(labels, len(COUNTS), seed=7, device="cpu")
    b = EpisodeSampler(labels, len(COUNTS), seed=7, device="cpu")
    for _ in range(20):
        x, y = a.sample(spec), b.sample(spec)
        assert torch.equal(x.support, y.support) and torch.equal(x.query, y.query)
    state = a.state()
    first = [a.sample(spec).query for _ in range(5)]
    a.load_state(state)
    assert all(torch.equal(q, a.sample(spec).query) for q in first)
