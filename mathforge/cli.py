"""The `mathforge` command: one entry point for the corpus jobs, page inspection and training.

Heavy imports (pyspark, torch, trafilatura) happen inside the handlers so `mathforge --help` is instant.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typedconfig import add_dataclass_args, dataclass_from_args


def _spark_job(
    job_path: str, config_cls: type, render: Callable[[Any], str]
) -> Callable[[argparse.Namespace], int]:
    """A handler that builds `config_cls` from the flags and runs the Spark job `module:function`."""

    def handler(args: argparse.Namespace) -> int:
        module, function = job_path.split(":")
        from jobs.spark import run_job

        job = getattr(importlib.import_module(module), function)
        print(render(run_job(job, dataclass_from_args(config_cls, args), "mathforge")))
        return 0

    return handler


def _stats_markdown(stats: dict) -> str:
    from jobs.corpus_output import render_stats_markdown

    return render_stats_markdown(stats)


def _loop_markdown(stats: dict) -> str:
    from jobs.iterate_corpus import render_loop_markdown

    return render_loop_markdown(stats)


def _corpus_report(args: argparse.Namespace) -> int:
    from jobs.corpus_output import write_report_html

    corpus = Path(args.corpus)
    if not (corpus / "stats.json").is_file():
        raise FileNotFoundError(f"{corpus} is not a corpus directory (no stats.json)")
    print(write_report_html(corpus))
    return 0


def _annotate_quality(args: argparse.Namespace) -> int:
    """`classifier annotate`: the Spark sample and the driver's annotation loop, with training's chat client
    as the engine (jobs/ cannot import training/, so the command line hands it down)."""
    import functools

    from jobs.annotate_quality import annotate_quality
    from jobs.config import QualityAnnotateConfig
    from jobs.spark import run_job
    from training.config import EngineConfig
    from training.sampling.openai_chat import chat_engine

    config = dataclass_from_args(QualityAnnotateConfig, args)
    config.preflight()  # a bad corpus path fails before the server is asked anything
    with chat_engine(dataclass_from_args(EngineConfig, args), seed=config.seed) as engine:
        job = functools.partial(annotate_quality, engine=engine)
        summary = run_job(job, config, "mathforge-annotate")
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _train_quality(args: argparse.Namespace) -> int:
    from jobs.config import QualityTrainConfig
    from jobs.train_quality import train_quality

    config = dataclass_from_args(QualityTrainConfig, args)
    train_quality(config)
    print(Path(config.output).with_suffix(".report.md").read_text(encoding="utf-8"))
    return 0


def read_html_file(path: str) -> bytes:
    """Raw bytes of an .html or .html.gz file (charset decoding is the pipeline's job)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with gzip.open(p, "rb") if p.name.endswith(".gz") else p.open("rb") as fh:
        return fh.read()


def _inspect(args: argparse.Namespace) -> int:
    from jobs.corpus_pipeline import PageAnalyser, QualityModel, math_scorer_for

    body = read_html_file(args.file)
    quality = QualityModel(args.quality_model) if args.quality_model else None
    analyser = PageAnalyser(args.lid_model, math_scorer_for(args.math_model), quality=quality)
    shown = analyser.explain(body, args.content_type, args.url)
    print(json.dumps(shown, ensure_ascii=False, indent=None if args.compact else 2))
    return 0


def _sample_crawl(args: argparse.Namespace) -> int:
    from samplecrawl.writer import write_sample_crawl

    paths = write_sample_crawl(
        Path(args.out), n_files=args.files, records_per_file=args.records, seed=args.seed
    )
    print(paths)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jobs.config import (
        ClassifierTrainConfig,
        CorpusBuildConfig,
        CorpusDedupConfig,
        CorpusRefreshConfig,
        IterateConfig,
        QualityAnnotateConfig,
        QualityScoreConfig,
        QualityTrainConfig,
    )
    from training import cli as training_cli

    parser = argparse.ArgumentParser(
        prog="mathforge", description="Web crawls to math corpora to math models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    corpus = commands.add_parser("corpus", help="build and maintain corpora (Spark jobs)")
    corpus_cmds = corpus.add_subparsers(dest="corpus_command", required=True)
    build = corpus_cmds.add_parser(
        "build",
        help="WARC files → Parquet corpus",
        description="Run jobs/build_corpus.py (Spark local[*] by default).",
    )
    add_dataclass_args(build, CorpusBuildConfig)
    build.set_defaults(
        handler=_spark_job("jobs.build_corpus:build_corpus", CorpusBuildConfig, _stats_markdown)
    )

    refresh = corpus_cmds.add_parser(
        "refresh",
        help="add the WARC files a corpus has not seen as a new snapshot (incremental, idempotent)",
        description="Run jobs/refresh_corpus.py: inputs the manifest does not list are processed with the "
        "corpus's own settings, deduplicated against its index and committed as data/snapshot=<run id>/ of "
        "its next version. One refresh per corpus at a time (a lock refuses a second).",
    )
    add_dataclass_args(refresh, CorpusRefreshConfig)
    refresh.set_defaults(
        handler=_spark_job("jobs.refresh_corpus:refresh_corpus", CorpusRefreshConfig, _stats_markdown)
    )

    dedup = corpus_cmds.add_parser(
        "dedup", help="dedup and decontaminate an existing corpus", description="Run jobs/dedup_corpus.py."
    )
    add_dataclass_args(dedup, CorpusDedupConfig)
    dedup.set_defaults(
        handler=_spark_job("jobs.dedup_corpus:dedup_corpus", CorpusDedupConfig, _stats_markdown)
    )

    iterate = corpus_cmds.add_parser(
        "iterate",
        help="DeepSeekMath's loop: train, recall, discover math domains, grow the seeds, repeat",
        description="Run jobs/iterate_corpus.py (Spark local[*] by default). Resumes at the first unfinished round.",
    )
    add_dataclass_args(iterate, IterateConfig)
    iterate.set_defaults(
        handler=_spark_job("jobs.iterate_corpus:iterate_corpus", IterateConfig, _loop_markdown)
    )

    report = corpus_cmds.add_parser(
        "report",
        help="re-render a corpus's report.html from its stats.json and manifest.json",
        description="Write DIR/report.html (what `corpus build` and `corpus dedup` write) from DIR/stats.json "
        "and DIR/manifest.json; no Spark.",
    )
    report.add_argument("--corpus", required=True, help="the corpus directory")
    report.set_defaults(handler=_corpus_report)

    classifier = commands.add_parser("classifier", help="train the fastText math classifier (Spark job)")
    classifier_cmds = classifier.add_subparsers(dest="classifier_command", required=True)
    train_clf = classifier_cmds.add_parser(
        "train",
        help="seeds (given or bootstrapped from math markup) + crawl negatives → fastText model",
        description="Run jobs/train_math_classifier.py (Spark local[*] by default).",
    )
    add_dataclass_args(train_clf, ClassifierTrainConfig)
    render_json = lambda report: json.dumps(report, indent=2)  # noqa: E731
    train_clf.set_defaults(
        handler=_spark_job("jobs.train_math_classifier:train_classifier", ClassifierTrainConfig, render_json)
    )

    from training.config import EngineConfig

    annotate = classifier_cmds.add_parser(
        "annotate",
        help="LLM annotation of math-educational quality (0-5, FineMath's rubric) on a stratified corpus sample",
        description="Sample a corpus by math-score bucket x domain (Spark), ask an OpenAI-compatible server "
        "(vLLM, SGLang, mathforge serve) for a 0-5 score per page, write Parquet; a rerun resumes. "
        "docs/quality.md.",
    )
    add_dataclass_args(annotate, QualityAnnotateConfig)
    add_dataclass_args(annotate, EngineConfig)
    annotate.set_defaults(handler=_annotate_quality)

    train_quality = classifier_cmds.add_parser(
        "train-quality",
        help="train the quality model on annotations (fastText by default, or --encoder DIR) and report agreement",
        description="Held-out Spearman, F1 at 3+ and the confusion matrix of the model and of the DeepSeekMath "
        "relevance score against the annotations; no Spark. docs/quality.md.",
    )
    add_dataclass_args(train_quality, QualityTrainConfig)
    train_quality.set_defaults(handler=_train_quality)

    score_quality = classifier_cmds.add_parser(
        "score-quality",
        help="score every page of a corpus with a quality model (Spark) → Parquet of ids and quality_score",
        description="Run jobs/score_quality.py (Spark local[*] by default).",
    )
    add_dataclass_args(score_quality, QualityScoreConfig)
    score_quality.set_defaults(
        handler=_spark_job("jobs.score_quality:score_quality", QualityScoreConfig, render_json)
    )

    inspect = commands.add_parser(
        "inspect",
        help="show what the corpus job decides for one HTML page (JSON)",
        description="Print lang, lang_score, math_score, the two-stage math decision (prefilter hit, stage-one "
        "score, whether math-aware extraction ran, final score) and the extracted text of one page as JSON.",
    )
    inspect.add_argument("file", help="an .html or .html.gz file")
    inspect.add_argument("--url", default=None, help="the page's URL (helps extraction)")
    inspect.add_argument(
        "--content-type", default=None, help="HTTP Content-Type header, e.g. 'text/html; charset=gbk'"
    )
    inspect.add_argument("--lid-model", default=None, help="path to lid.176.ftz (default: the bundled copy)")
    inspect.add_argument(
        "--math-model", default=None, help="trained math classifier (default: the rule scorer)"
    )
    inspect.add_argument(
        "--quality-model",
        default=None,
        help="quality model: adds quality_score (0-5) and the model's identity",
    )
    inspect.add_argument("--compact", action="store_true", help="one-line JSON")
    inspect.set_defaults(handler=_inspect)

    sample = commands.add_parser(
        "sample-crawl", help="write the generated sample crawl (WARC files + manifest)"
    )
    sample.add_argument("--out", required=True, help="directory to write")
    sample.add_argument("--files", type=int, default=4, help="number of WARC files (default: 4)")
    sample.add_argument("--records", type=int, default=60, help="captures per file (default: 60)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sample.set_defaults(handler=_sample_crawl)

    training_cli.register(commands)
    training_cli.register_model_commands(commands)
    return parser


EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the corpus; try again later


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from jobs.corpus_writers import CorpusLockedError

    try:
        return args.handler(args)
    except CorpusLockedError as exc:  # not a failure of this run: cron may simply try again later
        print(f"mathforge: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (FileNotFoundError, FileExistsError, ValueError, NotImplementedError) as exc:
        print(f"mathforge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
