import json
from collections import Counter

from crawl.charset import decode_html, normalize_charset
from crawl.extract import extract_main_text
from crawl.warc import read_html_responses

RUSSIAN = "<html><body><p>Факты — упрямые вещи, сказал он.</p></body></html>"
CHINESE = "<html><body><p>数学是研究数量、结构以及空间等概念的一门学科。</p></body></html>"


def test_header_charset_wins_when_it_decodes():
    decoded = decode_html(RUSSIAN.encode("cp1251"), "text/html; charset=windows-1251")
    assert decoded.text == RUSSIAN
    assert (decoded.charset, decoded.source) == ("cp1251", "http-header")


def test_meta_charset_used_without_header():
    html = '<html><head><meta charset="gb2312"></head>' + CHINESE[6:]
    decoded = decode_html(html.encode("gb18030"), "text/html")
    assert "数学是研究数量" in decoded.text
    assert decoded.source == "meta"


def test_charset_lie_is_caught_by_strict_decoding():
    # Served as utf-8, really windows-1251: the strict utf-8 decode fails, detection takes over.
    body = (RUSSIAN * 5).encode("cp1251")
    decoded = decode_html(body, "text/html; charset=utf-8")
    assert decoded.source == "detected"
    assert "упрямые вещи" in decoded.text


def test_gb2312_label_decodes_gbk_only_characters():
    text = "<p>镕基 说：数学</p>"  # 镕 is in GBK/GB18030 but not in GB2312
    decoded = decode_html(text.encode("gb18030"), "text/html; charset=gb2312")
    assert decoded.text == text and decoded.charset == "gb18030"


def test_bom_and_garbage_never_raise():
    assert decode_html("\ufeff<p>hi</p>".encode("utf-8"), "text/html; charset=latin-1").source == "bom"
    assert isinstance(decode_html(bytes(range(256)) * 4, "text/html; charset=nonsense").text, str)
    assert normalize_charset("nonsense-charset") is None
    assert normalize_charset("Latin-1") == "cp1252"


SCRIPTS = {
    "zh": lambda ch: "\u4e00" <= ch <= "\u9fff",
    "ru": lambda ch: "\u0400" <= ch <= "\u04ff",
    "en": lambda ch: ch.isascii(),
}


def test_real_gb2312_and_windows_1251_pages_are_readable(shared_data):
    """Pages declared gb2312 / windows-1251 decode to text in the script of Common Crawl's language label."""
    path = shared_data / "warc" / "commoncrawl" / "resiliparse_CC-MAIN-2020-34_sample.warc.gz"
    index = json.loads((shared_data / "warc" / "warc_index.json").read_text())
    labels = {
        r["uri"]: r["cc_languages_cld2"][0]
        for r in index["files"]["commoncrawl/resiliparse_CC-MAIN-2020-34_sample.warc.gz"]["payload_records"]
    }
    checked = Counter()
    for r in read_html_responses(str(path), Counter()):
        declared = next((cs for cs in ("gb2312", "windows-1251") if cs in r.content_type.lower()), None)
        if declared is None:
            continue
        text = extract_main_text(decode_html(r.body, r.content_type).text)
        letters = [ch for ch in text if ch.isalpha()]
        in_script = sum(map(SCRIPTS[labels[r.url]], letters))
        assert "\ufffd" not in text
        assert in_script / len(letters) > 0.5, (declared, text[:200])
        checked[declared] += 1
    assert checked["gb2312"] >= 2 and checked["windows-1251"] >= 1
