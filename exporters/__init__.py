"""Turn prompt artifacts and frozen backbones into deployable bundles."""
