"""Example 5: fine-tune a causal language model (a local Hugging Face directory, or a tiny GPT-2 from scratch)."""

from __future__ import annotations

from dataclasses import dataclass

from configs._base import Config


@dataclass(frozen=True)
class Finetune(Config):
    """Next-byte language modelling on the char_gpt corpus, from a local checkpoint or from scratch.

    With ``from_pretrained`` the model is read by tlean.models.from_pretrained (gpt2 or
    llama directories; nothing is downloaded); without it a tiny model of ``family`` is
    built from ``seed``. Text is tokenised bytewise (ids 0-255), folded into a smaller
    vocabulary by ``id % vocab_size``. ``lora_rank > 0`` trains LoRA adapters only
    (tlean.nn.lora) and saves the merged model; ``0`` fine-tunes every parameter.

    Attributes:
      from_pretrained: a local Hugging Face directory (model_type gpt2 or llama); None builds the tiny model.
      family: the model built from scratch when from_pretrained is None: gpt2 or llama.
      context: bytes per training window (at most the model's context length).
      d_model: width of the model built from scratch.
      nhead: attention heads of the model built from scratch.
      num_layers: layers of the model built from scratch.
      dropout: dropout probability of the model built from scratch.
      lora_rank: rank of the LoRA adapters; 0 fine-tunes every parameter.
      lora_alpha: LoRA's scale numerator (the update is scaled by lora_alpha / lora_rank).
      lora_targets: regex over Linear paths to adapt; None: the family's default (gpt2 .*c_attn, llama .*(q_proj|v_proj)).
      prompt: the text the greedy continuation starts from.
      sample_len: bytes generated greedily after the prompt.
      eval_windows: held-out windows evaluated.
    """

    name: str = "finetune"
    example: str = "finetune"
    steps: int = 500
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0
    log_every: int = 25
    eval_every: int = 250
    checkpoint_every: int = 500
    from_pretrained: str | None = None
    family: str = "gpt2"
    context: int = 64
    d_model: int = 64
    nhead: int = 4
    num_layers: int = 2
    dropout: float = 0.0
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: str | None = None
    prompt: str = "Return the "
    sample_len: int = 32
    eval_windows: int = 64
