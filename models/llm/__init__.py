"""The LLM family: a frozen Hugging Face causal LM prompted to represent text (PromptReps)."""
