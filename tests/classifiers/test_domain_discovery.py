"""The recall loop's decisions (collection, overlap, domain shares, prefix proposals and their guards, seeds,
warnings), without Spark."""

from classifiers.domain_discovery import (
    ACCEPTED,
    CAPPED,
    EARLIER,
    FEW_PAGES,
    LOW_QUALITY,
    LOW_SCORE,
    LOW_SHARE,
    PrefixProposal,
    ScoredPage,
    accept_listed,
    approx_tokens,
    auto_accept,
    collect,
    domain_shares,
    guarded_accept,
    label_metrics,
    overlap,
    prefix_seeds,
    propose_prefixes,
    quantile,
    read_accept_file,
    seed_warnings,
    split_heldout,
    split_key,
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


def _proposal(key, pages, collected, median, quality=None):
    domain, prefix = split_key(key)
    return PrefixProposal(
        domain, prefix, pages, collected, 1.0, (), median_score=median, mean_quality=quality
    )


def test_guarded_accept_explains_each_decision_and_caps_the_seeds_a_round_adds():
    proposals = [
        _proposal("a.org/q/", 40, 20, 0.95),  # adds 20 seeds
        _proposal("b.org/q/", 30, 10, 0.90),  # adds 20: past a cap of 30 with a.org's
        _proposal("c.org/q/", 12, 11, 0.88),  # adds 1, but after the first that did not fit
        _proposal("d.org/blog/", 10, 5, 0.55),  # strays scoring well below the held-out seeds
        _proposal("e.org/x/", 10, 2, 0.99),
        _proposal("f.org/x/", 100, 5, 0.99),
        _proposal("g.org/x/", 10, 5, 0.99, quality=1.0),
        _proposal("h.org/q/", 10, 9, 0.99),
    ]
    decided = {p.key: p for p in guarded_accept(proposals, 0.1, 3, seed_score=0.97, score_tolerance=0.1,
                                                max_new_seeds=30, earlier=["h.org/q/"])}  # fmt: skip
    reasons = {k: p.decision for k, p in decided.items()}
    assert reasons == {"a.org/q/": ACCEPTED, "b.org/q/": CAPPED, "c.org/q/": CAPPED, "d.org/blog/": LOW_SCORE,
                       "e.org/x/": FEW_PAGES, "f.org/x/": LOW_SHARE, "g.org/x/": ACCEPTED,
                       "h.org/q/": EARLIER}  # fmt: skip
    # g.org sorts with a.org by median score (0.99 first): 5 + 20 seeds fit the cap of 30
    assert {k for k, p in decided.items() if p.accepted} == {"a.org/q/", "g.org/x/", "h.org/q/"}
    # the quality guard, and the old rule alone (no reference, no cap) accepting the strays
    with_quality = guarded_accept(proposals, 0.1, 3, 0.97, 0.1, min_quality=2.0)
    assert {p.key: p.decision for p in with_quality}["g.org/x/"] == LOW_QUALITY
    unguarded = guarded_accept(proposals, 0.1, 3, seed_score=None, score_tolerance=0.1)
    assert [p.key for p in unguarded if p.accepted] == [
        p.key for p in auto_accept(proposals, 0.1, 3) if p.accepted
    ]
    assert "d.org/blog/" in {p.key for p in unguarded if p.accepted}


def test_quantile_and_heldout_split():
    assert quantile([], 0.5) == 0.0
    assert (
        quantile([0.2, 0.4, 0.6, 1.0], 0.5) == 0.5 and round(quantile([0.2, 0.4, 0.6, 1.0], 0.25), 9) == 0.35
    )
    texts = [f"seed text {i}" for i in range(60)]
    train, held = split_heldout(texts, 0.2, 3)
    assert len(held) == 12 and len(train) == 48 and set(train) | set(held) == set(texts)
    assert split_heldout(texts, 0.2, 3) == (train, held)  # stable
    assert len(split_heldout(texts[:10], 0.2, 3)[1]) == 3  # at least the minimum
    assert split_heldout(texts[:6], 0.2, 3) == (texts[:6], [])  # too few to spare any


def test_seed_warnings_name_a_tiny_or_unlike_seed_set():
    assert seed_warnings(60, 50, 12, 0.1, 0.005, 600, 595) == []
    tiny = seed_warnings(6, 50, 0, None, 0.005, 600, 595)
    assert len(tiny) == 2 and "only 6 seeds given" in tiny[0] and "no seeds held out" in tiny[1]
    # MATH solutions against web pages: the pool hardly scores like them, and they are much shorter
    unlike = seed_warnings(2000, 50, 400, 0.002, 0.005, 400, 5000)
    assert len(unlike) == 2 and all(w.startswith("seeds unlike the pool") for w in unlike)
