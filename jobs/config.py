"""Settings of the Spark jobs, in one typed place; CLI flags are derived from these fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from crawl.inputs import resolve_inputs
from crawl.warc import DEFAULT_MAX_BODY_BYTES
from pipeline.filters import PageFilterConfig


class Preflight:
    """A job config with checks that need no Spark: the launcher (`jobs.spark.run_job`) runs them before it
    starts a session, so a bad input fails in a second with its message, not after the JVM has started."""

    def preflight(self) -> None:
        """Raise on a config the job would refuse anyway; nothing to check by default."""


class WarcInputs(Preflight):
    """Configs whose `input` names WARC files: the spec must resolve (exist, hold WARCs, be local)."""

    input: str

    def preflight(self) -> None:
        resolve_inputs(self.input)


@dataclass(kw_only=True)
class CleaningConfig:
    """Exact dedup, near dedup and decontamination settings, shared by `corpus build` and `corpus dedup`."""

    exact_dedup: bool = field(default=True, metadata={"help": "drop repeated normalised texts and URLs"})
    near_dedup: bool = field(default=True, metadata={"help": "drop near duplicates (MinHash LSH)"})
    threshold: float = field(
        default=0.8,
        metadata={"help": "Jaccard similarity of word 5-gram sets that counts as a near duplicate"},
    )
    recall_margin: float = field(
        default=0.1,
        metadata={
            "help": "LSH bands are tuned for threshold minus this; the exact Jaccard check restores precision"
        },
    )
    num_perm: int = field(default=128, metadata={"help": "MinHash permutations"})
    ngram: int = field(default=5, metadata={"help": "words per shingle"})
    minhash_seed: int = field(default=1, metadata={"help": "MinHash permutation seed (datasketch's default)"})
    max_pairs_bucket: int = field(
        default=50,
        metadata={"help": "LSH buckets larger than this link their documents as a star instead of all pairs"},
    )
    index: str | None = field(
        default=None,
        metadata={
            "help": "dedup index of an earlier corpus (its dedup_index/ folder): drop documents it holds"
        },
    )
    decontaminate: bool = field(
        default=True, metadata={"help": "drop documents quoting --benchmarks questions"}
    )
    benchmarks: str | None = field(
        default=None, metadata={"help": "benchmark JSONL files or folders, comma-separated (question field)"}
    )
    decontam_ngram: int = field(default=13, metadata={"help": "words per n-gram matched against benchmarks"})


@dataclass(kw_only=True)
class CorpusDedupConfig(CleaningConfig):
    input: str = field(metadata={"help": "existing corpus directory (from corpus build)"})
    output: str = field(metadata={"help": "deduplicated corpus directory to create"})
    master: str = field(default="local[*]", metadata={"help": "Spark master URL"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})
    app_name: str = field(default="mathforge-dedup", metadata={"help": "Spark application name"})


@dataclass(kw_only=True)
class CorpusBuildConfig(CleaningConfig, PageFilterConfig, WarcInputs):
    """`corpus build`: the inputs, the keep rules (`PageFilterConfig`), cleaning, and how to run."""

    input: str = field(
        metadata={
            "help": "WARC file, directory, glob, or paths file (warc.paths[.gz]); comma-separate several"
        }
    )
    output: str = field(metadata={"help": "corpus directory to create (Parquet shards + manifest + stats)"})
    master: str = field(default="local[*]", metadata={"help": "Spark master URL"})
    math_model: str | None = field(
        default=None,
        metadata={
            "help": "trained fastText math classifier (mathforge classifier train); default: rule scorer"
        },
    )
    lid_model: str | None = field(
        default=None, metadata={"help": "path to lid.176.ftz (default: the bundled copy)"}
    )
    max_body_bytes: int = field(default=DEFAULT_MAX_BODY_BYTES, metadata={"help": "skip larger HTTP bodies"})
    page_time_budget: float = field(
        default=10.0,
        metadata={
            "help": "seconds one page may take; a page over it is counted error:page_timeout and skipped "
            "(0: no limit)"
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})
    app_name: str = field(default="mathforge-build-corpus", metadata={"help": "Spark application name"})


@dataclass
class ClassifierTrainConfig(WarcInputs):
    input: str = field(metadata={"help": "crawl to sample from: WARC file, directory, glob or paths file"})
    output: str = field(metadata={"help": "model file to write (its JSON sidecar goes next to it)"})
    positives: str | None = field(
        default=None,
        metadata={"help": "seed texts: Parquet (text column) or JSONL; default: bootstrap from math markup"},
    )
    max_per_class: int = field(default=50_000, metadata={"help": "cap on texts per class"})
    negative_fraction: float = field(
        default=1.0, metadata={"help": "share of clean negative pages to sample"}
    )
    master: str = field(default="local[*]", metadata={"help": "Spark master URL"})
    seed: int = field(default=0, metadata={"help": "sampling and training seed"})
    epoch: int = field(
        default=3,
        metadata={
            "help": "fastText epochs (DeepSeekMath: 3, for ~1M seed pages; a few hundred seeds need more)"
        },
    )
    bucket: int = field(
        default=200_000,
        metadata={"help": "fastText n-gram hash buckets (model ~ bucket x 256 floats: 200k is ~200 MB)"},
    )
    threads: int = field(default=2, metadata={"help": "fastText training threads"})
