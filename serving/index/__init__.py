"""Vector indexes for retrieval: an embedded engine by default, the same API on a scale-out engine (docs/retrieval.md)."""
