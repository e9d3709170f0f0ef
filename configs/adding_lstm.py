"""Example 4a: an LSTM on the adding problem (Hochreiter & Schmidhuber, 1997)."""

from __future__ import annotations

from dataclasses import dataclass

from configs._base import Config


@dataclass(frozen=True)
class AddingLSTM(Config):
    """Each input is ``seq_len`` pairs ``(value ~ U(0, 1), marker)``; exactly two markers
    are 1 (one in each half) and the target is the sum of the two marked values.
    Loss: mean squared error; accuracy: the fraction of predictions within 0.04 of the
    target. Predicting the mean scores MSE 1/6 and ~5% accuracy.

    Attributes:
      model: ``"lstm"`` or ``"mamba"``.
      seq_len: length of each sequence.
      hidden: hidden size of the recurrent layer(s).
      num_layers: stacked recurrent layers.
      test_examples: size of the fixed test set.
    """

    name: str = "adding_lstm"
    example: str = "adding"
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0
    log_every: int = 25
    eval_every: int = 250
    checkpoint_every: int = 500
    model: str = "lstm"
    seq_len: int = 30
    hidden: int = 64
    num_layers: int = 1
    test_examples: int = 1000
