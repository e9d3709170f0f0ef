"""The fields every example shares, and command-line overrides (``--steps 10 --batch_size 32``)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any


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

    @property
    def output_dir(self) -> str:
        """``out_dir``, or ``runs/<name>``."""
        return self.out_dir if self.out_dir is not None else f"runs/{self.name}"

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (unknown names are a ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def override(self, argv: list[str]) -> "Config":
        """A copy with ``--field value`` (or ``--field=value``) pairs from the command line applied.

        Values are parsed by the field's type: ints, floats, ``true``/``false`` for bools,
        ``none`` for optional fields. An unknown field or a bad value is a ``ValueError``
        that lists the fields.

        >>> from configs import get
        >>> get("digits_mlp").override(["--steps", "10", "--batch_size=32"]).steps
        10
        """
        hints = typing.get_type_hints(type(self))
        fields = [f.name for f in dataclasses.fields(self)]
        changes: dict[str, Any] = {}
        i = 0
        while i < len(argv):
            arg = argv[i]
            if not arg.startswith("--"):
                raise ValueError(f"expected --field value, got {arg!r}; fields of {self.name}: {', '.join(fields)}")
            if "=" in arg:
                key, value = arg[2:].split("=", 1)
                i += 1
            else:
                if i + 1 >= len(argv):
                    raise ValueError(f"{arg} needs a value")
                key, value = arg[2:], argv[i + 1]
                i += 2
            key = key.replace("-", "_")
            if key not in fields:
                raise ValueError(f"{self.name} has no field {key!r}; its fields: {', '.join(fields)}")
            changes[key] = _parse(key, value, hints[key])
        return dataclasses.replace(self, **changes)


def _parse(key: str, value: str, kind: Any) -> Any:
    args = typing.get_args(kind)
    if type(None) in args:
        if value.lower() == "none":
            return None
        kind = next(a for a in args if a is not type(None))
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except ValueError:
        raise ValueError(f"--{key} expects {getattr(kind, '__name__', kind)}, got {value!r}") from None
