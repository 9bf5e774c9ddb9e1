"""The generated sample crawl (demo and tests): WARC files that look like Common Crawl's, with known answers.

Kept out of `crawl/` (the web-reading code) so that Spark executors never receive its text tables.
"""
