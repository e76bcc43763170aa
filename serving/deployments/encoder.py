"""The vision-encoder deployment: one shared image batch across requests and prompts.

`@serve.multiplexed` would split batches by model id; here the batch is over images only and
each call carries its own head, so a batch mixes prompt_ids (and free-label requests) freely:
one vision pass, then a per-call matmul against that call's class features.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from promptserve.images import normalize
from promptserve.models.artifacts import ArtifactError, PromptArtifact
from promptserve.models.bundle import Bundle
from promptserve.models.clip.deep_prompts import DeepPrompts, VisualPromptBatch, plan_vision_calls
from promptserve.models.clip.maps import resize_bilinear
from promptserve.models.clip.methods import get_method
from promptserve.models.clip.methods.base import ClassHead, DenseHead
from promptserve.models.clip.methods.segment import class_scores, segment
from promptserve.models.clip.methods.winclip import WinCLIPHead
from promptserve.serving.batching import ContinuousBatcher
from promptserve.serving.config import AppConfig
from promptserve.serving.engines.base import create_engine
from promptserve.serving.errors import BackendUnavailable, InvalidInput
from promptserve.serving.heads import HeadBank, score
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptStore
from promptserve.types import EncodedArray, LabelMap


@dataclass(frozen=True)
class ClassifyCall:
    """One gateway request (or a chunk of one) for the encoder."""

    crops: np.ndarray  # uint8 [n, S, S, 3], already resized and center-cropped
    prompt_id: str | None = None
    content_id: str | None = None
    labels: tuple[str, ...] | None = None
    templates: tuple[str, ...] = ()
    top_k: int = 5
    return_logits: bool = False


@dataclass(frozen=True, eq=False)
class VisionJob:
    """What the vision batch needs of a call: its crops and, for deep-prompt heads (MaPLe,
    IVLP), the visual prompts those crops go through."""

    crops: np.ndarray
    prompts: DeepPrompts | None = None


@dataclass(frozen=True)
class AnomalyCall:
    """One gateway anomaly request (or a chunk of one): a registered prompt (AnomalyCLIP) or
    an object name (WinCLIP)."""

    crops: np.ndarray  # uint8 [n, S, S, 3] at its dense graph's size, aspect not kept
    sizes: tuple[tuple[int, int], ...]  # each image's original (height, width)
    prompt_id: str | None = None
    content_id: str | None = None
    object_name: str | None = None


@dataclass(frozen=True)
class SegmentCall:
    """One image of a gateway segmentation request, cut into its sliding windows."""

    windows: np.ndarray  # uint8 [n, crop, crop, 3]
    boxes: tuple[tuple[int, int, int, int], ...]  # (y1, y2, x1, x2) of each in the resized image
    resized: tuple[int, int]
    original: tuple[int, int]
    method: str
    logit_scale: float
    prob_threshold: float = 0.0
    return_scores: bool = False
    prompt_id: str | None = None
    content_id: str | None = None
    names: tuple[tuple[str, ...], ...] | None = None  # per class, its names (free labels)
    templates: tuple[str, ...] = ()


def _num_images(jobs: list[VisionJob]) -> int:
    return sum(len(j.crops) for j in jobs)


class EncoderDeployment:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.bundle = Bundle(config.bundle)
        self.engine = create_engine(config.engine.name, self.bundle, config.engine)
        self.engine.warmup()
        self.heads = HeadBank(
            PromptStore(config.prompts.store),
            self.engine.text_tower,
            max_loaded=config.prompts.max_loaded,
            text_cache_size=config.prompts.text_cache_size,
        )
        self._pending = 0
        enc = config.encoder
        self._batched: Callable[[VisionJob], Awaitable[tuple[np.ndarray, int]]] = (
            ContinuousBatcher(
                self._run_batch,
                max_batch_size=enc.max_batch_size,
                batch_wait_timeout_s=enc.batch_wait_timeout_s,
                size_fn=lambda c: len(c.crops),
                max_inflight=enc.max_inflight_batches,
            )
            if enc.batcher == "continuous"
            else self._serve_batched
        )
        # one batcher per dense graph: heads reading the same graph (AnomalyCLIP prompts; WinCLIP
        # object names) share its batch and differ only in their text features
        self._dense_batched = {
            graph: ContinuousBatcher(
                functools.partial(self._run_dense_batch, graph),
                max_batch_size=enc.max_batch_size,
                batch_wait_timeout_s=enc.batch_wait_timeout_s,
                size_fn=len,
                max_inflight=enc.max_inflight_batches,
            )
            for graph in self.bundle.manifest.dense_graphs()
        }
        self.reconfigure(
            {
                "max_batch_size": config.encoder.max_batch_size,
                "batch_wait_timeout_s": config.encoder.batch_wait_timeout_s,
            }
        )

    def __del__(self) -> None:  # Serve calls it when the replica shuts down
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batch settings come from config and can change without a restart (Serve user_config)."""
        for batcher in (self._batched, *self._dense_batched.values()):
            batcher.set_max_batch_size(
                int(user_config.get("max_batch_size", self.config.encoder.max_batch_size))
            )
            batcher.set_batch_wait_timeout_s(
                float(
                    user_config.get(
                        "batch_wait_timeout_s", self.config.encoder.batch_wait_timeout_s
                    )
                )
            )

    async def classify(self, call: ClassifyCall) -> dict[str, Any]:
        """`{"results": [...per image...], "batch_images": size of the vision batch it rode in}`."""
        head = self.heads.cached(
            content_id=call.content_id, labels=call.labels, templates=call.templates
        )
        if head is None:  # load features or encode new labels off the event loop
            head = await asyncio.to_thread(self._head, call)
        self._pending += 1
        metrics().queue_length.set(self._pending)
        try:
            embeds, batch_images = await self._batched(VisionJob(call.crops, head.visual))
        finally:
            self._pending -= 1
            metrics().queue_length.set(self._pending)
        options = {
            "logit_scale": self.bundle.manifest.logit_scale,
            "top_k": call.top_k,
            "return_logits": call.return_logits,
        }
        if head.dynamic:  # e.g. CoCoOp: text encoder per image, off the event loop
            results = await asyncio.to_thread(score, embeds, head, **options)
        else:
            results = score(embeds, head, **options)
        return {"results": results, "batch_images": batch_images}

    async def detect_anomalies(self, call: AnomalyCall) -> dict[str, Any]:
        """`{"results": [{score, map (float16 at the original size)}...], "batch_images": n}`."""
        head = await self._dense_head(call)
        batcher = self._dense_batched.get(head.graph)
        if batcher is None:
            flag = {"anomaly": "--anomaly-size", "winclip": "--winclip-scales"}[head.graph]
            raise InvalidInput(
                f"this server's bundle has no {head.graph} graph; export it with {flag}",
                param="object_name" if call.object_name is not None else "prompt_id",
            )
        (image, dense), batch_images = await batcher(call.crops)
        results = await asyncio.to_thread(_anomaly_results, head, image, dense, call.sizes)
        return {"results": results, "batch_images": batch_images}

    async def segment(self, call: SegmentCall) -> dict[str, Any]:
        """`{"result": {label_map, scores}, "batch_images": [windows per graph call]}`."""
        head, name_class = await self._vocabulary(call)
        graph = f"segment_{call.method}"
        batcher = self._dense_batched.get(graph)
        if batcher is None:
            raise InvalidInput(
                f"this server's bundle has no {call.method} graph; export it with --segment "
                f"{call.method}",
                param="method",
            )
        step = self.config.encoder.max_batch_size
        parts = await asyncio.gather(
            *(batcher(call.windows[i : i + step]) for i in range(0, len(call.windows), step))
        )
        features = _concat([outputs[0] for outputs, _ in parts])
        result = await asyncio.to_thread(
            _segment_result, call, features, head.features, name_class, len(head.labels)
        )
        return {"result": result, "batch_images": [n for _, n in parts]}

    async def _vocabulary(self, call: SegmentCall) -> tuple[ClassHead, np.ndarray]:
        """The text features of every name and the class each name belongs to."""
        if call.names is not None:
            names = [n for group in call.names for n in group]
            head = self.heads.cached(content_id=None, labels=names, templates=call.templates)
            if head is None:
                head = await asyncio.to_thread(self.heads.label_head, names, call.templates)
            classes = [group[0] for group in call.names]
            name_class = np.repeat(np.arange(len(call.names)), [len(g) for g in call.names])
            return ClassHead(tuple(classes), head.features), name_class
        head = self.heads.cached(content_id=call.content_id, labels=None, templates=())
        if head is None:
            head = await asyncio.to_thread(
                self.heads.prompt_head, call.prompt_id or "", call.content_id or ""
            )
        if head.visual is not None or head.dynamic or isinstance(head, DenseHead):
            raise InvalidInput(
                f"prompt {call.prompt_id!r} conditions more than the class text (deep visual "
                "prompts, per-image text, or an anomaly head); segmentation takes text-only "
                "prompts: coop, kgcoop, templates, cupl",
                param="prompt_id",
            )
        return head, np.arange(len(head.labels))

    async def _dense_head(self, call: AnomalyCall) -> DenseHead:
        if call.object_name is not None:
            spec = self.bundle.manifest.winclip
            if spec is None:
                raise InvalidInput(
                    "this server's bundle has no winclip graph; export it with --winclip-scales",
                    param="object_name",
                )
            head = self.heads.cached_object(call.object_name)
            if head is None:
                size = self.bundle.manifest.preprocess.size
                build = functools.partial(
                    WinCLIPHead.build, self.engine.text_tower, spec=spec, image_size=size
                )
                head = await asyncio.to_thread(self.heads.object_head, call.object_name, build)
        else:
            head = self.heads.cached(content_id=call.content_id, labels=None, templates=())
            if head is None:
                head = await asyncio.to_thread(
                    self.heads.prompt_head, call.prompt_id or "", call.content_id or ""
                )
        if not isinstance(head, DenseHead):
            raise InvalidInput(
                f"prompt {call.prompt_id!r} is not an anomaly-detection prompt", param="prompt_id"
            )
        return head

    async def _run_dense_batch(
        self, graph: str, jobs: list[np.ndarray]
    ) -> list[tuple[list[np.ndarray], int]]:
        """One dense-graph call for every image of every job; each job gets its slice of every
        output."""
        crops = _concat(jobs)
        metrics().batch_size.observe(len(crops))
        outputs = await asyncio.to_thread(self.engine.encode_dense, graph, self._pixels(crops))
        return [([o[s] for o in outputs], len(crops)) for s in _job_slices(map(len, jobs))]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=_num_images)
    async def _serve_batched(self, jobs: list[VisionJob]) -> list[tuple[np.ndarray, int]]:
        """`encoder.batcher: serve`: Ray Serve's batcher (see serving/batching.py for why it is
        not the default)."""
        return await self._run_batch(jobs)

    async def _run_batch(self, jobs: list[VisionJob]) -> list[tuple[np.ndarray, int]]:
        """One vision-graph call for every image of every job; each job gets its slice."""
        crops = _concat([j.crops for j in jobs])
        metrics().batch_size.observe(len(crops))
        embeds = await asyncio.to_thread(self._encode, crops, jobs)
        return [(embeds[s], len(crops)) for s in _job_slices(len(j.crops) for j in jobs)]

    def _pixels(self, crops: np.ndarray) -> np.ndarray:
        pre = self.bundle.manifest.preprocess
        return normalize(crops, mean=pre.mean, std=pre.std)

    def _encode(self, crops: np.ndarray, jobs: list[VisionJob]) -> np.ndarray:
        """Batches without deep prompts take the plain graph; deep-prompt rows take the prompted
        graph, with the plain rows masked in the same call unless padding them to the longest
        prompt costs more than `encoder.split_plain_rows` (see `plan_vision_calls`)."""
        pixels = self._pixels(crops)
        if all(j.prompts is None for j in jobs):
            return self.engine.encode_image(pixels)
        slots = self.engine.deep_slots
        rows = [j.prompts for j in jobs for _ in range(len(j.crops))]
        plan = plan_vision_calls(
            rows,
            image_tokens=slots.image_tokens,
            split_above=self.config.encoder.split_plain_rows,
        )
        out: np.ndarray | None = None
        for idx, prompted in plan:
            part = pixels if len(plan) == 1 else np.ascontiguousarray(pixels[idx])
            if prompted:
                batch = VisualPromptBatch.stack(
                    [rows[i] for i in idx], layers=slots.vision_layers, width=slots.vision_width
                )
                embeds = self.engine.encode_image(part, batch)
            else:
                embeds = self.engine.encode_image(part)
            if len(plan) == 1:
                return embeds
            if out is None:
                out = np.empty((len(rows), embeds.shape[1]), embeds.dtype)
            out[idx] = embeds
        return out

    def _head(self, call: ClassifyCall):
        if call.labels is not None:
            return self.heads.label_head(call.labels, call.templates)
        return self.heads.prompt_head(call.prompt_id or "", call.content_id or "")

    async def class_features(
        self, manifest: dict, tensors: bytes | None
    ) -> tuple[np.ndarray, PromptArtifact]:
        """Validate an artifact against this backbone and compute its class features (once, at
        registration)."""
        return await asyncio.to_thread(self._class_features, manifest, tensors)

    def _class_features(
        self, manifest: dict, tensors: bytes | None
    ) -> tuple[np.ndarray, PromptArtifact]:
        try:
            artifact = PromptArtifact.from_parts(manifest, tensors)
            method = get_method(artifact.manifest.method)
            method.validate(artifact, self.bundle.manifest)
            features = method.class_features(artifact, self.engine.text_tower)
        except ArtifactError as exc:
            raise InvalidInput(str(exc), param="manifest") from None
        return features, artifact

    async def ready(self) -> bool:
        """Raises while the engine cannot serve (e.g. its Triton server is down), so the
        gateway's /readyz answers 503."""
        problems = await asyncio.to_thread(getattr(self.engine, "problems", list))
        if problems:
            raise BackendUnavailable("; ".join(problems))
        return True


