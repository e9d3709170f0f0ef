"""Shared fixtures for the model-zoo tests: tiny random transformers models saved as Hugging Face directories.

``hf_dir(tmp_path_factory, config_cls, model_cls, **config)`` builds ``model_cls(config_cls(**config))``
with a fixed torch seed, in eval mode, saves it with transformers' ``save_pretrained`` and
returns ``(path, model)``. Call it from a session-scoped fixture of your test file (or use the
``hf_dir_factory`` fixture, which caches by arguments) so each tiny model is built once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def hf_dir(
    tmp_path_factory: Any, config_cls: type, model_cls: type, *, seed: int = 0, **config: Any
) -> tuple[Path, Any]:
    """``(directory, transformers model)`` of a random-init ``model_cls(config_cls(**config))`` saved there."""
    import torch

    torch.manual_seed(seed)
    model = model_cls(config_cls(**config)).eval()
    path = tmp_path_factory.mktemp(model_cls.__name__)
    model.save_pretrained(path)
    return path, model


@pytest.fixture(scope="session")
def hf_dir_factory(tmp_path_factory):
    """``make(config_cls, model_cls, **config) -> (path, model)``, built once per distinct arguments."""
    made: dict = {}

    def make(config_cls: type, model_cls: type, **config: Any) -> tuple[Path, Any]:
        key = (config_cls, model_cls, tuple(sorted((k, repr(v)) for k, v in config.items())))
        if key not in made:
            made[key] = hf_dir(tmp_path_factory, config_cls, model_cls, **config)
        return made[key]

    return make
