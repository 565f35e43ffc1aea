"""The pinned CPU numerics: set by restarting the process, visible in ATen, and changing the bits."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from regym.numerics import PINNED_CPU_NUMERICS, cpu_has_avx2, pinned_in_environment

pytestmark = pytest.mark.skipif(not cpu_has_avx2(), reason="the pinned path needs an AVX2 CPU")

GRADIENT_BITS = """
import hashlib, torch
from regym.numerics import cpu_numerics
torch.manual_seed(0); torch.set_num_threads(2)
layer = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
x = torch.randn(64, 384)
torch.nn.functional.log_softmax(layer(x), -1).sum().backward()
print(cpu_numerics(), hashlib.sha256(b"".join(p.grad.numpy().tobytes() for p in layer.parameters())).hexdigest())
"""


def run_python(code: str, **environ: str) -> str:
    clean = {name: value for name, value in os.environ.items() if name not in PINNED_CPU_NUMERICS}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **environ}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_pinned_in_environment_needs_every_variable():
    assert pinned_in_environment(dict(PINNED_CPU_NUMERICS))
    assert not pinned_in_environment({**PINNED_CPU_NUMERICS, "MKL_CBWR": "AUTO"})
    assert not pinned_in_environment({})


PIN_THEN_COMPUTE = "from regym.numerics import pin_cpu_numerics\npin_cpu_numerics()\n" + GRADIENT_BITS
COMPUTE_THEN_PIN = GRADIENT_BITS + "from regym.numerics import pin_cpu_numerics\nprint(pin_cpu_numerics())"


def test_pinning_after_import_but_before_any_tensor_op_gives_the_pinned_bits():
    assert run_python(PIN_THEN_COMPUTE) == run_python(GRADIENT_BITS, **PINNED_CPU_NUMERICS)


def test_pinning_after_a_tensor_op_is_reported_as_not_pinned():
    native, label = run_python(COMPUTE_THEN_PIN).splitlines()
    assert native.startswith("native-") and label == native.split()[0]


def test_pinned_bits_repeat_and_are_reported_as_pinned():
    first, second = run_python(GRADIENT_BITS, **PINNED_CPU_NUMERICS), run_python(GRADIENT_BITS, **PINNED_CPU_NUMERICS)
    assert first == second
    assert first.startswith("pinned-avx2 ")


def test_a_half_pinned_environment_is_not_reported_as_pinned():
    label = run_python(GRADIENT_BITS, ATEN_CPU_CAPABILITY="avx2").split()[0]
    assert label == "native-avx2"
