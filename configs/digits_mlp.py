"""Example 1: an MLP on scikit-learn's 8x8 handwritten digits."""

from __future__ import annotations

from dataclasses import dataclass

from configs._base import Config


@dataclass(frozen=True)
class DigitsMLP(Config):
    """``64 -> hidden -> hidden -> 10`` with ReLU and dropout; the training set is augmented
    with one-pixel shifts (zero filled), which lifts test accuracy from ~97.5% to ~99%.

    Attributes:
      hidden: width of the two hidden layers.
      dropout: dropout probability after each hidden layer.
      augment: add the four one-pixel shifts of every training image.
      test_size: fraction of the 1797 digits held out for testing (stratified).
      model: ``"mlp"`` (this config) or ``"cnn"`` (:class:`~configs.digits_cnn.DigitsCNN`).
    """

    name: str = "digits_mlp"
    example: str = "digits"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 1000
    hidden: int = 256
    dropout: float = 0.2
    augment: bool = True
    test_size: float = 0.2
    model: str = "mlp"
