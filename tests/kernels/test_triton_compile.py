"""The Triton kernels compile for an H100 (sm_90) ahead of time, with no GPU present.

The interpreter tests check the arithmetic; this checks what only the compiler sees (types of loop-carried
values, constexpr branches, pointer casts), through Triton's own PTX and cubin back end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import itertools
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from kernels import triton_ops as ops

    def compile_kernel(fn, types, constexprs):
        signature = dict(zip(fn.arg_names, types, strict=False))
        signature.update({name: "constexpr" for name in constexprs})
        keyed = {(fn.arg_names.index(name),): value for name, value in constexprs.items()}
        kernel = triton.compile(ASTSource(fn, signature, keyed), target=GPUTarget("cuda", 90, 32),
                                options={"num_warps": 8})
        assert kernel.asm["cubin"], fn.__name__

    ce_types = ["*bf16", "i64", "*i64", "*fp32", "*fp32", "*fp32", "i32", "i32", "fp32", "fp32", "fp32", "fp32"]
    flags = ("HAS_GRAD", "HAS_SOFTCAP", "HAS_SMOOTHING", "HAS_Z_LOSS")
    for values in [(False,) * 4, (True, False, False, False), (True,) * 4]:
        compile_kernel(ops._ce_rows_kernel, ce_types, dict(zip(flags, values), BLOCK_V=4096))
    div_types = ["*bf16", "i64", "*bf16", "i64", "*fp32", "*fp32", "i32", "fp32", "fp32", "fp32", "fp32"]
    for kind, has_grad in [(0, True), (1, True), (2, True), (2, False)]:
        compile_kernel(ops._divergence_rows_kernel, div_types, {"KIND": kind, "HAS_GRAD": has_grad, "BLOCK_V": 4096})
    compile_kernel(ops._rms_norm_fwd_kernel, ["*bf16", "*bf16", "*bf16", "*fp32", "i32", "i32", "i32", "fp32"],
                   {"BLOCK_H": 4096})
    compile_kernel(ops._rms_norm_bwd_kernel, ["*bf16", "*bf16", "*bf16", "*fp32", "*bf16", "*fp32", "i32", "i32",
                   "i32"], {"BLOCK_H": 4096})
    print("compiled")
    """
)


def test_kernels_compile_for_sm90(tmp_path):
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PYTHONPATH=str(REPO), TRITON_CACHE_DIR=str(tmp_path), TRITON_DEFAULT_FP_FUSION="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "compiled" in out.stdout, out.stderr[-3000:]
