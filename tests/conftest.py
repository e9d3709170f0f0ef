"""Shared test setup: strict rank promotion, highest matmul precision, fixed keys."""

import os

# Two xdist workers share two cores: one intra-op thread each for torch and NumPy's BLAS (read at
# their import, so set before any test imports them) instead of each oversubscribing both cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")

settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("long", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("TLEAN_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def key():
    """A fixed key: tlean promises determinism, so tests use it."""
    return jax.random.key(0)


@pytest.fixture
def rng():
    """A fixed NumPy generator for test inputs."""
    return np.random.default_rng(0)
