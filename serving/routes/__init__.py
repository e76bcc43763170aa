"""Routes every family's gateway serves: health and readiness, the model card, the prompt
registry. Task routes live with their family (e.g. models/clip/serve/classify.py)."""
