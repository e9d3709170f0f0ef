"""Train one of the examples: ``python -m examples.train [--config NAME] [--field value ...]``.

The default is the digits CNN (``digits_cnn``), which trains end to end in well under
two minutes on two CPU cores and prints its final test accuracy. Any field of the
config can be overridden, e.g. ``--steps 10 --batch_size 32``; ``--list`` shows the
configs and their fields, ``--config NAME --help`` every field of one, with its type, default
and meaning (tyro reads them from the config dataclass). Outputs (checkpoint, history.json, curves.png, summary.txt)
go to ``runs/<name>`` unless ``--out_dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time

import configs

USAGE = "usage: python -m examples.train [--config NAME] [--field value ...] | --list | --help"
PROG = "python -m examples.train"


def run(config: configs.Config) -> dict:
    """Run the example the config belongs to; returns its results dict."""
    module = importlib.import_module(f"examples.{config.example}")
    return module.run(config)


def _split_config(argv: list[str]) -> tuple[str, list[str]]:
    """``(--config's value, the other arguments)``: the one flag that picks which dataclass tyro parses."""
    picker = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    picker.add_argument("--config", default=configs.DEFAULT)
    known, rest = picker.parse_known_args(argv)
    return known.config, rest


def parse(argv: list[str]) -> configs.Config:
    """The config named by ``--config`` (default ``digits_cnn``) with the other flags applied by tyro
    (:meth:`configs.Config.override`); ``--help`` prints every field of that config and exits."""
    name, rest = _split_config(argv)
    config = configs.get(name)
    description = (
        f"{__doc__.strip()}\n\n--config NAME picks the example (one of {', '.join(sorted(configs.CONFIGS))}; "
        f"default {configs.DEFAULT}); these are the fields of {name}:"
    )
    return config.override(rest, prog=PROG, description=description)


def main(argv: list[str] | None = None) -> dict | None:
    """The command line; returns the results (``None`` for ``--list``; ``--help`` exits)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--list" in argv:
        for name, cls in sorted(configs.CONFIGS.items()):
            default = " (default)" if name == configs.DEFAULT else ""
            fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
            print(f"{name}{default}: {fields}")
        return None
    try:
        config = parse(argv)
    except ValueError as err:  # an unknown --config name
        raise SystemExit(f"{err}\n{USAGE}") from None
    start = time.perf_counter()
    results = run(config)
    results["total_seconds"] = time.perf_counter() - start
    print(f"checkpoint: {results['checkpoint']}\ncurves: {results['curves']}")
    line = f"final test loss: {results['test_loss']:.4f}"
    if results.get("test_accuracy") is not None:
        line += f"  final test accuracy: {100 * results['test_accuracy']:.2f}%"
    print(f"{line}  ({results['total_seconds']:.1f} s)")
    return results


if __name__ == "__main__":
    main()
