"""The fused Triton top-k kernel, run by the Triton interpreter on CPU tensors (no GPU needed).

``TRITON_INTERPRET=1`` must be set before the kernel module is imported; it is imported lazily by
``llmrec.topk(..., backend="triton")``, so setting it here is early enough.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from llmrec.retrieval import TopKError, topk  # noqa: E402
from tests.support.topk_cases import check, integer_data, mask_of, normal_data, random_exclude  # noqa: E402

pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 (CPU tensors)", allow_module_level=True)


def run(q, x, k, exclude=None, **config):
    if not config:
        return topk(q, x, k, exclude, backend="triton")
    from llmrec_kernels.topk_triton import triton_topk

    from llmrec.retrieval.topk.exclusion import normalize_exclude

    ex = normalize_exclude(exclude, q.shape[0], x.shape[0])
    return triton_topk(q, x, k, None if ex.empty else ex.bitset(x.shape[0]), config=config)


@pytest.mark.parametrize("B,N,D,k", [
    (1, 1, 1, 1), (3, 37, 5, 4), (17, 203, 33, 13), (2, 150, 20, 100), (5, 70, 17, 3),
])
def test_ties_and_duplicates_match_reference(B, N, D, k):
    q, x = integer_data(B, N, D)
    check(run(q, x, k), q, x, k)


def test_all_equal_scores_pick_lowest_indices():
    q, x = torch.ones(2, 4), torch.ones(90, 4)
    v, i = run(q, x, 7)
    assert i.tolist() == [list(range(7))] * 2 and torch.equal(v, torch.full((2, 7), 4.0))


@pytest.mark.parametrize("splits", [1, 3])
def test_splits_and_blocks(splits):
    # One split (no merge across programs) and uneven splits; BLOCK_B smaller than B.
    B, N, D, k = 9, 161, 21, 6
    q, x = integer_data(B, N, D, seed=5, dup_every=4)
    n_per = -(-N // splits)
    n_per = -(-n_per // 16) * 16
    cfg = dict(BLOCK_B=16, BLOCK_N=16, BLOCK_D=16, splits=-(-N // n_per), n_per_split=n_per, num_warps=4)
    check(run(q, x, k, **cfg), q, x, k)


def test_k_128():
    q, x = integer_data(2, 140, 6, seed=6)
    check(run(q, x, 128), q, x, 128)


def test_normal_data():
    q, x = normal_data(6, 333, 40, seed=7)
    check(run(q, x, 10), q, x, 10, exact_values=False)


@pytest.mark.parametrize("as_mask", [False, True])
def test_exclusion(as_mask):
    B, N, D, k = 5, 130, 7, 9
    q, x = integer_data(B, N, D, seed=8)
    ex = random_exclude(B, N, 70, seed=9)
    v, i = run(q, x, k, mask_of(ex, B, N) if as_mask else ex)
    check((v, i), q, x, k, ex)


def test_k_equals_n_minus_excluded():
    B, N, D = 2, 67, 5
    q, x = integer_data(B, N, D, seed=10)
    ex = [list(range(0, N, 2)), list(range(3, 40))]
    k = N - len(ex[1])
    check(run(q, x, k, ex), q, x, k, ex)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_items(dtype):
    q, x = normal_data(4, 150, 24, seed=11)
    xd = x.to(dtype)
    check(run(q, xd, 12), q, xd, 12, exact_values=False)


def test_fp16_split_query_parts():
    # The tensor-core path for fp16 items: queries split into fp16 parts, fp32 accumulation.
    q, x = normal_data(3, 100, 40, seed=12)
    q = q * 1000.0  # exercises the power-of-two rescaling
    xd = x.half()
    check(run(q, xd, 5), q, xd, 5, exact_values=False)


def test_non_finite_items():
    q, x = integer_data(2, 50, 4)
    x[33, 1] = float("nan")
    with pytest.raises(TopKError, match="items row 33"):
        run(q, x, 3)
