"""The recall loop's decisions (collection, overlap, domain shares, prefix proposals, seeds), without Spark."""

from classifiers.domain_discovery import (
    ScoredPage,
    accept_listed,
    approx_tokens,
    auto_accept,
    collect,
    domain_shares,
    label_metrics,
    overlap,
    prefix_seeds,
    propose_prefixes,
    read_accept_file,
    url_prefix,
)


def _page(i, url, score, n_chars=400, label=None):
    domain = url.split("/")[2]
    return ScoredPage(f"id{i:03d}", url, domain, n_chars, score, label)


def test_url_prefix():
    assert url_prefix("https://q.org/questions/12/how-to") == "/questions/"
    assert url_prefix("https://q.org/questions/12/how-to", depth=2) == "/questions/12/"
    assert url_prefix("https://q.org/about") == "/"
    assert url_prefix("https://q.org/") == "/"
    assert url_prefix("https://q.org/notes/") == "/"  # a folder index page sits at the level above


def test_collect_ranks_cuts_at_the_floor_and_the_budget():
    pages = [
        _page(i, f"https://a.org/p/{i}", s, n_chars=400) for i, s in enumerate([0.9, 0.4, 0.7, 0.7, 0.95])
    ]
    assert [p.id for p in collect(pages, 0.5)] == ["id004", "id000", "id002", "id003"]  # ties by id
    assert approx_tokens(400) == 100 and approx_tokens(0) == 0
    assert [p.id for p in collect(pages, 0.5, token_budget=250)] == ["id004", "id000"]
    assert collect(pages, 0.5, token_budget=50) == []


def test_overlap_is_the_share_of_this_round_already_collected():
    assert overlap({"a", "b"}, None) is None
    assert overlap({"a", "b", "c", "d"}, {"a", "b", "c", "x"}) == 0.75
    assert overlap(set(), {"a"}) == 1.0


def test_shares_proposals_acceptance_and_seeds(tmp_path):
    pages = []
    # a Q&A domain: 10 question pages (3 collected), 5 blog pages (1 stray collected)
    pages += [_page(i, f"https://qa.org/questions/{i}/q", 0.9 if i < 3 else 0.1) for i in range(10)]
    pages += [_page(10 + i, f"https://qa.org/blog/{i}", 0.9 if i == 0 else 0.1) for i in range(5)]
    # a news site with one false positive in 20 pages: under the 10% bar
    pages += [_page(20 + i, f"https://news.com/2025/{i}/x", 0.9 if i == 0 else 0.1) for i in range(20)]
    collected = {p.id for p in collect(pages, 0.5)}
    shares = domain_shares(pages, collected)
    assert (shares["qa.org"].collected, shares["qa.org"].pages) == (4, 15)
    assert shares["news.com"].share == 0.05
    proposals = propose_prefixes(pages, collected, shares, 0.1)
    assert [p.key for p in proposals] == ["qa.org/blog/", "qa.org/questions/"]
    questions = proposals[1]
    assert (questions.pages, questions.collected) == (10, 3)
    assert questions.sample_urls[:3] == ("https://qa.org/questions/0/q", "https://qa.org/questions/1/q",
                                         "https://qa.org/questions/2/q")  # fmt: skip
    accepted = auto_accept(proposals, min_share=0.1, min_collected=3)
    assert [p.key for p in accepted if p.accepted] == ["qa.org/questions/"]
    (tmp_path / "accept.txt").write_text("# reviewed\nqa.org/blog/   # a person's call\n\n")
    keys = read_accept_file(tmp_path / "accept.txt")
    assert keys == {"qa.org/blog/"}
    assert [p.key for p in accept_listed(proposals, keys) if p.accepted] == ["qa.org/blog/"]
    assert read_accept_file(tmp_path / "missing.txt") == set()
    seeds = prefix_seeds(pages, ["qa.org/questions/"], collected)
    assert [p.id for p in seeds] == [f"id{i:03d}" for i in range(3, 10)]


def test_label_metrics():
    pages = [_page(0, "https://a.org/1", 0.9, label=True), _page(1, "https://a.org/2", 0.9, label=False),
             _page(2, "https://a.org/3", 0.1, label=True), _page(3, "https://a.org/4", 0.9)]  # fmt: skip
    m = label_metrics(pages, {"id000", "id001", "id003"})
    assert (m["recall"], m["precision"], m["labelled"]) == (0.5, 0.5, 3)
    assert label_metrics([_page(0, "https://a.org/1", 0.9)], {"id000"}) is None
