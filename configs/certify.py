"""Certified robustness on the digits: the MLP 64-32-32-10 trained normally, with IBP and with CROWN-IBP."""

from __future__ import annotations

from dataclasses import dataclass

from configs._base import Config


@dataclass(frozen=True)
class Certify(Config):
    """Three trainings of the same MLP, then certified accuracy by IBP, CROWN and alpha-CROWN.

    Run with ``python -m examples.certify [--field value ...]``.

    Attributes:
      hidden: width of the two hidden ReLU layers.
      train_eps: the L-infinity radius certified training aims at (inputs in [0, 1]).
      ramp: fraction of the steps over which eps grows from 0 to ``train_eps`` (and CROWN-IBP's
        beta falls from 1 to 0, the clean-loss weight kappa from 1 to ``kappa``).
      kappa: final weight of the clean cross-entropy in the certified-training loss.
      eval_eps: the radii of the certified-accuracy table, comma-separated.
      eval_points: how many test digits are certified (the first ones).
      alpha_steps: alpha-CROWN's optimisation steps.
      test_size: fraction of the 1797 digits held out for testing (stratified).
    """

    name: str = "certify"
    example: str = "certify"
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    hidden: int = 32
    train_eps: float = 0.1
    ramp: float = 0.5
    kappa: float = 0.5
    eval_eps: str = "0.01,0.02,0.05"
    eval_points: int = 360
    alpha_steps: int = 20
    test_size: float = 0.2
