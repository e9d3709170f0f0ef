"""Example 2 (the default): a small ResNet-style CNN on scikit-learn's 8x8 handwritten digits."""

from __future__ import annotations

from dataclasses import dataclass

from configs._base import Config


@dataclass(frozen=True)
class DigitsCNN(Config):
    """A 3x3 stem conv with BatchNorm, two ResNet BasicBlocks (the second halves the
    resolution and doubles the width), global average pooling and a linear classifier.

    Attributes:
      width: channels of the stem and first block (the second block has twice as many).
      augment: add the four one-pixel shifts of every training image.
      test_size: fraction of the 1797 digits held out for testing (stratified).
      model: ``"cnn"`` (this config) or ``"mlp"`` (:class:`~configs.digits_mlp.DigitsMLP`).
    """

    name: str = "digits_cnn"
    example: str = "digits"
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 300
    width: int = 32
    augment: bool = False
    test_size: float = 0.2
    model: str = "cnn"
