"""llmrec.topk: API, validation and the exact chunked CPU path (compared to the torch reference)."""

import importlib

import numpy as np
import pytest
import torch

import llmrec
from llmrec.retrieval import TopKError, topk
from llmrec.retrieval.topk import cpu as topk_cpu
from tests.support.topk_cases import check, integer_data, mask_of, normal_data, random_exclude

topk_module = importlib.import_module("llmrec.retrieval.topk")


@pytest.fixture(params=["numpy", "numpy_no_filter", "numpy_threads", "onednn", "torch"])
def cpu_mode(request, monkeypatch):
    """Run a test through each CPU code path: the numpy path (threshold filter after the first
    chunk; test sizes keep BLAS on one thread), numpy with the filter off (every chunk fully
    selected), numpy's GEMM with BLAS's own threads, oneDNN's GEMM (what large calls with B >= 8
    use), and the generic torch path (CUDA without triton)."""
    if request.param == "numpy_no_filter":
        monkeypatch.setattr(topk_cpu, "FILTER_MAX_PER_QUERY", -1)
    elif request.param == "numpy_threads":
        monkeypatch.setattr(topk_cpu, "SINGLE_THREAD_MACS", -1)
        monkeypatch.setattr(topk_cpu, "USE_ONEDNN", False)
    elif request.param == "onednn":
        assert topk_cpu.onednn_available()  # the pinned CPU torch build has it
        monkeypatch.setattr(topk_cpu, "SINGLE_THREAD_MACS", -1)
        monkeypatch.setattr(topk_cpu, "ONEDNN_MIN_B", 1)
    elif request.param == "torch":
        monkeypatch.setattr(topk_module, "USE_CPU_PATH", False)
    return request.param


@pytest.mark.parametrize("B,N,D,k,chunk", [
    (1, 1, 1, 1, None), (3, 37, 5, 4, 8), (17, 203, 33, 13, 50), (5, 1000, 70, 128, 129),
    (40, 129, 8, 3, 4096), (2, 300, 3, 100, 7),
])
def test_ties_and_duplicates_match_reference(B, N, D, k, chunk, cpu_mode):
    q, x = integer_data(B, N, D)
    check(topk(q, x, k, chunk=chunk), q, x, k)


def test_all_equal_scores_pick_lowest_indices(cpu_mode):
    q, x = torch.ones(2, 4), torch.ones(50, 4)
    v, i = topk(q, x, 7, chunk=6)
    assert i.tolist() == [list(range(7))] * 2 and torch.equal(v, torch.full((2, 7), 4.0))


@pytest.mark.parametrize("chunk", [None, 16, 97])
def test_normal_data(chunk, cpu_mode):
    q, x = normal_data(9, 777, 31)
    check(topk(q, x, 25, chunk=chunk), q, x, 25, exact_values=False)


@pytest.mark.parametrize("as_mask", [False, True])
def test_exclusion(as_mask, cpu_mode):
    B, N, D, k = 6, 150, 9, 11
    q, x = integer_data(B, N, D, seed=1)
    ex = random_exclude(B, N, 60, seed=2)
    arg = mask_of(ex, B, N) if as_mask else [set(e) for e in ex]
    v, i = topk(q, x, k, arg, chunk=32)
    check((v, i), q, x, k, ex)
    for b, e in enumerate(ex):
        assert not set(i[b].tolist()) & set(e)


def test_k_equals_n_minus_excluded(cpu_mode):
    B, N, D = 3, 40, 6
    q, x = integer_data(B, N, D, seed=3)
    ex = [list(range(0, 40, 2)), list(range(5, 25)), [1, 1, 3, 39, 38, 20, 21, 22, 23, 0, 2, 4, 6, 8, 10,
                                                      12, 14, 16, 18, 19]]
    k = N - max(len(set(e)) for e in ex)
    check(topk(q, x, k, ex, chunk=16), q, x, k, ex)
    with pytest.raises(TopKError, match="excluded"):
        topk(q, x, k + 1, ex)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_precision_items(dtype, cpu_mode):
    q, x = normal_data(4, 300, 20, seed=4)
    xd = x.to(dtype)
    v, i = topk(q, xd, 9, chunk=64)
    check((v, i), q, xd, 9, exact_values=False)


def test_numpy_inputs_and_export():
    q, x = integer_data(2, 50, 4)
    v, i = llmrec.topk(q.numpy(), x.numpy(), 5, [np.array([1, 2]), []])
    check((v, i), q, x, 5, [[1, 2], []])


def test_memory_does_not_scale_with_n():
    # The chunked path never holds more than B * chunk scores: run with a tiny chunk on many items.
    q, x = normal_data(2, 5000, 4)
    check(topk(q, x, 3, chunk=128), q, x, 3, exact_values=False)


