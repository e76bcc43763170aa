"""Serving time: the CLIP gateway (one route module per task), its encoder deployment, heads."""
