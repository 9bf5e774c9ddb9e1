"""lid.176 through our wrapper, on 7,500 labelled sentences in 75 languages (../shared/data/langid)."""

import pytest

from classifiers.langid import UNKNOWN, LanguageIdentifier, prepare_text

# The data set says nb for Norwegian Bokmål; lid.176 calls it no.
TO_LID = {"nb": "no"}


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.fixture(scope="module")
def sentences(shared_data) -> list[tuple[str, str]]:
    path = shared_data / "langid" / "lingua_sentences_75langs_100each.tsv"
    rows = [line.rstrip("\n").split("\t", 1) for line in path.open(encoding="utf-8")]
    return [(TO_LID.get(code, code), text) for code, text in (r for r in rows if len(r) == 2)]


def test_wrapper_matches_the_bare_model_and_clears_the_floor(lid, sentences):
    predictions = lid.predict_batch([text for _, text in sentences])
    bare_labels, _ = lid.model.predict([text.replace("\n", " ") for _, text in sentences], k=1)
    supported = {label.removeprefix("__label__") for label in lid.model.get_labels()}
    ours = [p.lang == gold for (gold, _), p in zip(sentences, predictions, strict=True)]
    bare = [
        lab[0].removeprefix("__label__") == gold
        for (gold, _), lab in zip(sentences, bare_labels, strict=True)
    ]
    # The wrapper (flattening, prefix cut, label parsing) must not lose accuracy against the bare model.
    assert sum(ours) >= sum(bare)
    # Floor: 8 of the 75 languages (lg, mi, sn, st, tn, ts, xh, zu) are not in lid.176's label set, so
    # those 800 sentences cannot be right; on the 67 it knows, the bare model scores ~0.89 (bs/hr/sr and
    # ms/id confusions dominate). We assert 0.87 there and 0.97 on the languages the corpus cares most about.
    known = [ok for (gold, _), ok in zip(sentences, ours, strict=True) if gold in supported]
    assert len(known) == 6700
    assert sum(known) / len(known) >= 0.87
    major = {"en", "zh", "ru", "de", "fr", "es", "ja", "pt", "it", "ko", "ar", "vi", "pl", "nl", "tr"}
    major_ok = [ok for (gold, _), ok in zip(sentences, ours, strict=True) if gold in major]
    assert sum(major_ok) / len(major_ok) >= 0.97


def test_scores_are_probabilities_and_empty_text_is_unknown(lid):
    results = lid.predict_batch(["", "   \n ", "The derivative of x squared is two x, by the power rule."])
    assert results[0].lang == results[1].lang == UNKNOWN and results[0].score == 0.0
    assert results[2].lang == "en" and 0.5 < results[2].score <= 1.0


def test_newlines_and_long_texts_are_handled(lid):
    long_text = "Dies ist ein deutscher Satz über Mathematik.\n" * 5000
    assert lid.predict(long_text).lang == "de"
    assert len(prepare_text(long_text, 2000)) <= 2000
    assert "\n" not in prepare_text("a\nb\r\nc", 100)


def test_short_inputs_have_lower_confidence(lid, shared_data):
    pairs = [
        line.rstrip("\n").split("\t", 1)
        for line in (shared_data / "langid" / "lingua_word-pairs_75langs_30each.tsv").open(encoding="utf-8")
    ]
    sentences = [
        line.rstrip("\n").split("\t", 1)[1]
        for line in (shared_data / "langid" / "lingua_sentences_75langs_100each.tsv").open(encoding="utf-8")
    ]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    short = mean([r.score for r in lid.predict_batch([p[1] for p in pairs if len(p) == 2])])
    full = mean([r.score for r in lid.predict_batch(sentences)])
    assert short < full


def test_pickles_without_the_model(lid):
    import pickle

    lid.predict("warm up")
    clone = pickle.loads(pickle.dumps(lid))
    assert not clone._model.loaded and clone.predict("Bonjour tout le monde").lang == "fr"


def test_prepare_text_collapses_exactly_what_the_regex_whitespace_class_matches(shared_data):
    """`prepare_text` splits with `str.split`; the definition is `re.sub(r"\\s+", " ", ...).strip()`. The
    two whitespace classes agree on every code point, and the prepared texts agree on real sentences."""
    import re

    every = "".join(map(chr, range(0x110000)))
    assert re.findall(r"\s", every) == [c for c in every if c.isspace()]
    path = shared_data / "langid" / "lingua_sentences_75langs_100each.tsv"
    whole = path.read_text(encoding="utf-8")
    texts = [whole, *whole.splitlines(), "\u00a0 x\u2028y\x1c z \u3000", "\t\n", ""]
    for text in texts:
        for limit in (20, 2000):
            flat = re.sub(r"\s+", " ", text[: limit * 2]).strip()
            if len(flat) > limit:
                cut = flat.rfind(" ", 0, limit)
                flat = flat[: cut if cut > limit // 2 else limit]
            assert prepare_text(text, limit) == flat
