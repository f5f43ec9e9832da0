"""Compile the top-k kernel for a CUDA target without a GPU and report registers/spills.

Uses the ptxas and cuobjdump bundled in the triton wheel. Catches errors that only compiled
Triton raises (the interpreter is more permissive) and register spills of a block configuration.

    python -m llmrec_kernels.compile_check            # default configs, sm_90
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import triton
from llmrec_kernels.topk_triton import _topk_partial_kernel
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

TOOLS = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def signature(item_dtype: str, query_dtype: str | None = None) -> dict:
    return {"Q": f"*{query_dtype or item_dtype}", "X": f"*{item_dtype}", "BITS": "*i32", "SCALES": "*fp32",
            "OUT_V": "*fp32", "OUT_I": "*i32", "BAD": "*i32", "B": "i32", "N": "i32", "D": "i32",
            "n_per_split": "i32", "words_per_row": "i32", "stride_qp": "i32", "stride_qb": "i32",
            "stride_xn": "i32"}


def compile_usage(item_dtype: str, k: int, block_b: int, block_n: int, block_d: int, num_warps: int,
                  num_stages: int = 3, has_bits: bool = True, arch: int = 90) -> dict:
    """Compile one configuration; returns registers, spill stack bytes (cuobjdump), dynamic shared
    memory bytes and whether the item loads were software-pipelined (cp.async)."""
    nparts = {"fp32": 1, "fp16": 2, "bf16": 3}[item_dtype]
    constexprs = dict(K=k, KP=triton.next_power_of_2(k), NPARTS=nparts, BLOCK_B=block_b, BLOCK_N=block_n,
                      BLOCK_D=block_d, HAS_BITS=has_bits, IEEE=item_dtype == "fp32", UPCAST=False)
    sig = signature(item_dtype)
    # What a real launch specialises for D % 16 == 0: 16-byte aligned pointers and the strides / D /
    # n_per_split divisible by 16 (without these hints Triton neither vectorises nor pipelines loads).
    aligned = ["Q", "X", "BITS", "SCALES", "OUT_V", "OUT_I", "BAD", "D", "n_per_split", "stride_qp",
               "stride_qb", "stride_xn"]
    attrs = {(list(sig).index(a),): [["tt.divisibility", 16]] for a in aligned}
    src = ASTSource(_topk_partial_kernel, sig, constexprs, attrs=attrs)
    kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                            options=dict(num_warps=num_warps, num_stages=num_stages))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        out = subprocess.run([os.path.join(TOOLS, "cuobjdump"), "--dump-resource-usage", f.name],
                             capture_output=True, text=True, check=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+)", out)
    return {"regs": int(m.group(1)), "stack": int(m.group(2)), "shared": kernel.metadata.shared,
            "pipelined": "async_copy_global_to_local" in kernel.asm["ttgir"]}


# The configurations pick_config uses on CUDA (B <= 16 and B > 16), at the k the ranker uses and k = 128.
DEFAULT_CASES = [("fp16", 20, 16, 64, 64, 4), ("fp16", 20, 32, 64, 64, 8), ("fp16", 128, 32, 64, 64, 8),
                 ("bf16", 20, 16, 64, 64, 4), ("bf16", 20, 32, 64, 64, 8), ("fp32", 20, 16, 128, 32, 8),
                 ("fp32", 20, 32, 64, 32, 8)]


def main(argv=None) -> int:
    """Compile DEFAULT_CASES (or ``--case dtype,k,block_b,block_n,block_d,warps``); exit 1 on a spill.

    Needs compiled Triton: run without ``TRITON_INTERPRET=1``.
    """
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--case", action="append", help="dtype,k,block_b,block_n,block_d,num_warps[,num_stages]")
    args = p.parse_args(argv)
    cases = DEFAULT_CASES
    if args.case:
        cases = [(c.split(",")[0], *map(int, c.split(",")[1:])) for c in args.case]
    bad = 0
    for case in cases:
        u = compile_usage(*case)
        bad += u["stack"] > 0
        print(f"{case}: {u}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
