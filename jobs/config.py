"""Settings of the Spark jobs, in one typed place; CLI flags are derived from these fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crawl.inputs import DEFAULT_CRAWL_BASE, InputError, crawl_locations, resolve_inputs, take_part
from crawl.warc import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INFLATED_BYTES
from pipeline.filters import PageFilterConfig


class Preflight:
    """A job config with checks that need no Spark: the launcher (`jobs.spark.run_job`) runs them before it
    starts a session, so a bad input fails in a second with its message, not after the JVM has started."""

    def preflight(self) -> None:
        """Raise on a config the job would refuse anyway; nothing to check by default."""


@dataclass(kw_only=True)
class WarcInputs(Preflight):
    """Configs that read WARC files: named by `--input`, or by `--crawl` (a Common Crawl id resolved under
    `--crawl-base`), then cut by `--limit` and `--shard`. The driver resolves them before Spark starts. A
    remote paths file may name only its own host or bucket, and those `--allow-hosts` lists."""

    input: str | None = field(
        default=None,
        metadata={
            "help": "WARC file, directory, glob, or paths file (warc.paths[.gz]), local, s3:// or https://; "
            "comma-separate several"
        },
    )
    crawl: str | None = field(
        default=None, metadata={"help": "a Common Crawl crawl (CC-MAIN-YYYY-WW) instead of --input"}
    )
    crawl_base: str = field(
        default=DEFAULT_CRAWL_BASE,
        metadata={
            "help": "where --crawl's files live: https://data.commoncrawl.org/, s3://commoncrawl/ or a mirror"
        },
    )
    allow_hosts: str | None = field(
        default=None,
        metadata={
            "help": "hosts or buckets a remote paths file may name besides its own (comma-separated); "
            "entries naming any other are refused"
        },
    )
    limit: int | None = field(default=None, metadata={"help": "take only the first N input files (sorted)"})
    shard: str | None = field(
        default=None, metadata={"help": "take shard i of n of the inputs (i/n, 0-based), after --limit"}
    )

    def named_locations(self) -> list[str]:
        """Every WARC file `--input` or `--crawl` names, sorted, before `--limit` and `--shard`."""
        if bool(self.input) == bool(self.crawl):
            raise InputError("give exactly one of --input and --crawl")
        allow = self.allow_hosts or ()
        if self.input:
            return resolve_inputs(self.input, allow)
        return crawl_locations(self.crawl, self.crawl_base, allow)

    def warc_locations(self) -> list[str]:
        """The WARC files this run reads, sorted."""
        return take_part(self.named_locations(), self.limit, self.shard)

    def preflight(self) -> None:
        self.warc_locations()


@dataclass(kw_only=True)
class SparkSettings:
    """How a job's Spark session is made, one section every Spark command shares. mathforge's own Spark
    settings are defaults (`jobs.spark.SPARK_DEFAULTS`): spark-defaults.conf and `spark-submit --conf`
    override them, and `--conf` here overrides all of them (README "Spark configuration")."""

    master: str = field(
        default="local[*]",
        metadata={"help": "Spark master URL (ignored under spark-submit: its --master wins)"},
    )
    conf: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "a Spark setting KEY=VALUE, applied last (over spark-defaults.conf, spark-submit --conf "
            "and mathforge's defaults); repeat for several, a value may hold commas",
            "split": False,
            "metavar": "KEY=VALUE",
        },
    )


URL_DEDUP = ("first", "changed", "off")  # CleaningConfig.url_dedup; README "Dedup and decontamination"


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
        metadata={
            "help": "LSH buckets up to this size check all their pairs; larger ones check each document "
            "against at most this many representatives (documents past that are counted as unchecked)"
        },
    )
    url_dedup: str = field(
        default="changed",
        metadata={
            "help": f"one of {', '.join(URL_DEDUP)}: 'first' and 'changed' keep one document per URL in a build or "
            "refresh (the survivor; empty URLs never match); against --index, 'first' drops every recrawl "
            "of an indexed URL, 'changed' keeps one whose content is new (no exact or near duplicate "
            "indexed); 'off' dedups by content only"
        },
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

    def __post_init__(self) -> None:
        if self.url_dedup not in URL_DEDUP:
            raise ValueError(f"--url-dedup must be one of {', '.join(URL_DEDUP)}, got {self.url_dedup!r}")


@dataclass(kw_only=True)
class CorpusDedupConfig(CleaningConfig, SparkSettings):
    input: str = field(metadata={"help": "existing corpus directory (from corpus build)"})
    output: str = field(metadata={"help": "deduplicated corpus directory to create"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})
    app_name: str = field(default="mathforge-dedup", metadata={"help": "Spark application name"})


@dataclass(kw_only=True)
class FileAttemptsConfig:
    """How `corpus build` and `corpus refresh` treat an input file that brings its reader down: each file is
    committed on its own (a rerun reads only the rest), read in a child process of its task, and quarantined
    after `max_file_attempts` failed attempts (`jobs.corpus_work`). None of these changes a row."""

    max_file_attempts: int = field(
        default=3,
        metadata={
            "help": "attempts an input file gets (crash, out of memory, --file-time-limit; counted across task "
            "retries and reruns) before it is quarantined: left out, listed with the reason in the manifest "
            "(inputs_quarantined) and the stats, and the job goes on"
        },
    )
    file_time_limit: float = field(
        default=7200.0,
        metadata={"help": "seconds one attempt at one input file may take before it is killed (0: no limit)"},
    )
    retry_quarantined: bool = field(
        default=False,
        metadata={
            "help": "read quarantined files again, with fresh attempts (a refresh skips the corpus's "
            "quarantined inputs otherwise; a rerun of a killed run forgets their failed attempts)"
        },
    )


@dataclass(kw_only=True)
class CorpusBuildConfig(CleaningConfig, PageFilterConfig, WarcInputs, SparkSettings, FileAttemptsConfig):
    """`corpus build`: the inputs, the keep rules (`PageFilterConfig`), cleaning, how each input file is
    attempted (`FileAttemptsConfig`), and how to run."""

    output: str = field(metadata={"help": "corpus directory to create (Parquet shards + manifest + stats)"})
    math_model: str | None = field(
        default=None,
        metadata={
            "help": "trained fastText math classifier (mathforge classifier train); default: rule scorer"
        },
    )
    quality_model: str | None = field(
        default=None,
        metadata={
            "help": "quality model (mathforge classifier train-quality): scores every kept page 0-5 into "
            "the quality_score column; default: no score (null), no cost"
        },
    )
    min_quality: float | None = field(
        default=None,
        metadata={
            "help": "drop kept pages whose quality score is lower (drop:quality); needs --quality-model"
        },
    )
    lid_model: str | None = field(
        default=None, metadata={"help": "path to lid.176.ftz (default: the bundled copy)"}
    )
    max_body_bytes: int = field(default=DEFAULT_MAX_BODY_BYTES, metadata={"help": "skip larger HTTP bodies"})
    max_inflated_bytes: int = field(
        default=DEFAULT_MAX_INFLATED_BYTES,
        metadata={
            "help": "what one gzip member may inflate to within a record; past it the member is dropped "
            "and counted (error:inflated_too_large), and reading goes on with the next"
        },
    )
    page_time_budget: float = field(
        default=10.0,
        metadata={
            "help": "seconds one page may take; a page over it is counted error:page_timeout and skipped "
            "(0: no limit)"
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output directory"})
    app_name: str = field(default="mathforge-build-corpus", metadata={"help": "Spark application name"})

    def check_quality_settings(self) -> None:
        """`--min-quality` needs a model and a value on its 0-5 scale."""
        if self.min_quality is None:
            return
        if not self.quality_model:
            raise ValueError("--min-quality needs --quality-model (the model that gives the score)")
        if not 0.0 <= self.min_quality <= 5.0:
            raise ValueError(f"--min-quality is on the 0-5 scale, got {self.min_quality}")

    def preflight(self) -> None:
        self.check_quality_settings()
        if self.quality_model:
            from classifiers.quality import read_quality_metadata  # a missing file or sidecar: now, by name

            read_quality_metadata(self.quality_model)
        super().preflight()


@dataclass(kw_only=True)
class CorpusRefreshConfig(WarcInputs, SparkSettings, FileAttemptsConfig):
    """`corpus refresh`: the inputs to add; every other setting is the corpus's own (its manifest's), so new
    files go through exactly the route, keep rules and cleaning the corpus was built with."""

    corpus: str = field(metadata={"help": "corpus directory to refresh (from corpus build)"})
    # --limit and --shard apply to the files the corpus has not seen: `--limit 100` adds 100 new files a run
    app_name: str = field(default="mathforge-refresh-corpus", metadata={"help": "Spark application name"})

    def preflight(self) -> None:
        super().preflight()
        from jobs.corpus_output import StagedOutput  # a lost link: the version the refresh recovers to

        if not (StagedOutput(self.corpus, update=True).readable_version() / "manifest.json").is_file():
            raise FileNotFoundError(f"no corpus at {self.corpus} (no manifest.json): build it first")


@dataclass
class ClassifierTrainConfig(WarcInputs, SparkSettings):
    output: str = field(metadata={"help": "model file to write (its JSON sidecar goes next to it)"})
    positives: str | None = field(
        default=None,
        metadata={"help": "seed texts: Parquet (text column) or JSONL; default: bootstrap from math markup"},
    )
    max_per_class: int = field(
        default=50_000,
        metadata={
            "help": "cap on training texts per class: a stable-hash sample drawn in Spark, so the driver "
            "holds at most this many texts of each class (each cut to 20,000 characters)"
        },
    )
    negative_fraction: float = field(
        default=1.0, metadata={"help": "share of clean negative pages to sample"}
    )
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


@dataclass(kw_only=True)
class IterateConfig(CleaningConfig, WarcInputs, SparkSettings):
    """`corpus iterate`: DeepSeekMath's loop. The pool pass (extraction, language ID, dedup: `corpus build`
    with every page kept) runs once; each round trains, scores, collects and discovers math domains."""

    seeds: str = field(metadata={"help": "seed math texts: Parquet (text column) or JSONL (text field)"})
    output: str = field(metadata={"help": "loop directory: pool/, rounds/<n>/ and the final corpus"})
    rounds: int = field(default=4, metadata={"help": "rounds at most (DeepSeekMath: 4)"})
    token_budget: int | None = field(
        default=None,
        metadata={"help": "tokens collected per round at most (~4 characters a token); default: none"},
    )
    min_score: float = field(default=0.5, metadata={"help": "collect pages scoring at least this"})
    domain_share: float = field(
        default=0.1,
        metadata={"help": "a domain with more than this share of its pages collected is a math candidate"},
    )
    accept: str = field(
        default="auto",
        metadata={
            "help": "'auto', or a file of accepted prefixes (domain/path-prefix per line) a person edits "
            "from rounds/<n>/proposals.md"
        },
    )
    accept_share: float = field(
        default=0.1, metadata={"help": "auto: accept a prefix whose collected share reaches this"}
    )
    min_prefix_pages: int = field(
        default=3, metadata={"help": "auto: accept a prefix only with at least this many collected pages"}
    )
    prefix_depth: int = field(default=1, metadata={"help": "URL path segments in a proposed prefix"})
    heldout_fraction: float = field(
        default=0.2,
        metadata={"help": "given seeds held out of training (at least 3): their scores are the reference"},
    )
    seed_quantile: float = field(
        default=0.25, metadata={"help": "the reference score: this quantile of the held-out seeds' scores"}
    )
    score_tolerance: float = field(
        default=0.2,
        metadata={
            "help": "auto: a prefix's collected pages' median score may be this far under the reference"
        },
    )
    max_seed_growth: float | None = field(
        default=2.0,
        metadata={
            "help": "auto: seeds added per round by new prefixes at most this many times the given ones"
        },
    )
    min_prefix_quality: float | None = field(
        default=None,
        metadata={"help": "auto: a prefix's pages' mean quality score (0-5) must reach this (needs quality)"},
    )
    min_seeds: int = field(default=50, metadata={"help": "warn when fewer seeds are given"})
    min_seedlike_share: float = field(
        default=0.005,
        metadata={"help": "warn when a smaller share of the pool scores like the held-out seeds"},
    )
    quality_model: str | None = field(
        default=None,
        metadata={"help": "quality model for the pool pass (its quality_score column); see docs/quality.md"},
    )
    rank_by: str = field(
        default="math",
        metadata={
            "help": "collection order: 'math' score, 'quality' score, or 'both' (math x quality/5); "
            "quality needs a pool with quality scores"
        },
    )
    converge_overlap: float = field(
        default=0.98,
        metadata={"help": "stop when this share of a round's collection was in the previous one"},
    )
    labels: str | None = field(
        default=None,
        metadata={"help": "JSONL of {url, is_math} labels: recall and precision per round"},
    )
    negative_ratio: float = field(default=1.0, metadata={"help": "negatives sampled from the pool per seed"})
    max_per_class: int = field(
        default=500_000,
        metadata={
            "help": "cap on training texts per class: the driver holds at most this many of each (cut to "
            "20,000 characters), drawn in Spark by a stable hash"
        },
    )
    report_limit: int = field(
        default=1000,
        metadata={
            "help": "entries at most in each list of a round's report.json and proposals.md (proposals, "
            "domains, prefixes); the full tables are rounds/<n>/*.parquet"
        },
    )
    epoch: int = field(default=3, metadata={"help": "fastText epochs (DeepSeekMath: 3)"})
    bucket: int = field(default=200_000, metadata={"help": "fastText n-gram hash buckets"})
    threads: int = field(
        default=1, metadata={"help": "fastText training threads (1: the same model on every run)"}
    )
    seed: int = field(default=0, metadata={"help": "sampling and training seed"})
    langs: str = field(
        default="all", metadata={"help": "pool languages (lid.176 codes, comma-separated) or 'all'"}
    )
    min_chars: int = field(default=1, metadata={"help": "pool pages need at least this much extracted text"})
    lid_model: str | None = field(default=None, metadata={"help": "path to lid.176.ftz (default: bundled)"})
    max_body_bytes: int = field(default=DEFAULT_MAX_BODY_BYTES, metadata={"help": "skip larger HTTP bodies"})
    page_time_budget: float = field(
        default=10.0, metadata={"help": "seconds one page may take in the pool pass"}
    )
    app_name: str = field(default="mathforge-iterate", metadata={"help": "Spark application name"})

    def pool_config(self, output: str) -> CorpusBuildConfig:
        """The pool pass: the corpus job keeping every page with main text (`--min-math-score 0`)."""
        cleaning = {f: getattr(self, f) for f in CleaningConfig.__dataclass_fields__}
        return CorpusBuildConfig(
            **cleaning,
            **{f: getattr(self, f) for f in WarcInputs.__dataclass_fields__},
            output=output,
            master=self.master,
            conf=self.conf,
            lid_model=self.lid_model,
            max_body_bytes=self.max_body_bytes,
            page_time_budget=self.page_time_budget,
            langs=self.langs,
            min_chars=self.min_chars,
            min_math_score=0.0,
            quality_model=self.quality_model,
        )

    def preflight(self) -> None:
        super().preflight()
        if self.rounds < 1:
            raise ValueError("--rounds must be at least 1")
        if not (self.seeds and Path(self.seeds).exists()):
            raise FileNotFoundError(f"seed file not found: {self.seeds}")
        if self.rank_by not in ("math", "quality", "both"):
            raise ValueError(f"--rank-by is math, quality or both, got {self.rank_by!r}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError("--heldout-fraction must be in [0, 1)")


@dataclass(kw_only=True)
class QualityAnnotateConfig(SparkSettings, Preflight):
    """`classifier annotate`: a stratified sample of a corpus scored 0-5 for math-educational value by an LLM
    at an OpenAI-compatible server (the server flags come from training's `EngineConfig`); docs/quality.md."""

    corpus: str = field(
        metadata={"help": "corpus directory (its data/ is read) or any Parquet with id, url, domain, math_score, "
                  "text"}
    )  # fmt: skip
    output: str = field(
        metadata={"help": "annotation directory: sample/, annotations/*.parquet, summary.json"}
    )
    sample_size: int = field(metadata={"help": "pages to annotate (the sample drawn from the corpus)"})
    score_buckets: int = field(
        default=5, metadata={"help": "math-score strata: [0, 1] cut into this many equal buckets"}
    )
    max_per_domain: int = field(
        default=20, metadata={"help": "pages one domain may give to each math-score bucket"}
    )
    seed: int = field(default=0, metadata={"help": "sample seed; each row's request seed derives from it"})
    prompt_version: str = field(
        default="finemath-additive-v1",
        metadata={"help": "the prompt (classifiers/quality_prompt.py PROMPTS)"},
    )
    max_chars: int = field(
        default=6000, metadata={"help": "page text sent (and stored) cut to this many characters"}
    )
    temperature: float = field(default=0.0, metadata={"help": "sampling temperature of the first request"})
    retry_temperature: float = field(
        default=0.7,
        metadata={"help": "temperature of the one retry of an unparseable answer (at least --temperature)"},
    )
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling"})
    max_tokens: int = field(default=512, metadata={"help": "tokens an answer may take"})
    batch_size: int = field(
        default=256,
        metadata={"help": "rows asked per batch (and written per Parquet part: resume granularity)"},
    )
    app_name: str = field(default="mathforge-annotate", metadata={"help": "Spark application name"})

    def preflight(self) -> None:
        if not Path(self.corpus).exists():
            raise FileNotFoundError(f"corpus not found: {self.corpus}")
        if self.sample_size < 1 or self.score_buckets < 1 or self.max_per_domain < 1 or self.batch_size < 1:
            raise ValueError("--sample-size, --score-buckets, --max-per-domain and --batch-size must be >= 1")
        if self.max_chars < 1 or self.max_tokens < 1:
            raise ValueError("--max-chars and --max-tokens must be >= 1")
        from classifiers.quality_prompt import prompt_for

        prompt_for(self.prompt_version)  # an unknown version fails before Spark starts


@dataclass(kw_only=True)
class QualityTrainConfig:
    """`classifier train-quality`: the quality model from `classifier annotate`'s annotations (no Spark)."""

    annotations: str = field(metadata={"help": "annotation directory (or its annotations/ Parquet)"})
    output: str = field(
        metadata={"help": "model file (sidecar .json, .report.md and .report.json beside it)"}
    )
    prompt_version: str | None = field(
        default=None, metadata={"help": "annotations of this prompt version (default: the only one present)"}
    )
    heldout_fraction: float = field(
        default=0.1, metadata={"help": "share of annotations held out, by a stable hash of the id"}
    )
    threshold: int = field(default=3, metadata={"help": "the 'useful' cut for F1 (FineMath's 3+ subset)"})
    seed: int = field(default=0, metadata={"help": "split and training seed"})
    epoch: int = field(default=10, metadata={"help": "fastText epochs"})
    lr: float = field(default=0.5, metadata={"help": "fastText learning rate"})
    dim: int = field(default=64, metadata={"help": "fastText dimension"})
    word_ngrams: int = field(default=2, metadata={"help": "fastText word n-grams"})
    bucket: int = field(default=200_000, metadata={"help": "fastText n-gram hash buckets"})
    threads: int = field(default=2, metadata={"help": "fastText training threads"})
    encoder: str | None = field(
        default=None,
        metadata={"help": "a Hugging Face encoder directory: train FineMath's frozen encoder + regression head "
                          "instead of fastText (needs torch and transformers)"},
    )  # fmt: skip
    encoder_max_tokens: int = field(default=512, metadata={"help": "encoder tokens per page"})
    encoder_epochs: int = field(default=200, metadata={"help": "full-batch steps of the regression head"})
    encoder_lr: float = field(default=0.01, metadata={"help": "learning rate of the regression head"})


@dataclass(kw_only=True)
class QualityScoreConfig(SparkSettings, Preflight):
    """`classifier score-quality`: a quality model's 0-5 score of every page of a corpus (Spark)."""

    corpus: str = field(metadata={"help": "corpus directory (its data/ is read) or Parquet with id and text"})
    model: str = field(
        metadata={"help": "quality model from `classifier train-quality` (its sidecar beside it)"}
    )
    output: str = field(
        metadata={"help": "Parquet directory to write: id, url, domain, math_score, quality_score"}
    )
    threshold: int = field(default=3, metadata={"help": "the summary counts pages scoring this or more"})
    app_name: str = field(default="mathforge-score-quality", metadata={"help": "Spark application name"})

    def preflight(self) -> None:
        for what, path in (("corpus", self.corpus), ("quality model", self.model)):
            if not Path(path).exists():
                raise FileNotFoundError(f"{what} not found: {path}")
        if Path(self.output).exists():
            raise FileExistsError(f"{self.output} exists: choose a new --output")
