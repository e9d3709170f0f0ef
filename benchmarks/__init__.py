"""Speed comparisons of tlean against hand-written JAX, flax (nnx, linen), equinox and PyTorch.

Run ``python -m benchmarks --help``. One module per model family (``mlp``, ``cnn``,
``transformer``, ``lstm``), ``tiny`` for the per-call overhead, ``compile`` for compile
time against depth and sequence length; ``_timing`` and ``_common`` hold what they share.
"""
