"""The runtime model layer, common to every family: bundles of named graphs, prompt artifacts.

Modules at this level know no model family; each family is a subpackage (`clip/`, next `llm/`)
that owns its backbone spec, tokenizer, graphs, methods, export (`<family>/export/`, export
time only) and request handling.
"""
