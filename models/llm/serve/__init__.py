"""Serving time (Ray, FastAPI): the LLM family gateway and encoder."""
