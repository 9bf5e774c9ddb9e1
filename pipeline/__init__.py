"""A page's route and keep rules, above `crawl` and `classifiers` and below `jobs`: Spark-free."""
