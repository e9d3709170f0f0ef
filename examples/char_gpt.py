"""Example 3: a character-level GPT on the docstrings of Python's standard library.

The corpus is built offline from ``inspect.getdoc`` of ~50 standard-library modules and
their public classes and functions (printable ASCII only); the last 5% is held out.
The model is :func:`tlean.models.gpt`; after training, text is sampled through its KV
cache with :func:`tlean.models.generate` (prefill the prompt, then one token per step
in a single jitted ``lax.scan``).

    python -m examples.train --config char_gpt
"""

from __future__ import annotations

import importlib
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from configs import Config
from examples import _common
from tlean import Model, nn, train
from tlean.models import generate, gpt

MODULES = (
    "abc",
    "argparse",
    "ast",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "glob",
    "hashlib",
    "heapq",
    "html",
    "inspect",
    "io",
    "itertools",
    "json",
    "logging",
    "math",
    "operator",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "random",
    "re",
    "shutil",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "typing",
    "unittest",
    "uuid",
    "zipfile",
)


def corpus() -> str:
    """The docstrings of ``MODULES`` and their public members, printable ASCII and newlines only."""
    docs = []
    with warnings.catch_warnings():  # typing.io and typing.re warn when touched
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in MODULES:
            module = importlib.import_module(name)
            docs.append(inspect.getdoc(module) or "")
            for attr in sorted(dir(module)):
                obj = getattr(module, attr, None)
                if attr.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                    continue
                docs.append(inspect.getdoc(obj) or "")
    text = "\n\n".join(d for d in docs if d)
    return "".join(c for c in text if c == "\n" or " " <= c <= "~")


class Vocab:
    """Characters <-> ids (sorted characters of the corpus)."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown}")
        return np.array([self.index[c] for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids))


def windows(ids: np.ndarray, context: int, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``ids[s : s + context]`` and next-character targets ``ids[s + 1 : s + context + 1]``."""
    w = np.stack([ids[s : s + context + 1] for s in starts])
    return w[:, :-1], w[:, 1:]


def sample(model: Model, vocab: Vocab, prompt: str, length: int, key: jax.Array, temperature: float) -> str:
    """``length`` characters after ``prompt``, through the KV cache.

    The cache holds ``max_len`` positions, so longer samples continue in chunks, each
    prompted with the last half-context of text.
    """
    max_len = model.layer.max_len
    ids = vocab.encode(prompt)[-(max_len - 1) :]
    text, produced = prompt, 0
    while produced < length:
        steps = min(length - produced, max_len - len(ids))
        key, sub = jax.random.split(key)
        out = np.asarray(generate(model, jnp.asarray(ids), steps=steps, key=sub, temperature=temperature))
        new = out[len(ids) :]
        text += vocab.decode(new)
        produced += steps
        ids = out[-(max_len // 2) :]
    return text


def build(config: Config, vocab_size: int) -> Model:
    """The GPT the config describes, initialised from ``config.seed``."""
    return nn.run(
        config.seed,
        gpt(
            vocab_size,
            config.context,
            d_model=config.d_model,
            nhead=config.nhead,
            num_layers=config.num_layers,
            dropout=config.dropout,
        ),
    )


def run(config: Config) -> dict:
    """Train, evaluate next-character loss/accuracy on held-out text, sample; return the results."""
    out = _common.output_dir(config)
    text = corpus()
    vocab = Vocab(text)
    ids = vocab.encode(text)
    split = int(0.95 * len(ids))
    train_ids, test_ids = ids[:split], ids[split:]
    print(f"{config.name}: {len(ids):,} characters of standard-library docstrings, vocabulary of {len(vocab)}")
    model = build(config, len(vocab))
    _common.show_summary(model, (config.batch_size, config.context), jnp.int32, out)

    def batches(step: int):
        starts = np.random.default_rng([config.seed, step]).integers(
            0, len(train_ids) - config.context - 1, config.batch_size
        )
        return windows(train_ids, config.context, starts)

    starts = np.arange(0, len(test_ids) - config.context - 1, config.context)[: config.eval_windows]
    eval_data = train.eval_batches(windows(test_ids, config.context, starts), 64)
    state, results = _common.train_and_report(config, model, train.classification_loss, batches, eval_data, out)
    text = sample(
        state.model, vocab, config.prompt, config.sample_len, jax.random.key(config.seed + 2), config.temperature
    )
    (out / "sample.txt").write_text(text + "\n")
    print(f"sample (temperature {config.temperature}):\n{text}\n")
    results["sample"] = text
    return results
