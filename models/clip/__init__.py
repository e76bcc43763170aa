"""The CLIP family (open_clip backbones): zero-shot classification, anomaly detection and
open-vocabulary segmentation with learned or hand-written prompts."""
