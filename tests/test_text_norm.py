"""Text normalisation: what counts as the same words for dedup digests, shingles and decontamination."""

from __future__ import annotations

import random
import subprocess
import sys

from classifiers.text_norm import normalize_text, normalized_utf8, text_digest, words


def test_case_spacing_and_punctuation_do_not_matter():
    a = "Janet’s ducks lay 16 eggs per day.\nShe eats three!"
    b = "  JANET'S   DUCKS lay 16 eggs\tper day -- she eats THREE  "
    assert (
        words(a)
        == words(b)
        == ["janet", "s", "ducks", "lay", "16", "eggs", "per", "day", "she", "eats", "three"]
    )
    assert text_digest(a) == text_digest(b)
    assert text_digest(a) != text_digest(a.replace("16", "17"))


def test_unicode_compatibility_forms_and_case_folding():
    assert normalize_text("ＡＢＣ　１２３") == "abc 123"  # full-width letters, digits and space
    assert normalize_text("Straße") == normalize_text("STRASSE") == "strasse"
    assert normalize_text("ﬁnal café") == normalize_text("final cafe\u0301") == "final café"
    assert normalize_text("Привет, МИР") == "привет мир"


def test_tex_delimiters_and_symbols_separate_words():
    assert words("$x^2+3x$") == words("\\(x^2 + 3x\\)") == words("x 2 3x") == ["x", "2", "3x"]
    assert words("\\frac{1}{2}") == ["frac", "1", "2"]


def test_cjk_characters_are_words_and_marks_stay_inside_words():
    assert words("数学问题，很难。") == ["数", "学", "问", "题", "很", "难"]
    assert words("ひらがなカタカナ") == list("ひらがなカタカナ")
    assert words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]  # vowel signs and virama are marks, not separators


def test_ascii_shortcut_agrees_with_the_unicode_path():
    rng = random.Random(0)
    alphabet = "abcXYZ019 \t\n.,;:!?'\"()[]{}$\\^_+-=*/<>|&%#@~`\x00\x07\x7f"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        # A non-ASCII word forces the general path over the same ASCII content.
        assert words(text + " é") == [*words(text), "é"]
        assert normalized_utf8(text) == normalize_text(text).encode()


def test_digest_is_stable_across_processes():
    code = "from classifiers.text_norm import text_digest; print(text_digest('Hello, World — 数学'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert runs == {text_digest("Hello, World — 数学")}
