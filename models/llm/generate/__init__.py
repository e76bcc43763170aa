"""Generation on the LLM family: prompt layouts with soft-prompt spans, the engines that run
them (transformers on CPU, vLLM on GPU), and IDP prompt-pool selection (docs/generation.md)."""
