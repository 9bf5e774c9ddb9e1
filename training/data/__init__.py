"""What training reads: the Parquet corpus packed into document-masked batches, row files (JSONL/Parquet) for
post-training, benchmark files as uniform items, and a synthetic verifiable task for demos and tests."""
