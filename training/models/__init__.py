"""The model and its files: the transformer (with MTP), generation from it (KV cache, log-probs, speculative
decoding), its tokenizer and prompt template, checkpoints, and loading any model path (runs, checkpoints, model
directories, Hugging Face Llama/Qwen2) in and out."""
