"""The CLIP encoder deployment: one shared image batch across requests and prompts.

`@serve.multiplexed` would split batches by model id; here the batch is over images only and
each call carries its own head, so a batch mixes prompt_ids (and free-label requests) freely:
one vision pass, then a per-call matmul against that call's class features. Which requests
may reach which graph was decided at the gateway (models/clip/capabilities.py).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve

from promptserve.images import normalize
from promptserve.models.artifacts import PromptArtifact
from promptserve.models.clip.deep_prompts import DeepPrompts, VisualPromptBatch, plan_vision_calls
from promptserve.models.clip.maps import resize_bilinear
from promptserve.models.clip.methods import get_method
from promptserve.models.clip.methods.base import ClassHead, DenseHead
from promptserve.models.clip.methods.l2p import L2PHead
from promptserve.models.clip.methods.mocoop import MoCoOpHead
from promptserve.models.clip.methods.segment import class_scores, segment
from promptserve.models.clip.methods.winclip import WinCLIPHead
from promptserve.models.clip.runtime import ClipGraphs
from promptserve.models.clip.serve.calls import (
    AnomalyCall,
    ClassifyCall,
    Labels,
    ObjectName,
    SegmentCall,
    Vocabulary,
)
from promptserve.models.clip.serve.heads import HeadBank, score
from promptserve.serving.config import AppConfig
from promptserve.serving.deployments.encoder import Encoder
from promptserve.serving.metrics import metrics
from promptserve.serving.store import PromptRef
from promptserve.types import EncodedArray, LabelMap


@dataclass(frozen=True, eq=False)
class VisionJob:
    """What the vision batch needs of a call: its crops and, for deep-prompt heads (MaPLe,
    IVLP), the visual prompts those crops go through."""

    crops: np.ndarray
    prompts: DeepPrompts | None = None


def _num_images(jobs: list[VisionJob]) -> int:
    return sum(len(j.crops) for j in jobs)


class EncoderDeployment(Encoder):
    def __init__(self, config: AppConfig) -> None:
        super().__init__(config)
        self.clip = ClipGraphs(self.engine)
        self.clip.warmup()
        self.heads = HeadBank(
            self.store,
            self.clip.text_tower,
            max_loaded=config.prompts.max_loaded,
            text_cache_size=config.prompts.text_cache_size,
            embed_dim=self.clip.config.embed_dim,
        )
        self._vision = self.follow(
            self.batcher(self._run_batch, size_fn=lambda job: len(job.crops))
            if config.encoder.batcher == "continuous"
            else self._serve_batched
        )
        # one batcher per dense graph: heads reading the same graph (AnomalyCLIP prompts; WinCLIP
        # object names) share its batch and differ only in their text features
        self._dense = {
            graph: self.batcher(functools.partial(self._run_dense_batch, graph), size_fn=len)
            for graph in self.clip.config.dense_graphs()
        }

    # -- tasks -------------------------------------------------------------------------------
    @Encoder.sheds
    async def classify(self, call: ClassifyCall) -> dict[str, Any]:
        """`{"results": [...per image...], "batch_images": [size of each vision batch the
        call's chunks rode in]}`."""
        chosen: tuple[np.ndarray, np.ndarray] | None = None
        with self.admitted(len(call.crops)):
            head = await self._head(call.head)
            if isinstance(head, L2PHead):
                embeds, sizes, chosen = await self._pool_vision(call.crops, head)
            else:
                parts = await asyncio.gather(
                    *(self._vision(VisionJob(call.crops[s], head.visual))
                      for s in self.chunks(len(call.crops)))
                )  # fmt: skip
                embeds, sizes = _concat([e for e, _ in parts]), [n for _, n in parts]
        if isinstance(head, MoCoOpHead):
            chosen = head.route(embeds)
        scored = functools.partial(
            score,
            embeds,
            head,
            logit_scale=self.clip.config.logit_scale,
            top_k=call.top_k,
            return_logits=call.return_logits,
        )
        # e.g. CoCoOp runs the text encoder per image: off the event loop
        results = await asyncio.to_thread(scored) if head.dynamic else scored()
        if chosen is not None:
            label = call.head.prompt_id if isinstance(call.head, PromptRef) else ""
            selections = metrics().pool_selections
            for result, index, weight in zip(results, *chosen, strict=True):
                result["chosen"] = [
                    {"index": int(i), "score": float(w)} for i, w in zip(index, weight, strict=True)
                ]
                for i in index:  # choices per prompt of the pool (Grafana: IDP selections)
                    selections.inc(tags={"prompt_id": label, "choice": str(int(i))})
        return {"results": results, "batch_images": sizes}

    async def _pool_vision(
        self, crops: np.ndarray, head: L2PHead
    ) -> tuple[np.ndarray, list[int], tuple[np.ndarray, np.ndarray]]:
        """L2P: a plain pass gives each image its query; each image then goes through the
        prompted graph with the prompts it chose, images of different choices in one batch."""
        query = await asyncio.gather(
            *(self._vision(VisionJob(crops[s])) for s in self.chunks(len(crops)))
        )
        routing = head.route(_concat([e for e, _ in query]))
        jobs = [
            (rows[s], prompts)
            for prompts, rows in routing.groups
            for s in self.chunks(len(rows))
        ]  # fmt: skip
        parts = await asyncio.gather(*(self._vision(VisionJob(crops[r], p)) for r, p in jobs))
        embeds = np.empty((len(crops), parts[0][0].shape[1]), parts[0][0].dtype)
        for (rows, _), (part, _) in zip(jobs, parts, strict=True):
            embeds[rows] = part
        sizes = [n for _, n in (*query, *parts)]
        return embeds, sizes, (routing.index, routing.score)

    @Encoder.sheds
    async def detect_anomalies(self, call: AnomalyCall) -> dict[str, Any]:
        """`{"results": [{score, map (float16 at the original size)}...], "batch_images": [n]}`."""
        with self.admitted(len(call.crops)):
            head = await self._dense_head(call.head)
            parts = await self.batched(self._dense[head.graph], call.crops)
        image = _concat([outputs[0] for outputs, _ in parts])
        dense = _concat([outputs[1] for outputs, _ in parts])
        results = await asyncio.to_thread(_anomaly_results, head, image, dense, call.sizes)
        return {"results": results, "batch_images": [n for _, n in parts]}

    @Encoder.sheds
    async def segment(self, call: SegmentCall) -> dict[str, Any]:
        """`{"result": {label_map, scores}, "batch_images": [windows per graph call]}`."""
        with self.admitted(len(call.windows)):
            head, name_class = await self._vocabulary(call.vocabulary)
            parts = await self.batched(self._dense[f"segment_{call.method}"], call.windows)
        features = _concat([outputs[0] for outputs, _ in parts])
        result = await asyncio.to_thread(
            _segment_result, call, features, head.features, name_class, len(head.labels)
        )
        return {"result": result, "batch_images": [n for _, n in parts]}

    # -- heads -------------------------------------------------------------------------------
    async def _head(self, ref: PromptRef | Labels) -> ClassHead:
        """From the cache when it needs no I/O and no text encoding (the common case), else
        loaded or encoded off the event loop."""
        head = self._cached(ref)
        return head if head is not None else await asyncio.to_thread(self._load, ref)

    def _cached(self, ref: PromptRef | Labels) -> ClassHead | None:
        if isinstance(ref, Labels):
            return self.heads.cached(content_id=None, labels=ref.labels, templates=ref.templates)
        return self.heads.cached(content_id=ref.content_id, labels=None, templates=())

    def _load(self, ref: PromptRef | Labels) -> ClassHead:
        if isinstance(ref, Labels):
            return self.heads.label_head(ref.labels, ref.templates)
        return self.heads.prompt_head(ref.prompt_id, ref.content_id)

    async def _vocabulary(self, ref: PromptRef | Vocabulary) -> tuple[ClassHead, np.ndarray]:
        """The text features of every name and the class each name belongs to."""
        if isinstance(ref, Vocabulary):
            names = tuple(n for group in ref.names for n in group)
            labels = Labels(names, ref.templates)
            found = await self._head(labels)
            classes = tuple(group[0] for group in ref.names)
            name_class = np.repeat(np.arange(len(ref.names)), [len(g) for g in ref.names])
            return ClassHead(classes, found.features), name_class
        head = await self._head(ref)
        return head, np.arange(len(head.labels))

    async def _dense_head(self, ref: PromptRef | ObjectName) -> DenseHead:
        head: ClassHead | None
        if isinstance(ref, ObjectName):
            head = self.heads.cached_object(ref.name)
            if head is None:
                build = functools.partial(
                    WinCLIPHead.build,
                    self.clip.text_tower,
                    spec=self.clip.dense_spec("winclip"),
                    image_size=self.clip.config.preprocess.size,
                )
                head = await asyncio.to_thread(self.heads.object_head, ref.name, build)
        else:
            head = await self._head(ref)
        if not isinstance(head, DenseHead):  # the gateway's gate lets none through
            raise TypeError(f"{ref} does not resolve to an anomaly head")
        return head

    # -- batches -----------------------------------------------------------------------------
    async def _run_dense_batch(
        self, graph: str, jobs: list[np.ndarray]
    ) -> list[tuple[list[np.ndarray], int]]:
        """One dense-graph call for every image of every job; each job gets its slice of every
        output."""
        crops = _concat(jobs)
        metrics().batch_size.observe(len(crops))
        outputs = await asyncio.to_thread(self.clip.encode_dense, graph, self._pixels(crops))
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
        pre = self.clip.config.preprocess
        return normalize(crops, mean=pre.mean, std=pre.std)

    def _encode(self, crops: np.ndarray, jobs: list[VisionJob]) -> np.ndarray:
        """Batches without deep prompts take the plain graph; deep-prompt rows take the prompted
        graph, with the plain rows masked in the same call unless padding them to the longest
        prompt costs more than `encoder.split_plain_rows` (see `plan_vision_calls`)."""
        pixels = self._pixels(crops)
        if all(j.prompts is None for j in jobs):
            return self.clip.encode_image(pixels)
        slots = self.clip.deep_slots
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
                embeds = self.clip.encode_image(part, batch)
            else:
                embeds = self.clip.encode_image(part)
            if len(plan) == 1:
                return embeds
            if out is None:
                out = np.empty((len(rows), embeds.shape[1]), embeds.dtype)
            out[idx] = embeds
        assert out is not None
        return out

    # -- registration ------------------------------------------------------------------------
    def artifact_features(self, artifact: PromptArtifact) -> np.ndarray:
        """Validate an artifact against this backbone and compute its class features (once, at
        registration)."""
        method = get_method(artifact.manifest.method)
        method.validate(artifact, self.clip.config)
        return method.class_features(artifact, self.clip.text_tower)


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
