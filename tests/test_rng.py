"""Per-env counter-based random streams (rlkd.core.rng.BatchRNG)."""

from __future__ import annotations


import pytest
import torch

from rlkd.core.rng import BatchRNG


def test_same_seed_same_stream_and_draws_advance():
    a, b = BatchRNG(8, 123), BatchRNG(8, 123)
    x = a.uniform(None, 5)
    assert x.shape == (8, 5) and x.dtype == torch.float32
    assert torch.equal(x, b.uniform(None, 5))
    y = a.uniform(None, 5)
    assert not torch.equal(x, y)  # the counters advanced
    assert torch.equal(y, b.uniform(None, 5))
    # Rows (envs) and columns (draws) are not copies of each other.
    assert len(set(x.flatten().tolist())) == x.numel()


def test_different_seeds_differ():
    assert not torch.equal(BatchRNG(8, 0).uniform(None, 4), BatchRNG(8, 1).uniform(None, 4))
    # Any Python int works (folded to 32 bits), including negative and huge seeds.
    for s in (-1, 2**40 + 3):
        assert torch.isfinite(BatchRNG(4, s).uniform(None, 3)).all()


def test_streams_do_not_depend_on_batch_composition():
    full = BatchRNG(16, 7)
    ref = full.uniform(None, 6)
    # A smaller batch holds the same streams for its env ids.
    assert torch.equal(BatchRNG(4, 7).uniform(None, 6), ref[:4])
    # Drawing for a subset gives those rows of the full draw, in the order asked for ...
    sub = BatchRNG(16, 7)
    ids = torch.tensor([9, 2, 15])
    assert torch.equal(sub.uniform(ids, 6), ref[ids])
    # ... and advances only their counters: the others still start from the beginning.
    others = torch.tensor([i for i in range(16) if i not in ids.tolist()])
    assert torch.equal(sub.uniform(others, 6), ref[others])
    # Now everyone has drawn 6: a full draw continues every stream in step.
    assert torch.equal(sub.uniform(None, 3), full.uniform(None, 3))


def test_draws_are_a_counter_stream():
    # Splitting a draw into pieces gives the same numbers as one draw (counter-based streams).
    a, b = BatchRNG(4, 3), BatchRNG(4, 3)
    assert torch.equal(torch.cat([a.uniform(None, 2), a.uniform(None, 5)], dim=1), b.uniform(None, 7))


def test_reseed_and_state_dict_round_trip():
    r = BatchRNG(6, 11)
    first = r.uniform(None, 4)
    r.uniform(torch.tensor([1, 3]), 10)
    r.reseed(11)
    assert torch.equal(r.uniform(None, 4), first)
    assert r.seed == 11

    r.uniform(torch.tensor([0, 5]), 3)  # uneven counters
    state = r.state_dict()
    expected = r.uniform(None, 8)
    r.uniform(None, 2)  # the saved counter is a copy, not a view
    other = BatchRNG(6, 999)
    other.load_state_dict(state)
    assert torch.equal(other.uniform(None, 8), expected)
    assert other.seed == 11


def test_uniform_bounds_and_moments():
    r = BatchRNG(64, 0)
    u = r.uniform(None, 20_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(float(u.mean()) - 0.5) < 2e-3
    assert abs(float(u.var()) - 1 / 12) < 2e-3
    # Histogram roughly flat (each of 20 bins within 3% of its expected share).
    counts = torch.histc(u, bins=20, min=0.0, max=1.0)
    assert ((counts / u.numel() - 0.05).abs() < 0.05 * 0.03).all()
    # Per-row tensor bounds broadcast.
    low = torch.arange(64, dtype=torch.float32)[:, None]
    v = r.uniform(None, 100, low=low, high=low + 0.5)
    assert (v >= low).all() and (v < low + 0.5).all()
    w = r.uniform(None, 1000, low=-2.0, high=-1.0)
    assert w.min() >= -2.0 and w.max() < -1.0


def test_normal_moments():
    r = BatchRNG(64, 5)
    z = r.normal(None, 20_001)  # odd count: Box-Muller pairs are trimmed
    assert z.shape == (64, 20_001) and torch.isfinite(z).all()
    z = z.flatten().double()
    assert abs(float(z.mean())) < 0.01
    assert abs(float(z.std()) - 1.0) < 0.01
    assert abs(float((z ** 3).mean())) < 0.03  # skewness
    assert abs(float((z ** 4).mean()) - 3.0) < 0.1  # kurtosis
    assert abs(float((z.abs() < 1).double().mean()) - 0.6827) < 0.005
    assert BatchRNG(3, 0).normal(torch.tensor([2]), 1).shape == (1, 1)


def test_env_streams_are_uncorrelated():
    u = BatchRNG(2, 8).uniform(None, 50_000).double()
    c = torch.corrcoef(u)[0, 1]
    assert abs(float(c)) < 0.02
    # Lag-1 correlation within one stream.
    x = u[0]
    assert abs(float(torch.corrcoef(torch.stack([x[:-1], x[1:]]))[0, 1])) < 0.02


def test_integers():
    r = BatchRNG(32, 2)
    k = r.integers(None, 5000, 7)
    assert k.dtype == torch.int64 and k.min() == 0 and k.max() == 6
    share = torch.bincount(k.flatten(), minlength=7).double() / k.numel()
    assert ((share - 1 / 7).abs() < 0.01).all()
    high = torch.arange(1, 33)
    k = r.integers(None, 200, high)
    assert (k >= 0).all() and (k < high[:, None]).all()
    assert (k[0] == 0).all()  # high = 1 -> always 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_streams_match():
    cpu = BatchRNG(8, 4, "cpu").uniform(None, 16)
    gpu = BatchRNG(8, 4, "cuda").uniform(None, 16).cpu()
    assert torch.equal(cpu, gpu)
