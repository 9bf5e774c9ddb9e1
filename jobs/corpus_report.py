"""`report.html`: the corpus stats as a page a person would rather look at than read.

One pure function, `render_report_html(stats, manifest)`, turns what `stats.json` and `manifest.json` hold
into a self-contained HTML page (inline CSS, plots as base64 PNGs drawn with matplotlib's Agg canvas, no
scripts, nothing fetched). No Spark here: the job aggregates the top domains and picks the sample documents
(`jobs/corpus_summary.py`, merged per snapshot; with a quality model also the quality histogram and a few
documents per quality bucket) and stores them in `stats.json`, so the page can be re-rendered
from the two JSON files alone (`mathforge corpus report --corpus DIR`).

Every string that comes from the crawl (URLs, domains, document text) is HTML-escaped; a URL becomes a link
only when it is http(s).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from html import escape
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SNIPPET_CHARS = 600
TOP_LANGS = 15
STEP_ORDER = ("exact", "near", "decontamination")  # jobs/dedup.py's clean_corpus

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;background:#f6f7f9;
color:#1d2330}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px} h2{font-size:1.2em;margin:0 0 12px}
h3{font-size:1em;margin:16px 0 4px}
.sub{color:#5b6475;margin:0 0 20px;font-size:.9em;word-break:break-all}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:16px 20px;margin:0 0 18px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 18px}
.card{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:10px 16px;min-width:130px}
.card b{display:block;font-size:1.4em} .card span{color:#5b6475;font-size:.85em}
figure{margin:0} figure img{max-width:100%;height:auto}
figcaption{color:#5b6475;font-size:.85em;margin-top:4px}
table{border-collapse:collapse;font-size:.9em;margin-top:8px} td,th{padding:3px 10px;border-bottom:1px solid #eceef2}
th{text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.doc{border-top:1px solid #eceef2;padding:10px 0} .doc:first-of-type{border-top:0}
.doc .meta{color:#5b6475;font-size:.85em} .doc a{word-break:break-all}
.doc pre{white-space:pre-wrap;word-wrap:break-word;font:13px/1.45 ui-monospace,"DejaVu Sans Mono",monospace;
background:#f6f7f9;padding:8px 10px;border-radius:6px;margin:6px 0 0;max-height:none}
.note{color:#5b6475;font-style:italic}
"""

