"""Export time (torch, transformers, onnx): the LLM bundle and the seeded test backbones."""
