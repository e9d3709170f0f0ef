"""Example 3: a character-level GPT on the docstrings of Python's standard library."""

from __future__ import annotations

from dataclasses import dataclass

from configs._base import Config


@dataclass(frozen=True)
class CharGPT(Config):
    """A small causal Transformer (tlean.models.gpt) predicting the next character.

    The corpus is the docstrings of ~50 standard-library modules and their public
    classes and functions (about 290k ASCII characters, no download); the last 5% is
    held out. After training it samples ``sample_len`` characters after ``prompt``
    through the KV cache (tlean.models.generate).

    Attributes:
      context: characters per training window (and the model's max_len).
      d_model: the Transformer's width.
      nhead: attention heads per layer.
      num_layers: Transformer decoder layers.
      dropout: dropout probability in the Transformer.
      prompt: the text sampling starts from.
      sample_len: characters to sample.
      temperature: sampling temperature (0 is greedy).
      eval_windows: held-out windows evaluated.
    """

    name: str = "char_gpt"
    example: str = "char_gpt"
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    log_every: int = 25
    eval_every: int = 250
    checkpoint_every: int = 500
    context: int = 64
    d_model: int = 96
    nhead: int = 4
    num_layers: int = 3
    dropout: float = 0.1
    prompt: str = "Return the "
    sample_len: int = 200
    temperature: float = 0.8
    eval_windows: int = 128
