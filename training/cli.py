"""`mathforge train ...` commands. Flags come from the config dataclasses; torch is imported only when a
command runs, so that `mathforge --help` stays fast."""

from __future__ import annotations

import argparse
import importlib

from training.config import (
    DistillConfig,
    GRPOConfig,
    PretrainConfig,
    SFTConfig,
    add_config_args,
    config_from_args,
)
from typedconfig import add_dataclass_args, dataclass_from_args

# objective → (its module, with `run` and the torchrun entry point; its run config; help)
OBJECTIVES = {
    "pretrain": (
        "training.objectives.pretrain",
        PretrainConfig,
        "pretrain a transformer with multi-token prediction on corpus shards; trains a tokenizer first "
        "unless one is given",
    ),
    "sft": (
        "training.objectives.sft",
        SFTConfig,
        "supervised fine-tuning on prompt/completion (or messages) rows, loss on completion tokens only",
    ),
    "grpo": (
        "training.objectives.grpo",
        GRPOConfig,
        "GRPO: group-relative policy optimisation with verifiable rewards on prompts with answers",
    ),
    "distill": (
        "training.objectives.distill",
        DistillConfig,
        "logit distillation from a frozen teacher (forward/reverse KL, generalised JSD; off- or on-policy, or "
        "offline from stored top-K log-probs), chunked so that neither model's full logits exist",
    ),
}


def _handler(module: str, config_cls: type):
    def handler(args: argparse.Namespace) -> int:
        summary = importlib.import_module(module).run(config_from_args(config_cls, args))
        last = summary["last"]
        if last:
            print(
                f"trained to step {summary['step']}: loss {last['loss']:.4f}; run directory {summary['run_dir']}"
            )
        return 0

    return handler


def _with_engine(config_cls: type, args: argparse.Namespace):
    """A config with an `engine` section (EngineConfig) from the flat flags of both."""
    from training.config import EngineConfig

    return dataclass_from_args(config_cls, args, engine=dataclass_from_args(EngineConfig, args))


def _add_with_engine(parser: argparse.ArgumentParser, config_cls: type) -> None:
    from training.config import EngineConfig

    add_dataclass_args(parser, config_cls, skip=("engine",))
    add_dataclass_args(parser, EngineConfig)


