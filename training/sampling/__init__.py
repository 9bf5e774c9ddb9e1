"""One sampling interface (`Sampler`) and its engines: in process (`BuiltinSampler`) and any OpenAI-compatible
server (`OpenAISampler`); see interface.py."""

from training.sampling.interface import Completion, Prompt, Sampler, SamplingParams

__all__ = ["Completion", "Prompt", "Sampler", "SamplingParams"]
