"""`mathforge serve`: an OpenAI-compatible server for any model mathforge loads (server.py), its wire format
(protocol.py) and the batching of concurrent requests (batcher.py)."""