def _eval(args: argparse.Namespace) -> int:
    from training.config import EvalConfig
    from training.evaluation.evaluate import evaluate, format_summary

    cfg = _with_engine(EvalConfig, args)
    summary = evaluate(cfg)
    print(format_summary(summary))
    print(f"details in {cfg.out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from training.config import GenerateConfig
    from training.evaluation.sampling_cli import generate_text

    print(generate_text(_with_engine(GenerateConfig, args)))
    return 0


def _model_import(args: argparse.Namespace) -> int:
    from training.models.hf import import_hf

    print(import_hf(args.source, args.out, dtype=args.dtype))
    return 0


def _model_export(args: argparse.Namespace) -> int:
    from training.models.hf import export_hf
    from training.models.model_io import load_model

    loaded = load_model(args.source)
    template = loaded.template
    chat = template.chat_template if template.kind == "chat" else None
    print(export_hf(loaded.model, loaded.tokenizer_path, args.out, chat_template=chat))
    return 0


def _model_convert(args: argparse.Namespace) -> int:
    from training.models.model_io import convert_to_model_dir

    print(convert_to_model_dir(args.source, args.out))
    return 0


def _traces(args: argparse.Namespace) -> int:
    from training.config import TracesConfig
    from training.objectives.traces import write_traces

    summary = write_traces(_with_engine(TracesConfig, args))
    run = summary["this_run"]
    print(
        f"{summary['rows']} trace rows for {summary['prompts']} prompts in {summary['out']} "
        f"({summary['chunks_resumed']} of {summary['chunks']} chunks were already done; this run: "
        f"{run['samples']} samples, {run['accepted']} accepted, {run['duplicates']} duplicates dropped, "
        f"{run['kept']} kept)"
    )
    failed = summary["failed_chunks"]
    if failed:
        print(f"{len(failed)} chunks not written because requests failed ({failed}): rerun the same command")
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from training.config import ServeConfig
    from training.serving.server import serve

    serve(dataclass_from_args(ServeConfig, args))
    return 0


def register_model_commands(subparsers: argparse._SubParsersAction) -> None:
    """`mathforge eval`, `mathforge generate`, `mathforge model import|export`, `mathforge distill traces` and
    `mathforge serve`."""
    from training.config import EvalConfig, GenerateConfig, ServeConfig, TracesConfig

    evaluate = subparsers.add_parser(
        "eval",
        help="a model on math benchmark files: pass@1, pass@k, maj@k",
        description="Generate (in process with the KV cache, or at an OpenAI-compatible server with --server), "
        "verify final answers with math-verify (hard timeouts), write summary.json and one JSONL of "
        "completions per benchmark.",
    )
    _add_with_engine(evaluate, EvalConfig)
    evaluate.set_defaults(handler=_eval)

    generate = subparsers.add_parser("generate", help="print what a model writes after a prompt")
    _add_with_engine(generate, GenerateConfig)
    generate.set_defaults(handler=_generate)

    model = subparsers.add_parser("model", help="Hugging Face checkpoints in and out")
    model_cmds = model.add_subparsers(dest="model_command", required=True)
    imp = model_cmds.add_parser(
        "import", help="a Llama/Qwen2 Hugging Face directory → a mathforge model directory"
    )
    imp.add_argument("--from", dest="source", required=True, help="Hugging Face model directory")
    imp.add_argument("--out", required=True, help="mathforge model directory to write")
    imp.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default: float32)")
    imp.set_defaults(handler=_model_import)
    exp = model_cmds.add_parser(
        "export", help="a run, checkpoint or model directory → a Hugging Face directory transformers loads"
    )
    exp.add_argument("--from", dest="source", required=True, help="run, checkpoint or model directory")
    exp.add_argument("--out", required=True, help="Hugging Face directory to write")
    exp.set_defaults(handler=_model_export)
    convert = model_cmds.add_parser(
        "convert",
        help="a run or checkpoint (sharded DCP ones too) → a mathforge model directory, in one process",
    )
    convert.add_argument("--from", dest="source", required=True, help="run or checkpoint directory")
    convert.add_argument("--out", required=True, help="mathforge model directory to write")
    convert.set_defaults(handler=_model_convert)

    distill = subparsers.add_parser(
        "distill", help="teacher traces for distillation (train with `train distill`)"
    )
    distill_cmds = distill.add_subparsers(dest="distill_command", required=True)
    traces = distill_cmds.add_parser(
        "traces",
        help="K teacher samples per prompt, verified by the reward functions; the accepted ones → Parquet",
        description="Sample K completions per prompt from the teacher, keep the verified-correct ones "
        "(best-of-K or all, at most M per prompt, exact duplicates dropped) and write them as Parquet part "
        "files that `train sft` and `train distill` read; rerun the same command to resume after a crash.",
    )
    _add_with_engine(traces, TracesConfig)
    traces.set_defaults(handler=_traces)

    server = subparsers.add_parser(
        "serve",
        help="an OpenAI-compatible HTTP server for a model (/v1/completions, /v1/chat/completions)",
        description="Serve a model over the OpenAI API (/v1/models, /v1/completions, /v1/chat/completions "
        "with the model's chat template, /tokenize, /health), batching concurrent requests together; "
        "`eval`, `distill traces` and `generate` reach it with --server.",
    )
    add_dataclass_args(server, ServeConfig)
    server.set_defaults(handler=_serve)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` with one subcommand per objective; handlers are stored as `handler(args) -> int`."""
    train = subparsers.add_parser("train", help="train models: pretraining, SFT, GRPO, distillation")
    commands = train.add_subparsers(dest="train_command", required=True)
    for name, (module, config_cls, help_text) in OBJECTIVES.items():
        sub = commands.add_parser(
            name,
            help=f"{help_text} (also: torchrun -m {module})",
            description=help_text[0].upper() + help_text[1:] + ".",
        )
        add_config_args(sub, config_cls)
        sub.set_defaults(handler=_handler(module, config_cls))