@pytest.mark.parametrize("make,match", [
    (lambda q, x: topk(q, x[:, :3], 2), "D=4"),
    (lambda q, x: topk(q, x[:0], 2), "empty"),
    (lambda q, x: topk(q[:0], x, 2), "empty"),
    (lambda q, x: topk(q[0], x, 2), "2-D"),
    (lambda q, x: topk(q, x[None], 2), "2-D"),
    (lambda q, x: topk(q, x.long(), 2), "floating"),
    (lambda q, x: topk(q, x, 0), "k must be"),
    (lambda q, x: topk(q, x, 129), "k must be"),
    (lambda q, x: topk(q, x, 2.0), "k must be"),
    (lambda q, x: topk(q, x, 11), "k=11"),
    (lambda q, x: topk(q, x, 2, [[1]]), "exclude has 1 entries"),
    (lambda q, x: topk(q, x, 2, [[1], [10]]), "outside"),
    (lambda q, x: topk(q, x, 2, [[1], [-1]]), "outside"),
    (lambda q, x: topk(q, x, 2, torch.zeros(2, 9, dtype=torch.bool)), "shape"),
    (lambda q, x: topk(q, x, 2, backend="faiss"), "backend"),
])
def test_errors(make, match):
    q, x = integer_data(2, 10, 4)
    with pytest.raises(TopKError, match=match):
        make(q, x)


@pytest.mark.parametrize("where,value,match", [
    ("q", float("nan"), "queries row 1"), ("q", float("inf"), "queries row 1"),
    ("x", float("nan"), "items row 7"), ("x", float("-inf"), "items row 7"),
])
def test_non_finite_inputs(where, value, match, cpu_mode):
    q, x = integer_data(2, 10, 4)
    (q if where == "q" else x)[1 if where == "q" else 7, 2] = value
    with pytest.raises(TopKError, match=match):
        topk(q, x, 2, chunk=4)


def test_topk_error_is_value_error():
    assert issubclass(TopKError, ValueError) and issubclass(TopKError, llmrec.errors.LLMRecError)


def test_triton_backend_on_cpu_needs_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q, x = integer_data(2, 10, 4)
    with pytest.raises(TopKError, match="TRITON_INTERPRET"):
        topk(q, x, 2, backend="triton")


def test_exclude_accepts_iterables_and_numpy_mask():
    q, x = normal_data(2, 20, 4, seed=13)
    ex = [range(5), {7: "seen"}]
    m = np.zeros((2, 20), bool)
    m[0, :5] = True
    m[1, 7] = True
    want = topk(q, x, 3, torch.from_numpy(m))
    for arg in (ex, m, [torch.arange(5), np.array([7])]):
        got = topk(q, x, 3, arg)
        assert torch.equal(got[1], want[1])
    with pytest.raises(TopKError, match="integer"):
        topk(q, x, 3, [[1.5], []])


@pytest.mark.parametrize("order", [1, -1])
def test_monotone_scores(order, cpu_mode):
    # Scores that grow with the index make every chunk beat the running top-k (the filter's
    # worst case: the full selection takes over); falling scores make every later chunk lose.
    N, D = 1000, 3
    x = torch.zeros(N, D)
    x[:, 0] = torch.arange(N, dtype=torch.float32) * order
    q = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    check(topk(q, x, 17, chunk=64), q, x, 17)


def test_overflow_in_a_later_chunk(cpu_mode):
    q, x = normal_data(3, 400, 4, seed=5)
    q, x = q.abs(), x.abs()
    x[333] = 3e38  # finite, but its scores overflow to +inf
    with pytest.raises(TopKError, match="overflow"):
        topk(q, x, 5, chunk=50)


@pytest.mark.parametrize("seed", range(30))
def test_random_configurations(seed, cpu_mode):
    # Random shapes, chunk sizes, k and exclusions, integer data (many ties): equal to the reference.
    rng = np.random.default_rng(seed)
    B, N, D = int(rng.integers(1, 40)), int(rng.integers(1, 600)), int(rng.integers(1, 20))
    q, x = integer_data(B, N, D, seed=seed, dup_every=int(rng.integers(2, 6)))
    ex = random_exclude(B, N, int(rng.integers(0, max(1, N // 2))), seed=seed)
    k = int(rng.integers(1, min(128, N - max(len(set(e)) for e in ex)) + 1))
    chunk = int(rng.integers(1, N + 2))
    check(topk(q, x, k, ex, chunk=chunk), q, x, k, ex)


def _blas_threads():
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_blas_threads_restored_after_small_calls():
    blas_threads = _blas_threads
    before = blas_threads()
    q, x = integer_data(2, 10, 4)
    topk(q, x, 2)
    assert blas_threads() == before
    x[7, 2] = float("nan")
    with pytest.raises(TopKError):
        topk(q, x, 2)
    assert blas_threads() == before


def test_concurrent_small_calls_share_the_thread_limit():
    # Small calls from several threads overlap: the BLAS thread count must come back to its value
    # from before, and every answer must stay exact.
    from concurrent.futures import ThreadPoolExecutor

    before = _blas_threads()
    cases = [integer_data(3, 500, 16, seed=s) for s in range(8)]

    def run(case):
        q, x = case
        for _ in range(20):
            got = topk(q, x, 9, chunk=64)
        return got

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, cases))
    for (q, x), got in zip(cases, results, strict=True):
        check(got, q, x, 9)
    assert _blas_threads() == before
