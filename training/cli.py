"""`mathforge train ...` commands. Flags come from the config dataclasses; torch is imported only when a
command runs, so that `mathforge --help` stays fast."""

from __future__ import annotations

import argparse

from training.config import PretrainConfig, add_config_args, config_from_args


def _pretrain(args: argparse.Namespace) -> int:
    from training.pretrain import run

    summary = run(config_from_args(PretrainConfig, args))
    last = summary["last"]
    if last:
        print(
            f"trained to step {summary['step']}: loss {last['loss']:.4f}; run directory {summary['run_dir']}"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` with its `pretrain` subcommand; handlers are stored as `handler(args) -> int`."""
    train = subparsers.add_parser("train", help="train models on the corpus")
    commands = train.add_subparsers(dest="train_command", required=True)
    pretrain = commands.add_parser(
        "pretrain",
        help="pretrain a transformer with multi-token prediction (also: torchrun -m training.pretrain)",
        description="Pretrain on Parquet shards with a text column; trains a tokenizer first unless one is given.",
    )
    add_config_args(pretrain, PretrainConfig)
    pretrain.set_defaults(handler=_pretrain)
