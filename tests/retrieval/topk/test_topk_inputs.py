"""Adversarial input checks of llmrec.topk on the CPU (from a bad-input pass; each of the first
tests failed before the fix in the same commit).

Every test states the contract it checks: valid inputs give the reference's answer; bad inputs
raise TopKError with a message naming what was wrong (never a raw TypeError/ValueError from
numpy, torch or oneDNN internals).
"""

import importlib

import numpy as np
import pytest
import torch

from llmrec.retrieval import TopKError, topk
from llmrec.retrieval.topk import cpu as topk_cpu
from tests.support.topk_cases import check, integer_data, mask_of

topk_module = importlib.import_module("llmrec.retrieval.topk")


@pytest.fixture(params=["numpy", "onednn", "torch"])
def path(request, monkeypatch):
    """The CPU code paths: numpy's GEMM (single-threaded), oneDNN's GEMM, the generic torch path."""
    if request.param == "onednn":
        monkeypatch.setattr(topk_cpu, "SINGLE_THREAD_MACS", -1)
        monkeypatch.setattr(topk_cpu, "ONEDNN_MIN_B", 1)
    elif request.param == "torch":
        monkeypatch.setattr(topk_module, "USE_CPU_PATH", False)
    return request.param


# --- valid numpy inputs rejected with torch's internal errors ---------------------------------

@pytest.mark.parametrize("which", ["items_rows", "items_cols", "queries"])
def test_numpy_views_with_negative_strides_are_accepted(which):
    # x[::-1] / x[:, ::-1] are ordinary numpy arrays; topk documents numpy inputs.
    # Got: ValueError "At least one stride in the given numpy array is negative ..." from torch.
    q, x = integer_data(3, 40, 5)
    qn, xn = q.numpy(), x.numpy()
    if which == "items_rows":
        qa, xa = qn, xn[::-1]
    elif which == "items_cols":
        qa, xa = qn[:, ::-1], xn[:, ::-1]
    else:
        qa, xa = qn[::-1], xn
    got = topk(qa, xa, 7, chunk=16)
    check(got, torch.from_numpy(qa.copy()), torch.from_numpy(xa.copy()), 7)


def test_numpy_exclude_mask_with_negative_strides_is_accepted():
    # A reversed bool mask [B, N] is a valid mask. Got: ValueError from torch.as_tensor.
    q, x = integer_data(2, 30, 4)
    m = np.zeros((2, 30), bool)
    m[0, [0, 1, 2]] = True
    m[1, 29] = True
    got = topk(q, x, 5, m[:, ::-1], chunk=8)
    ex = [list(np.flatnonzero(r)) for r in m[:, ::-1]]
    check(got, q, x, 5, ex)


def test_big_endian_numpy_float32_inputs_are_accepted():
    # '>f4' is float32 data (e.g. from np.load of a file written elsewhere).
    # Got: ValueError "given numpy array has byte order different from the native byte order".
    q, x = integer_data(2, 30, 4)
    got = topk(q.numpy().astype(">f4"), x.numpy().astype(">f4"), 5, chunk=8)
    check(got, q, x, 5)


@pytest.mark.parametrize("make", [
    lambda x: x.astype(np.longdouble),
    lambda x: x.astype(object),
    lambda x: x.astype(str),
], ids=["longdouble", "object", "str"])
def test_unconvertible_numpy_items_raise_topkerror(make):
    # Got: TypeError "can't convert np.ndarray of type numpy.longdouble ..." (not a TopKError).
    q, x = integer_data(2, 10, 4)
    with pytest.raises(TopKError, match="items"):
        topk(q, make(x.numpy()), 2)


# --- exclude ----------------------------------------------------------------------------------