def _anomaly_results(
    head: DenseHead,
    image: np.ndarray,
    dense: np.ndarray,
    sizes: tuple[tuple[int, int], ...],
) -> list[dict]:
    scores, maps = head.outputs(image, dense)
    return [
        {
            "index": i,
            "score": float(scores[i]),
            "map": EncodedArray.from_numpy(resize_bilinear(maps[i], size), "float16").model_dump(),
        }
        for i, size in enumerate(sizes)
    ]


def _segment_result(
    call: SegmentCall,
    features: np.ndarray,
    text: np.ndarray,
    name_class: np.ndarray,
    n_classes: int,
) -> dict[str, Any]:
    crop = call.windows.shape[1]
    # names per pass bounded so a pass holds about 64M floats at the original size
    chunk = int(np.clip((1 << 26) // (call.original[0] * call.original[1]), 1, 16))
    seg = segment(
        features,
        list(call.boxes),
        text,
        name_class=name_class,
        crop=crop,
        resized=call.resized,
        original=call.original,
        logit_scale=call.logit_scale,
        prob_threshold=call.prob_threshold,
        chunk=chunk,
    )
    out: dict[str, Any] = {"label_map": LabelMap.from_numpy(seg.labels).model_dump()}
    if call.return_scores:
        area, confidence = class_scores(seg, n_classes)
        present = sorted(np.flatnonzero(area > 0), key=lambda c: -area[c])
        out["scores"] = [
            {"index": int(c), "area": float(area[c]), "confidence": float(confidence[c])}
            for c in present
        ]
    return out


def _concat(crops: list[np.ndarray]) -> np.ndarray:
    return crops[0] if len(crops) == 1 else np.concatenate(crops)


def _job_slices(lengths: Iterable[int]) -> list[slice]:
    """Each job's rows in the concatenated batch."""
    bounds = np.cumsum([0, *lengths])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
