"""Configurations of the examples: one plain dataclass per example, in its own file.

``get(name)`` returns the default configuration of an example; ``config.override(argv)``
applies ``--field value`` pairs from the command line:

>>> from configs import get
>>> config = get("digits_cnn").override(["--steps", "10"])
>>> config.steps, config.output_dir
(10, 'runs/digits_cnn')
"""

from __future__ import annotations

from configs._base import Config as Config
from configs.adding_lstm import AddingLSTM as AddingLSTM
from configs.adding_mamba import AddingMamba as AddingMamba
from configs.char_gpt import CharGPT as CharGPT
from configs.digits_cnn import DigitsCNN as DigitsCNN
from configs.digits_mlp import DigitsMLP as DigitsMLP
from configs.finetune import Finetune as Finetune

CONFIGS: dict[str, type[Config]] = {
    "adding_lstm": AddingLSTM,
    "adding_mamba": AddingMamba,
    "char_gpt": CharGPT,
    "digits_cnn": DigitsCNN,
    "digits_mlp": DigitsMLP,
    "finetune": Finetune,
}
DEFAULT = "digits_cnn"

__all__ = [
    "CONFIGS",
    "DEFAULT",
    "AddingLSTM",
    "AddingMamba",
    "CharGPT",
    "Config",
    "DigitsCNN",
    "DigitsMLP",
    "Finetune",
    "get",
]


def get(name: str = DEFAULT) -> Config:
    """The default configuration of the example called ``name``."""
    if name not in CONFIGS:
        raise ValueError(f"no config named {name!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[name]()