def test_exclude_as_integer_tensor_of_indices():
    # A [B, m] int tensor is a sequence of B collections of indices; the same numpy array works,
    # and lists of 1-D index tensors work. Got: TypeError "Cannot interpret 'torch.int64' as a
    # data type" (normalize_exclude calls np.dtype() on a torch dtype).
    q, x = integer_data(2, 10, 4)
    ex = [[1, 2], [3, 4]]
    want = topk(q, x, 2, np.array(ex))
    got = topk(q, x, 2, torch.tensor(ex))
    assert torch.equal(got[1], want[1])
    check(got, q, x, 2, ex)


@pytest.mark.parametrize("make", [
    lambda B, N: torch.zeros(B, N),  # a 0/1 float "mask"
    lambda B, N: torch.zeros(B, N, dtype=torch.uint8),  # an old-style byte mask
    lambda B, N: [3, 5],  # one scalar per query instead of a collection
    lambda B, N: [None, [1]],
    lambda B, N: (e for e in [[1], [2]]),  # no len()
    lambda B, N: 3,
], ids=["float_tensor", "uint8_tensor", "scalars", "none_entry", "generator", "int"])
def test_malformed_exclude_raises_topkerror(make):
    # Got: TypeError ("Cannot interpret 'torch.float32' as a data type", "'int' object is not
    # iterable", "object of type 'generator' has no len()").
    q, x = integer_data(2, 10, 4)
    with pytest.raises(TopKError, match="exclude"):
        topk(q, x, 2, make(2, 10))


# --- chunk ------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [-1, 2.5, "4"])
def test_bad_chunk_raises_topkerror(chunk, path):
    # chunk is never validated. Got: numpy "ValueError: negative dimensions are not allowed",
    # oneDNN "RuntimeError: could not construct a memory descriptor", torch path
    # returns (None, None) silently (range(0, N, -1) is empty); TypeErrors for 2.5 / "4".
    q, x = integer_data(2, 10, 4)
    with pytest.raises(TopKError, match="chunk"):
        topk(q, x, 2, chunk=chunk)


# --- non-finite items -------------------------------------------------------------------------

def test_inf_item_is_rejected_even_when_excluded(path):
    # An item holding NaN raises whether or not it is excluded (checked first below), but an item
    # whose scores are +inf passes silently when it is excluded for every query: the +inf check
    # only looks at selected scores, and the exclusion has already turned them into -inf.
    # Contract: NaN/inf in the inputs -> TopKError. Got: (scores, indices), no error.
    q = torch.ones(1, 3)
    for value in (float("nan"), float("inf")):
        x = torch.arange(30.0).reshape(10, 3)
        x[4, 0] = value
        with pytest.raises(TopKError, match="items row 4"):
            topk(q, x, 2, [[4]], chunk=4)
        with pytest.raises(TopKError, match="items row 4"):
            topk(q, x, 2, mask_of([[4]], 1, 10))


# --- empty inputs -----------------------------------------------------------------------------

def test_zero_dimension_inputs_are_rejected():
    # B = 0 and N = 0 raise "empty"; D = 0 returns all-zero scores and indices 0..k-1 on the
    # default path (and a raw oneDNN RuntimeError on the oneDNN path).
    with pytest.raises(TopKError, match="D"):
        topk(torch.zeros(2, 0), torch.zeros(10, 0), 2)


def test_ragged_object_array_exclude_and_read_only_items_without_warning():
    import warnings

    q, x = integer_data(2, 30, 4)
    ex = np.empty(2, dtype=object)
    ex[0], ex[1] = [1, 2, 3], [7]
    xr = x.numpy().copy()
    xr.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = topk(q, xr, 5, ex, chunk=8)
    check(got, q, x, 5, [[1, 2, 3], [7]])


def test_sparse_items_raise_topkerror():
    q, x = integer_data(2, 10, 4)
    with pytest.raises(TopKError, match="dense"):
        topk(q, x.to_sparse(), 2)


def test_onednn_probe_ignores_the_default_dtype():
    topk_cpu.onednn_available.cache_clear()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert topk_cpu.onednn_available()
    finally:
        torch.set_default_dtype(old)
        topk_cpu.onednn_available.cache_clear()
