"""The fields every example shares, and command-line overrides (``--steps 10 --batch_size 32``) parsed by tyro."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

import tyro  # at import time: tyro's first import reads builtins, which a doctest's ``_`` may leave unhashable


@dataclass(frozen=True)
class Config:
    """What every example run needs; each example's config adds its model and data fields.

    Attributes:
      name: the run's name; outputs go to ``out_dir`` (default ``runs/<name>``).
      example: the module under ``examples/`` that runs this config.
      steps: optimiser steps in total.
      batch_size: examples per step.
      lr: peak learning rate (linear warm-up, then cosine decay).
      weight_decay: AdamW's decoupled weight decay.
      seed: seeds the initialisation, the batches and the dropout keys.
      log_every: steps between logged training metrics.
      eval_every: steps between evaluations (and one at the end).
      checkpoint_every: steps between checkpoints (and one at the end).
      out_dir: where the checkpoint, history, curves and summary go; ``None``: ``runs/<name>``.
      resume: continue from the last checkpoint in ``out_dir`` instead of starting afresh.
      progress: show the progress bar.
      tensorboard: also write TensorBoard scalars to ``<out_dir>/tensorboard`` (tensorboardX).
    """

    name: str = "example"
    example: str = ""
    steps: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    log_every: int = 25
    eval_every: int = 100
    checkpoint_every: int = 500
    out_dir: str | None = None
    resume: bool = False
    progress: bool = True
    tensorboard: bool = False

    @property
    def output_dir(self) -> str:
        """``out_dir``, or ``runs/<name>``."""
        return self.out_dir if self.out_dir is not None else f"runs/{self.name}"

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (unknown names are a ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def override(self, argv: list[str], *, prog: str | None = None, description: str | None = None) -> Config:
        """A copy with ``--field value`` (or ``--field=value``) pairs from the command line applied.

        Parsed by `tyro <https://brentyi.github.io/tyro/>`_ from the dataclass itself: each field is
        a flag (``--batch_size`` or ``--batch-size``) typed by its annotation and documented by the
        ``Attributes`` section of the config's docstring (``--help`` lists them all with their
        defaults). Booleans take ``true``/``false``, optional fields ``none``. An unknown field or
        a bad value prints what is wrong (and the closest field) and raises ``SystemExit(2)``.

        >>> from configs import get
        >>> get("digits_mlp").override(["--steps", "10", "--batch_size=32", "--augment", "false"]).batch_size
        32
        """
        argv = _spell_for_tyro(type(self), list(argv))
        return tyro.cli(
            type(self),
            default=self,
            args=argv,
            prog=prog,
            description=description,
            use_underscores=True,
            config=(tyro.conf.FlagConversionOff,),
        )


_WORDS = {"true": "True", "false": "False", "yes": "True", "no": "False", "1": "True", "0": "False"}


def _spell_for_tyro(cls: type, argv: list[str]) -> list[str]:
    """The values of bool and optional fields as tyro reads them (``True``, ``False``, ``None``), so the
    command lines of earlier tlean examples (``--augment false``, ``--out_dir none``) keep working."""
    hints = typing.get_type_hints(cls)
    out = []
    for i, arg in enumerate(argv):
        flag = argv[i - 1] if i and not arg.startswith("--") else None
        if arg.startswith("--") and "=" in arg:
            flag, arg = arg.split("=", 1)
            out.append(flag + "=" + _spelled(hints.get(flag[2:].replace("-", "_")), arg))
            continue
        out.append(_spelled(hints.get(flag[2:].replace("-", "_")), arg) if flag and flag.startswith("--") else arg)
    return out


def _spelled(kind: Any, value: str) -> str:
    optional = type(None) in typing.get_args(kind)
    if optional and value.lower() == "none":
        return "None"
    if (kind is bool or (optional and bool in typing.get_args(kind))) and value.lower() in _WORDS:
        return _WORDS[value.lower()]
    return value
