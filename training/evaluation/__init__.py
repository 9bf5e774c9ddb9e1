"""A trained model on benchmarks and at the prompt: `mathforge eval` (batched generation, verified answers,
pass@1, pass@k, maj@k per benchmark) and `mathforge generate`."""
