"""Export time only (torch, open_clip, onnx): the CLIP backbone to an ONNX bundle, seeded test
backbones, and importers of the official prompt-learning checkpoints. Serving never imports it."""
