"""Runnable examples of tlean; start them with ``python -m examples.train`` (see examples/train.py).

- ``digits``: an MLP (``digits_mlp``) and a small ResNet-style CNN (``digits_cnn``, the
  default) on scikit-learn's handwritten digits;
- ``char_gpt``: a character-level GPT on the docstrings of Python's standard library,
  sampling through the KV cache;
- ``adding``: an LSTM (``adding_lstm``) and the Mamba-style SSM (``adding_mamba``) on the
  adding problem;
- ``finetune``: fine-tunes a causal language model (a local gpt2 / llama Hugging Face directory
  given by ``--from_pretrained``, or a tiny GPT-2 from scratch) on bytes, in full or with LoRA
  (``--lora_rank``), and writes it back with ``models.save_pretrained``.

Their configurations are the dataclasses in ``configs/``.
"""