_KIND_COLOURS = {"kept": "#2e9d5b", "drop": "#e39b2d", "error": "#d1495b", "skip": "#9aa3b2"}
_BLUE, _GREEN, _GREY = "#3b6fd4", "#2e9d5b", "#c9ced8"


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(name: str, fig: Figure, caption: str) -> str:
    alt = escape(caption, quote=True)
    return (
        f'<figure data-plot="{name}"><img alt="{alt}" src="data:image/png;base64,{_png(fig)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _new_figure(n_bars: int = 0, width: float = 10.0) -> tuple[Figure, Any]:
    height = max(2.6, min(0.32 * n_bars + 1.0, 9.0)) if n_bars else 3.2
    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return fig, ax


def _barh(ax: Any, labels: Sequence[str], values: Sequence[float], colours: Any = _BLUE) -> None:
    ys = list(range(len(labels)))[::-1]  # first label on top
    ax.barh(ys, values, color=colours)
    ax.set_yticks(ys, [str(label) for label in labels])
    top = max(values, default=0) or 1
    for y, v in zip(ys, values, strict=True):
        ax.text(v + top * 0.01, y, f"{v:,}", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.12)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v:,}</td>' if isinstance(v, int) else f"<td>{escape(str(v))}</td>" for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2>{body}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _languages(by_lang: dict[str, int]) -> str:
    if not by_lang:
        return _note("no kept documents")
    ranked = sorted(by_lang.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ranked[:TOP_LANGS]
    rest = sum(n for _, n in ranked[TOP_LANGS:])
    if rest:
        shown.append((f"{len(ranked) - TOP_LANGS} others", rest))
    fig, ax = _new_figure(len(shown))
    _barh(ax, [lang for lang, _ in shown], [n for _, n in shown])
    ax.set_xlabel("kept documents")
    return _figure("languages", fig, f"Kept documents by language ({len(ranked)} languages)")


def _score_bars(
    histogram: Sequence[Sequence[float]], bucket: float, top: float, xlabel: str, mark: float | None
) -> Figure:
    """A bar per score bucket (`histogram`: [low, count] pairs) on [0, `top`], `mark` as a dashed line."""
    fig, ax = _new_figure()
    lows = [float(lo) for lo, _ in histogram]
    counts = [int(n) for _, n in histogram]
    ax.bar([lo + bucket / 2 for lo in lows], counts, width=bucket * 0.95, color=_BLUE)
    ax.set_xlim(0, top)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("kept documents")
    if mark is not None:
        ax.axvline(mark, color="#d1495b", linestyle="--", linewidth=1)
    return fig


def _math_histogram(histogram: Sequence[Sequence[float]], threshold: float | None) -> str:
    mark = threshold or None  # a bar of 0 keeps everything: nothing to mark
    fig = _score_bars(histogram, 0.1, 1, "math score", mark)
    caption = "Math score of kept documents (buckets of 0.1)"
    if mark is not None:
        caption += f"; dashed line: --min-math-score {threshold:g}"
    return _figure("math-score", fig, caption)


def _quality(stats: dict[str, Any], threshold: float | None, model: dict[str, Any] | None) -> str:
    """The quality histogram (buckets of 0.5) and a few documents per whole point (`jobs.corpus_summary`)."""
    histogram = stats.get("quality_histogram") or []
    unscored = int(stats.get("quality_unscored", stats.get("kept", 0)))
    if not any(n for _, n in histogram):
        return _note(
            "no quality scores: the corpus was built without --quality-model"
            + (f" ({unscored:,} documents unscored)" if unscored else "")
        )
    from jobs.corpus_summary import QUALITY_SNIPPET_CHARS

    fig = _score_bars(histogram, 0.5, 5, "quality score (0-5)", threshold)
    caption = f"Quality score of kept documents (buckets of 0.5); {unscored:,} without a score"
    if threshold is not None:
        caption += f"; dashed line: --min-quality {threshold:g}"
    parts = [_figure("quality", fig, caption)]
    if model:
        parts.append(_note(f"quality model: {model.get('name')} {model.get('version', '')}"))
    for group in stats.get("quality_samples", []):
        low, high = float(group["low"]), float(group["high"])
        in_bucket = sum(int(n) for lo, n in histogram if low <= float(lo) < high)
        label = f"[{low:.0f}, {high:.0f}]" if high >= 5 else f"[{low:.0f}, {high:.0f})"
        docs = group.get("samples") or []
        parts.append(
            f'<h3 data-quality-bucket="{low:g}">quality {escape(label)}: {len(docs)} of {in_bucket:,} '
            "documents</h3>"
        )
        for doc in docs:
            text = doc.get("text") or ""
            snippet = text[:QUALITY_SNIPPET_CHARS] + ("…" if len(text) > QUALITY_SNIPPET_CHARS else "")
            meta = f"quality {float(doc.get('quality_score') or 0):.2f}"
            parts.append(
                f'<div class="doc quality-doc"><div class="title">{_link(doc.get("url") or "")}</div>'
                f'<div class="meta">{escape(meta)}</div><pre>{escape(snippet)}</pre></div>'
            )
    return "".join(parts)


def _counters(counters: dict[str, int]) -> str:
    if not counters:
        return _note(
            "no record counters for this run (a corpus derived from another corpus reads no records)"
        )
    ranked = sorted(counters.items(), key=lambda kv: (-kv[1], kv[0]))
    colours = [_KIND_COLOURS.get(name.split(":", 1)[0].split("_", 1)[0], _BLUE) for name, _ in ranked]
    fig, ax = _new_figure(len(ranked))
    _barh(ax, [name for name, _ in ranked], [n for _, n in ranked], colours)
    ax.set_xlabel("records")
    caption = "Where the records went (green: kept, orange: dropped, red: errors, grey: skipped)"
    return _figure("counters", fig, caption)


def _step_rank(step: str) -> tuple[int, str]:
    """Steps in the order they run (stats.json is written with sorted keys)."""
    return (STEP_ORDER.index(step) if step in STEP_ORDER else len(STEP_ORDER), step)


def _removals(cleaning: dict[str, Any] | None) -> str:
    if not cleaning:
        return _note("dedup and decontamination did not run")
    steps = dict(sorted(cleaning.get("steps", {}).items(), key=lambda kv: _step_rank(kv[0])))
    labels = ["before", *steps, "after"]
    values = [int(cleaning["input_documents"])]
    values += [int(info.get("removed", 0)) for info in steps.values()]
    values.append(int(cleaning["output_documents"]))
    colours = [_BLUE] + ["#d1495b"] * len(steps) + [_GREEN]
    fig, ax = _new_figure(len(labels))
    _barh(ax, labels, values, colours)
    ax.set_xlabel("documents")
    rows = [("documents before", values[0])]
    for step, info in steps.items():
        rows.append(
            (f"removed by {step}", info["skipped"] if "skipped" in info else int(info.get("removed", 0)))
        )
    rows.append(("documents after", values[-1]))
    caption = "Documents before, removed by each dedup/decontamination step, and after"
    return _figure("removals", fig, caption) + _table(("step", "documents"), rows)


def _domains(top: list[dict[str, Any]] | None, math_by: str) -> str:
    if not top:
        return _note("no domain counts recorded for this corpus")
    names = [d["domain"] or "(none)" for d in top]
    docs = [int(d["documents"]) for d in top]
    maths = [int(d["math"]) for d in top]
    fig, ax = _new_figure(len(top))
    ys = list(range(len(top)))[::-1]
    ax.barh(ys, docs, color=_GREY, label="documents")
    ax.barh(ys, maths, color=_GREEN, label=f"math ({math_by})")
    ax.set_yticks(ys, names)
    top_n = max(docs, default=1) or 1
    for y, n, m in zip(ys, docs, maths, strict=True):
        ax.text(n + top_n * 0.01, y, f"{n:,} · {m / n:.0%} math" if n else "0", va="center", fontsize=8)
    ax.set_xlim(0, top_n * 1.25)
    ax.set_xlabel("kept documents")
    ax.legend(loc="lower right", frameon=False)
    caption = f"Top {len(top)} domains by kept documents; green: the share that is math ({math_by})"
    return _figure("domains", fig, caption)


def runs_of(manifest: dict[str, Any], stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs that made this corpus, oldest first: `manifest["runs"]` when the manifest keeps a history
    (one entry per refresh snapshot), else this single build as the only entry."""
    if manifest.get("runs"):
        return list(manifest["runs"])
    return [
        {
            "run_id": manifest.get("run_id", stats.get("run_id", "?")),
            "created_at": manifest.get("created_at", ""),
            "inputs": stats.get("inputs", {}).get("total", 0),
            "documents": stats.get("kept", 0),
            "seconds": stats.get("seconds", 0),
        }
    ]


def _history(runs: list[dict[str, Any]]) -> str:
    added = [int(r.get("documents", 0)) for r in runs]
    total, cumulative = 0, []
    for n in added:
        total += n
        cumulative.append(total)
    fig, ax = _new_figure(width=10.0)
    xs = list(range(len(runs)))
    ax.bar(xs, added, width=0.6, color=_BLUE, label="documents added")
    ax.plot(xs, cumulative, color=_GREEN, marker="o", label="corpus size")
    ax.set_xticks(
        xs,
        [str(r.get("created_at") or r.get("run_id", i))[:16].replace("T", "\n") for i, r in enumerate(runs)],
    )
    pad = max(0.0, (6 - len(runs)) / 2)  # a lone run is a bar, not a wall
    ax.set_xlim(-0.5 - pad, len(runs) - 0.5 + pad)
    ax.set_ylim(0, max(cumulative, default=0) * 1.15 or 1)
    ax.set_ylabel("documents")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    if len(runs) > 6:
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_ha("right")
    rows = [
        (r.get("run_id", ""), r.get("created_at", ""), int(r.get("inputs", 0)), int(r.get("documents", 0)), c)
        for r, c in zip(runs, cumulative, strict=True)
    ]
    caption = f"Refresh history: {len(runs)} run(s); bars: documents each run added, line: corpus size"
    return _figure("history", fig, caption) + _table(
        ("run", "created", "input files", "documents added", "corpus size"), rows
    )


def _link(url: str) -> str:
    text = escape(url or "(no URL)")
    if url.lower().startswith(("http://", "https://")):
        return f'<a href="{escape(url, quote=True)}" rel="nofollow noopener">{text}</a>'
    return text


def _samples(samples: list[dict[str, Any]] | None) -> str:
    if not samples:
        return _note("no sample documents recorded for this corpus")
    parts = []
    for doc in samples:
        text = doc.get("text") or ""
        snippet = text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")
        score = doc.get("math_score")
        meta = [
            f"lang {doc.get('lang') or '?'}",
            f"math score {score:.2f}" if isinstance(score, int | float) else "math score ?",
            doc.get("domain") or "",
        ]
        parts.append(
            f'<div class="doc"><div class="title">{_link(doc.get("url") or "")}</div>'
            f'<div class="meta">{escape(" · ".join(m for m in meta if m))}</div>'
            f"<pre>{escape(snippet)}</pre></div>"
        )
    return "".join(parts)


def _card(value: Any, label: str) -> str:
    shown = f"{value:,}" if isinstance(value, int) else str(value)
    return f'<div class="card"><b>{escape(shown)}</b><span>{escape(label)}</span></div>'


def render_report_html(
    stats: dict[str, Any], manifest: dict[str, Any], samples: list[dict[str, Any]] | None = None
) -> str:
    """The whole page. `samples` defaults to `stats["samples"]` (rows with url, domain, lang, math_score,
    text); `stats["top_domains"]` (domain, documents, math) feeds the domains plot."""
    samples = stats.get("samples") if samples is None else samples
    counters = stats.get("counters", {})
    inputs = stats.get("inputs", {"total": 0, "failed": []})
    config = manifest.get("config", {})
    threshold = config.get("min_math_score")
    scorer = manifest.get("math_scorer") or {}
    run_id = stats.get("run_id", manifest.get("run_id", "?"))
    cards = "".join(
        [
            _card(int(stats.get("kept", 0)), "documents kept"),
            _card(int(stats.get("kept_chars", 0)), "characters"),
            _card(int(counters.get("html_responses", 0)), "HTML responses"),
            _card(int(inputs.get("total", 0)), "input files"),
            _card(len(inputs.get("failed", [])), "inputs with errors"),
            _card(f"{float(stats.get('seconds', 0)):.1f} s", "wall time"),
        ]
    )
    sections = [
        _section("languages", "Languages", _languages(stats.get("by_lang", {}))),
        _section(
            "math-score",
            "Math score",
            _math_histogram(stats.get("math_score_histogram", []), threshold)
            + (_note(f"scorer: {scorer.get('name')} {scorer.get('version', '')}") if scorer else ""),
        ),
        _section(
            "quality",
            "Quality score",
            _quality(stats, config.get("min_quality"), manifest.get("quality_model")),
        ),
        _section("counters", "Where the records went", _counters(counters)),
        _section("removals", "Removed by dedup and decontamination", _removals(stats.get("cleaning"))),
        _section(
            "domains",
            "Top domains and their math share",
            _domains(stats.get("top_domains"), stats.get("top_domains_math_by", "is_math")),
        ),
        _section("history", "Refresh history", _history(runs_of(manifest, stats))),
        _section("samples", "Sample documents", _samples(samples)),
    ]
    if inputs.get("failed"):
        rows = [(f["path"], ", ".join(f"{k}={v}" for k, v in f["errors"].items())) for f in inputs["failed"]]
        sections.append(_section("failed-inputs", "Inputs with errors", _table(("input", "errors"), rows)))
    if inputs.get("quarantined"):  # files that brought their reader down: left out (jobs.corpus_work)
        rows = [(q["path"], f"{q['attempts']} attempts: {q['reason']}") for q in inputs["quarantined"]]
        sections.append(_section("quarantined", "Quarantined inputs", _table(("input", "why"), rows)))
    sub = " · ".join(
        str(x) for x in (manifest.get("created_at"), manifest.get("output") or stats.get("source")) if x
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Corpus report — {escape(str(run_id))}</title><style>{_CSS}</style></head><body><main>"
        f'<h1>Corpus report — run {escape(str(run_id))}</h1><p class="sub">{escape(sub)}</p>'
        f'<div class="cards">{cards}</div>' + "".join(sections) + "</main></body></html>\n"
    )
