"""Example 4b: the Mamba-style state-space layer on the adding problem."""

from __future__ import annotations

from dataclasses import dataclass

from configs.adding_lstm import AddingLSTM


@dataclass(frozen=True)
class AddingMamba(AddingLSTM):
    """The task of :class:`~configs.adding_lstm.AddingLSTM`; the model is a linear
    embedding, ``num_layers`` Mamba layers with LayerNorm between them, the last step
    and a linear read-out. The input-dependent step size lets it ignore unmarked
    values, so it learns the task in fewer steps than the LSTM."""

    name: str = "adding_mamba"
    steps: int = 800
    lr: float = 3e-3
    model: str = "mamba"
    num_layers: int = 2
