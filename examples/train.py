"""Train one of the examples: ``python -m examples.train [--config NAME] [--field value ...]``.

The default is the digits CNN (``digits_cnn``), which trains end to end in well under
two minutes on two CPU cores and prints its final test accuracy. Any field of the
config can be overridden, e.g. ``--steps 10 --batch_size 32``; ``--list`` shows the
configs and their fields. Outputs (checkpoint, history.json, curves.png, summary.txt)
go to ``runs/<name>`` unless ``--out_dir`` says otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import time

import configs

USAGE = "usage: python -m examples.train [--config NAME] [--field value ...] | --list"


def run(config: configs.Config) -> dict:
    """Run the example the config belongs to; returns its results dict."""
    module = importlib.import_module(f"examples.{config.example}")
    return module.run(config)


def parse(argv: list[str]) -> configs.Config:
    """The config named by ``--config`` (default ``digits_cnn``) with the other flags applied."""
    name, rest, i = configs.DEFAULT, [], 0
    while i < len(argv):
        if argv[i] == "--config":
            if i + 1 >= len(argv):
                raise ValueError("--config needs a name")
            name, i = argv[i + 1], i + 2
        elif argv[i].startswith("--config="):
            name, i = argv[i].split("=", 1)[1], i + 1
        else:
            rest.append(argv[i])
            i += 1
    return configs.get(name).override(rest)


def main(argv: list[str] | None = None) -> dict | None:
    """The command line; returns the results (``None`` for ``--list`` and ``--help``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print(__doc__.strip() + "\n\n" + USAGE)
        return None
    if "--list" in argv:
        for name, cls in sorted(configs.CONFIGS.items()):
            default = " (default)" if name == configs.DEFAULT else ""
            fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
            print(f"{name}{default}: {fields}")
        return None
    try:
        config = parse(argv)
    except ValueError as err:
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
