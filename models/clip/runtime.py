"""CLIP's graphs as calls: images, texts (with deep prompts), dense outputs — on any runtime.

A runtime (serving/engines/) runs a bundle's named graphs and knows no family; this class
gives those graphs CLIP's verbs, with a clear error when the bundle lacks a graph, and the
text tower (tokenizer + embedding table + text graph) methods encode prompts with.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from promptserve.models.bundle import Bundle, BundleError
from promptserve.models.clip.bundle import ClipBundleConfig, clip_config, token_embedding, tokenizer
from promptserve.models.clip.capabilities import export_hint
from promptserve.models.clip.deep_prompts import DeepPrompts, DeepPromptSlots, VisualPromptBatch
from promptserve.models.clip.text import TextTower

if TYPE_CHECKING:
    from promptserve.serving.engines.base import Engine, EngineOptions

_DENSE = ("anomaly", "winclip")


class ClipGraphs:
    """The CLIP verbs over one runtime's `run(graph, feeds)`; inputs and outputs numpy float32."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.bundle: Bundle = engine.bundle
        clip_config(engine.bundle)  # a BundleError now for a bundle of another family

    @property
    def config(self) -> ClipBundleConfig:
        return clip_config(self.bundle)

    @classmethod
    def create(
        cls, name: str, bundle: Bundle, options: EngineOptions | None = None, **kwargs: Any
    ) -> ClipGraphs:
        """A runtime by name (`onnxruntime`, `torch`, `triton`) wrapped for CLIP."""
        from promptserve.serving.engines.base import create_engine

        return cls(create_engine(name, bundle, options, **kwargs))

    def close(self) -> None:
        self.engine.close()

    def encode_image(
        self, pixel_values: np.ndarray, prompts: VisualPromptBatch | None = None
    ) -> np.ndarray:
        """[B, 3, H, W] normalised pixels -> [B, E] image embeddings (unnormalised); with
        `prompts`, through the prompted vision graph (plain rows masked, see graphs.py)."""
        if prompts is None:
            return self.engine.run("vision", {"pixel_values": pixel_values})[0]
        self.deep_slots  # noqa: B018 -- a clear error for bundles without prompted graphs
        feeds = {"pixel_values": pixel_values, **prompts.inputs()}
        return self.engine.run("vision_prompted", feeds)[0]

    def encode_text(
        self,
        token_embeddings: np.ndarray,
        eot_index: np.ndarray,
        deep: DeepPrompts | None = None,
    ) -> np.ndarray:
        """[N, L, D] token embeddings, [N] EOT positions -> [N, E] text embeddings; with
        `deep`, through the prompted text graph."""
        feeds = {"token_embeddings": token_embeddings, "eot_index": eot_index}
        if deep is None:
            return self.engine.run("text", feeds)[0]
        slots = self.deep_slots
        deep_inputs = {
            "deep_prompts": deep.padded(slots.text_layers, deep.n_tokens),
            "prompt_depth": np.asarray(deep.depth, np.int64),
        }
        return self.engine.run("text_prompted", feeds | deep_inputs)[0]

    def encode_dense(self, graph: str, pixel_values: np.ndarray) -> list[np.ndarray]:
        """[B, 3, S, S] at the graph's size -> its outputs, through one of the bundle's dense
        graphs (`config: anomaly / winclip / segment`)."""
        self.dense_spec(graph)  # a clear error for bundles without the graph
        return self.engine.run(graph, {"pixel_values": pixel_values})

    def encode_anomaly(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image_embeds [B, E], patch_embeds [B, taps, g*g, E]) through AnomalyCLIP's graph."""
        image, patches = self.encode_dense("anomaly", pixel_values)
        return image, patches

    def encode_windows(self, pixel_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image_embeds [B, E], window_embeds [B, windows, E]) through WinCLIP's graph."""
        image, windows = self.encode_dense("winclip", pixel_values)
        return image, windows

    def dense_spec(self, graph: str) -> Any:
        """What a dense graph was exported with, or a BundleError saying how to export it."""
        cfg = self.config
        spec: Any
        if graph.startswith("segment_"):
            spec = cfg.segment.get(graph.removeprefix("segment_"))
        else:
            spec = getattr(cfg, graph, None) if graph in _DENSE else None
        if spec is None:
            raise BundleError(
                f"bundle {self.bundle.dir} has no {graph} graph; {export_hint(graph)}"
            )
        return spec

    @cached_property
    def deep_slots(self) -> DeepPromptSlots:
        slots = self.config.deep_prompts
        if slots is None:
            raise BundleError(
                f"bundle {self.bundle.dir} has no prompted graphs (MaPLe, IVLP); re-export it "
                "without --no-deep-prompts"
            )
        return slots

    @cached_property
    def text_tower(self) -> TextTower:
        return TextTower(
            tokenizer(self.bundle),
            token_embedding(self.bundle),
            self.encode_text,
            chunk_size=self.engine.options.text_chunk_size,
            truncate=self.config.text_truncation,
        )

    def warmup(self) -> None:
        """One call per graph, so the first requests do not pay the runtimes' allocations."""
        size = self.config.preprocess.size
        pixels = np.zeros((1, 3, size, size), np.float32)
        self.encode_image(pixels)
        self.text_tower.encode_texts(["warmup"])
        if (slots := self.config.deep_prompts) is not None:
            plain = VisualPromptBatch.stack(
                [None], layers=slots.vision_layers, width=slots.vision_width
            )
            self.encode_image(pixels, plain)
