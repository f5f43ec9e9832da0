"""The kernel compiles for sm_90 (no GPU needed: triton's bundled ptxas) without register spills,
with its item loads software-pipelined.

Runs in a subprocess without TRITON_INTERPRET (the interpreter replaces ``@triton.jit``).
"""

import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")


def test_compiles_for_sm90_without_spills():
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    if not os.path.exists(os.path.join(tools, "cuobjdump")):
        pytest.skip("triton wheel without the CUDA tools")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-m", "llmrec_kernels.compile_check", "--case", "fp16,20,16,64,64,4"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "'stack': 0" in r.stdout and "'pipelined': True" in r.stdout, r.stdout
