"""PromptReps prompt templates, byte-exact copies of ielab/PromptReps `prompts/` (see README.md here)."""
