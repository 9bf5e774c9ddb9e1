"""Settings of the Spark jobs, in one typed place; CLI flags are derived from these fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from crawl.warc import DEFAULT_MAX_BODY_BYTES

ALL_LANGS = "all"


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
class CorpusBuildConfig(CleaningConfig):
    input: str = field(
        metadata={
            "help": "WARC file, directory, glob, or paths file (warc.paths[.gz]); comma-separate several"
        }
    )
    output: str = field(metadata={"help": "corpus directory to create (Parquet shards + manifest + stats)"})
    master: str = field(default="local[*]", metadata={"help": "Spark master URL"})
    langs: str = field(
        default=ALL_LANGS, metadata={"help": "comma-separated lid.176 codes to keep, or 'all'"}
    )
    min_lang_score: float = field(
        default=0.0, metadata={"help": "drop pages whose language probability is lower"}
    )
    min_math_score: float | None = field(
        default=None,
        metadata={
            "help": "drop pages whose math score is lower (0 keeps all); default: the two-stage decision "
            "(score >= 0.5, or >= 0.3 for pages with strong math markup)"
        },
    )
    math_model: str | None = field(
        default=None,
        metadata={
            "help": "trained fastText math classifier (mathforge classifier train); default: rule scorer"
        },
    )
    min_chars: int = field(default=1, metadata={"help": "drop pages whose extracted text is shorter"})
    lid_model: str | None = field(
        default=None, metadata={"help": "path to lid.176.ftz (default: the bundled copy)"}
    )
    max_body_bytes: int = field(default=DEFAULT_MAX_BODY_BYTES, metadata={"help": "skip larger HTTP bodies"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})
    app_name: str = field(default="mathforge-build-corpus", metadata={"help": "Spark application name"})

    def lang_set(self) -> frozenset[str] | None:
        """Languages to keep, or None for every language."""
        if self.langs.strip().lower() == ALL_LANGS:
            return None
        return frozenset(code.strip() for code in self.langs.split(",") if code.strip())


@dataclass
class ClassifierTrainConfig:
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
