"""Spark jobs: thin compositions of `crawl` and `classifiers`; the only package that imports pyspark."""
