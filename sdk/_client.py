"""`Client` and `AsyncClient`: the twin entry points of the SDK.

Both build their requests with the helpers at the top of this file and `BaseClient`; the chunked
calls (`classify`, `detect_anomalies`, `segment`) are one `_Chunked` plan each, built by the same
code for both clients. Only the transport loop and the way chunks run concurrently (threads vs
tasks, in each client's `_run_chunked`) are written twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from pydantic import BaseModel, ValidationError

from promptserve._base import BaseClient, Timeout, _merge, _split, log
from promptserve._constants import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    PROGRESS_THRESHOLD,
)
from promptserve._exceptions import InvalidInput
from promptserve._generation import AsyncGenerationMixin, GenerationMixin
from promptserve._retrieval import AsyncRetrievalMixin, RetrievalMixin
from promptserve.images import _RESAMPLE, ImageInput, image_to_bytes
from promptserve.types import (
    AnomalyRequest,
    AnomalyResponse,
    ClassifyRequest,
    ClassifyResponse,
    ModelInfo,
    PromptInfo,
    PromptList,
    RegisterPromptRequest,
    SegmentRequest,
    SegmentResponse,
)

__all__ = ["AsyncClient", "Client"]

Images = ImageInput | Sequence[ImageInput]
R = TypeVar("R", AnomalyResponse, SegmentResponse)
M = TypeVar("M", ClassifyResponse, AnomalyResponse, SegmentResponse)
# A folder written by `promptserve import` (manifest.json [+ prompt.safetensors]), or its contents.
Artifact = str | Path | tuple[dict[str, Any], bytes | None]


# -- request bodies, shared by the twins ---------------------------------------------------------


def _invalid(exc: ValidationError) -> InvalidInput:
    errors = exc.errors()
    where = [".".join(str(p) for p in e["loc"]) for e in errors]
    message = "; ".join(f"{w or 'request'}: {e['msg']}" for w, e in zip(where, errors, strict=True))
    return InvalidInput(message, param=(where[0] or None) if where else None)


def _image_list(images: Images) -> list[ImageInput]:
    items: list[ImageInput]
    if isinstance(images, (list, tuple)) or (
        isinstance(images, np.ndarray) and images.ndim == 4  # (N, H, W, C)
    ):
        items = list(images)
    else:
        items = [images]  # type: ignore[list-item]  # a str or bytes is one image, not a batch
    if not items:
        raise InvalidInput("`images` is empty", param="images")
    return items


def _classify_plan(
    images: Images, *, prompt_id: str | None, labels: Sequence[str] | None, **options: Any
) -> tuple[list[ImageInput], ClassifyRequest]:
    """Validate the call's arguments: the images as a list, and a request without its images."""
    items = _image_list(images)
    if (prompt_id is None) == (labels is None):
        raise InvalidInput("give exactly one of `prompt_id` or `labels`", param="prompt_id")
    if isinstance(labels, str) or (labels is not None and not labels):
        raise InvalidInput("`labels` must be a non-empty list of class names", param="labels")
    try:
        template = ClassifyRequest(
            images=[], prompt_id=prompt_id, labels=list(labels) if labels else None, **options
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    return items, template


def _anomaly_plan(
    images: Images, prompt_id: str | None, object_name: str | None, max_map_side: int | None
) -> tuple[list[ImageInput], AnomalyRequest]:
    items = _image_list(images)
    try:
        template = AnomalyRequest(
            images=[], prompt_id=prompt_id, object_name=object_name, max_map_side=max_map_side
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    return items, template


def _segment_plan(images: Images, **fields: Any) -> tuple[list[ImageInput], SegmentRequest]:
    items = _image_list(images)
    if fields.get("labels") is not None:
        fields["labels"] = [g if isinstance(g, str) else list(g) for g in fields["labels"]]
    try:
        template = SegmentRequest(images=[], **fields)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    return items, template


def _merge_indexed(responses: Sequence[R], offsets: Sequence[int]) -> R:
    results = [
        r.model_copy(update={"index": offset + r.index})
        for response, offset in zip(responses, offsets, strict=True)
        for r in response.results
    ]
    return responses[0].model_copy(update={"results": sorted(results, key=lambda r: r.index)})


def _downscale_args(info: ModelInfo | None) -> dict[str, Any]:
    """`image_to_bytes` arguments that shrink uploads to the model's input size, if possible."""
    if info is None or info.image is None:
        return {}
    if info.image.interpolation not in _RESAMPLE:
        log.debug("no client-side downscale: unknown interpolation %r", info.image.interpolation)
        return {}
    return {"downscale_to": info.image.size, "interpolation": info.image.interpolation}


def _encode_images(part: Sequence[ImageInput], offset: int, downscale: dict[str, Any]) -> list[str]:
    """Images -> base64 file bytes; errors name the global position of the image at fault."""
    encoded = []
    for i, image in enumerate(part):
        try:
            data = image_to_bytes(image, **downscale)
        except (TypeError, ValueError, OSError) as exc:
            raise InvalidInput(
                f"images[{offset + i}]: {exc}", param=f"images[{offset + i}]"
            ) from exc
        encoded.append(base64.b64encode(data).decode("ascii"))
    return encoded


def _register_body(artifact: Artifact, prompt_id: str | None) -> RegisterPromptRequest:
    if isinstance(artifact, tuple):
        manifest, tensors = artifact
    else:
        folder = Path(artifact)
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(
                f"cannot read {folder}/manifest.json: {exc}", param="artifact"
            ) from exc
        tensor_file = folder / "prompt.safetensors"
        tensors = tensor_file.read_bytes() if tensor_file.is_file() else None
    if not isinstance(manifest, dict):
        raise InvalidInput("the manifest must be a JSON object", param="artifact")
    try:
        return RegisterPromptRequest(
            manifest=manifest,
            tensors=base64.b64encode(tensors).decode("ascii") if tensors is not None else None,
            prompt_id=prompt_id,
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc


def _prompt_path(prompt_id: str) -> str:
    return f"/v1/prompts/{quote(prompt_id, safe='')}"


def _progress_bar(total: int, progress: bool | None, desc: str) -> Any:
    """A tqdm bar named after the call (`desc`), so a script running several knows which."""
    from tqdm.auto import tqdm

    show = total > PROGRESS_THRESHOLD if progress is None else progress
    return tqdm(total=total, unit="img", desc=desc, disable=not show)


def _check_chunking(chunk_size: int, concurrency: int, info: ModelInfo | None) -> int:
    if chunk_size < 1 or concurrency < 1:
        param = "chunk_size" if chunk_size < 1 else "concurrency"
        raise InvalidInput("`chunk_size` and `concurrency` must be >= 1", param=param)
    if info is None or info.max_images_per_request is None:
        return chunk_size
    return min(chunk_size, info.max_images_per_request)


# -- chunked calls, shared by the twins ----------------------------------------------------------


@dataclass(frozen=True)
class _Chunked(Generic[M]):
    """One chunked call, free of transport: its chunks, each chunk's request, and the merge.

    `classify`, `detect_anomalies` and `segment` of both clients build one with `_chunked` and
    hand it to their client's `_run_chunked`, so that requests are built and answers merged by
    one code path; only sending (blocking or awaited) and running up to `concurrency` chunks at
    once (threads or tasks) are written per client.
    """

    name: str  # the call, as the progress bar names it: classify, anomaly or segment
    path: str
    model: type[M]
    template: BaseModel  # the request, without its images
    chunks: list[tuple[int, list[ImageInput]]]  # (offset of the first image, images)
    concurrency: int
    downscale: dict[str, Any]  # `image_to_bytes` arguments
    merge: Callable[[Sequence[M], Sequence[int]], M]

    @property
    def total(self) -> int:
        return sum(len(part) for _, part in self.chunks)

    def body(self, offset: int, part: Sequence[ImageInput]) -> BaseModel:
        """The request of one chunk. Encoding is CPU work (PNG, base64), so it runs on the
        worker that sends the chunk: a pool thread, or `asyncio.to_thread` for the async client."""
        encoded = _encode_images(part, offset, self.downscale)
        return self.template.model_copy(update={"images": encoded})

    def progress_bar(self, progress: bool | None) -> Any:
        return _progress_bar(self.total, progress, self.name)

    def merged(self, responses: Sequence[M]) -> M:
        """One response in input order; `responses` are in chunk order, whatever finished first."""
        return self.merge(responses, [offset for offset, _ in self.chunks])


def _chunked(
    name: str,
    model: type[M],
    merge: Callable[[Sequence[M], Sequence[int]], M],
    items: list[ImageInput],
    template: BaseModel,
    *,
    chunk_size: int,
    concurrency: int,
    info: ModelInfo | None,
    downscale: dict[str, Any] | None = None,
) -> _Chunked[M]:
    """`items` split into chunks of `chunk_size` (at most the server's `max_images_per_request`
    once `info` is known), sent to `POST /v1/<name>`."""
    size = _check_chunking(chunk_size, concurrency, info)
    return _Chunked(
        name=name, path=f"/v1/{name}", model=model, template=template,
        chunks=_split(items, size), concurrency=concurrency, downscale=downscale or {},
        merge=merge,
    )  # fmt: skip


class Client(RetrievalMixin, GenerationMixin, BaseClient):
    """Synchronous client of a promptserve server.

    Args:
        base_url: Server URL; defaults to `$PROMPTSERVE_BASE_URL`, else `http://127.0.0.1:8000`.
        api_key: Sent as `Authorization: Bearer <key>`; defaults to `$PROMPTSERVE_API_KEY`.
        timeout: Seconds per request (or an `httpx.Timeout`); methods take `timeout=` too.
        max_retries: Retries after connection errors, 408, 429 and 5xx, after the server's
            Retry-After or else an exponential backoff (capped at MAX_RETRY_DELAY, 8 s). A
            Retry-After above MAX_RETRY_AFTER (60 s) is not waited for: the error is raised.
        http_client: An `httpx.Client` to send with (proxies, TLS, limits). The SDK sets URL,
            headers and timeout per request, and does not close a client it was given.

    Example:
        >>> with Client("http://localhost:8000") as client:
        ...     client.health()
        True
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ):
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Close the connection pool (unless it came in as `http_client`)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        timeout: Timeout | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with retries. With `stream`, a successful response comes back with its body
        unread (the caller reads and closes it: retries end at its first byte); an error
        response is read and closed here, to be retried or raised."""
        request = self._build_request(self._http, method, path, body=body, timeout=timeout)
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
                if stream and not response.is_success:
                    try:
                        response.read()
                    finally:
                        response.close()
            except httpx.TransportError as exc:
                time.sleep(self._delay_after_error(request, attempt, exc))
            else:
                delay = self._delay_after_response(attempt, response)
                if delay is None:
                    return self._checked(response)
                time.sleep(delay)
            attempt += 1

    def _run_chunked(
        self, call: _Chunked[M], *, progress: bool | None, timeout: Timeout | None
    ) -> M:
        """Send `call`'s chunks, up to `call.concurrency` at once on worker threads (httpx's
        client is thread-safe), and merge the answers. The first failing chunk's error is
        raised; chunks not yet started are cancelled."""
        bar = call.progress_bar(progress)

        def run(chunk: tuple[int, list[ImageInput]]) -> M:
            offset, part = chunk
            body = call.body(offset, part)
            response = self._request("POST", call.path, body=body, timeout=timeout)
            bar.update(len(part))
            return self._parse(response, call.model)

        with bar:
            if len(call.chunks) == 1 or call.concurrency == 1:
                responses = [run(chunk) for chunk in call.chunks]
            else:
                pool = ThreadPoolExecutor(min(call.concurrency, len(call.chunks)), "promptserve")
                try:
                    responses = [f.result() for f in [pool.submit(run, c) for c in call.chunks]]
                finally:
                    pool.shutdown(cancel_futures=True)
        return call.merged(responses)

    def classify(
        self,
        images: Images,
        *,
        prompt_id: str | None = None,
        labels: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        top_k: int = 5,
        return_logits: bool = False,
        downscale: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: bool | None = None,
        timeout: Timeout | None = None,
    ) -> ClassifyResponse:
        """Classify images against a registered prompt or free-text labels.

        Args:
            images: One image or a list: paths, encoded bytes, PIL images, or uint8 numpy arrays
                (H, W), (H, W, 3) or (H, W, 4); a 4-D array is a batch.
            prompt_id: A registered prompt (see `register_prompt`). Exactly one of this or
                `labels`.
            labels: Free-text class names for zero-shot classification.
            templates: Templates with one `{}` for `labels`; the server's default otherwise.
            top_k: How many classes to return per image.
            return_logits: Also return every class's logit per image.
            downscale: Shrink images larger than the model's input size before upload (lossless
                PNG, same answer, fewer bytes). Fetches `model_info()` once per client.
            chunk_size: Images per request; longer lists are split (and clamped to the server's
                `max_images_per_request` once `model_info()` is known).
            concurrency: Chunk requests in flight at once.
            progress: Show a tqdm bar named "classify"; by default only above
                PROGRESS_THRESHOLD images.
            timeout: Seconds per request, overriding the client's.

        Returns:
            One `ClassifyResponse` whose `results[i]` is `images[i]`.

        Raises:
            InvalidInput: Bad arguments or images (before sending), or a 4xx the server gave.
            PromptNotFound: `prompt_id` is not registered.

        Example:
            >>> with Client() as client:
            ...     out = client.classify(["cat.jpg", "dog.jpg"], labels=["cat", "dog"])
            >>> out.results[0].top[0].label
            'cat'
        """
        items, template = _classify_plan(
            images, prompt_id=prompt_id, labels=labels, templates=templates, top_k=top_k,
            return_logits=return_logits,
        )  # fmt: skip
        info = (self._model_info or self.model_info(timeout=timeout)) if downscale else None
        call = _chunked(
            "classify", ClassifyResponse, _merge, items, template, chunk_size=chunk_size,
            concurrency=concurrency, info=self._model_info, downscale=_downscale_args(info),
        )  # fmt: skip
        return self._run_chunked(call, progress=progress, timeout=timeout)

    def detect_anomalies(
        self,
        images: Images,
        *,
        prompt_id: str | None = None,
        object_name: str | None = None,
        max_map_side: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: bool | None = None,
        timeout: Timeout | None = None,
    ) -> AnomalyResponse:
        """Anomaly score and pixel map per image, against a registered anomaly prompt
        (`prompt_id`: AnomalyCLIP) or zero-shot for an `object_name` (WinCLIP). Images are sent
        at full size so each map comes back at the image's own size
        (`results[i].anomaly_map()`); `promptserve.overlay` draws it over the image.

        Args:
            max_map_side: Return each map with its longer side at most this many pixels
                (aspect kept) instead of at the image's size; the server bounds the map
                pixels of one response (`limits.max_output_pixels`), so large photos need it.
            chunk_size: Images per request; longer lists are split as in `classify`.
            concurrency: Chunk requests in flight at once (worker threads), as in `classify`.
            progress: Show a tqdm bar named "anomaly"; by default only above
                PROGRESS_THRESHOLD images.
            timeout: Seconds per request, overriding the client's.

        Returns:
            One `AnomalyResponse` whose `results[i]` is `images[i]`, whichever chunk it went in.

        Raises:
            InvalidInput: Bad images, neither or both of prompt_id and object_name, or a
                prompt that is not an anomaly prompt.
            PromptNotFound: `prompt_id` is not registered.

        Example:
            >>> out = client.detect_anomalies(["bottle.png"], object_name="bottle")
            >>> out.results[0].score, out.results[0].anomaly_map().shape
            (0.93, (900, 900))
        """
        items, template = _anomaly_plan(images, prompt_id, object_name, max_map_side)
        call = _chunked(
            "anomaly", AnomalyResponse, _merge_indexed, items, template, chunk_size=chunk_size,
            concurrency=concurrency, info=self._model_info,
        )  # fmt: skip
        return self._run_chunked(call, progress=progress, timeout=timeout)

    def segment(
        self,
        images: Images,
        *,
        labels: Sequence[str | Sequence[str]] | None = None,
        prompt_id: str | None = None,
        method: str | None = None,
        templates: str | Sequence[str] | None = None,
        short_side: int | None = None,
        stride: int | None = None,
        prob_threshold: float = 0.0,
        return_scores: bool = False,
        chunk_size: int = 4,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: bool | None = None,
        timeout: Timeout | None = None,
    ) -> SegmentResponse:
        """A label map per image at its own size, over a vocabulary of free `labels` (each a
        name or a list of synonyms) or a registered text prompt's classes (`prompt_id`), with
        MaskCLIP, SCLIP or ClearCLIP (`method`; default: the server's first). Images are sent
        at full size; `results[i].labels()` indexes `response.labels`, and
        `promptserve.segment_overlay` colours it with a legend.

        Args:
            chunk_size: Images per request (small: full-size images make large bodies).
            concurrency: Chunk requests in flight at once (worker threads), as in `classify`.
            progress: Show a tqdm bar named "segment"; by default only above
                PROGRESS_THRESHOLD images.
            timeout: Seconds per request, overriding the client's.

        Returns:
            One `SegmentResponse` whose `results[i]` is `images[i]`, whichever chunk it went in.

        Raises:
            InvalidInput: Bad images, neither or both of labels and prompt_id, an empty or too
                large vocabulary, a method the server lacks, or an image above its size limit.
            PromptNotFound: `prompt_id` is not registered.

        Example:
            >>> out = client.segment("street.jpg", labels=["road", "car", ["person", "pedestrian"]])
            >>> out.labels, out.results[0].labels().shape
            (['road', 'car', 'person'], (720, 1280))
        """
        items, template = _segment_plan(
            images, labels=labels, prompt_id=prompt_id, method=method,
            templates=templates if isinstance(templates, (str, type(None))) else list(templates),
            short_side=short_side, stride=stride, prob_threshold=prob_threshold,
            return_scores=return_scores,
        )  # fmt: skip
        call = _chunked(
            "segment", SegmentResponse, _merge_indexed, items, template, chunk_size=chunk_size,
            concurrency=concurrency, info=self._model_info,
        )  # fmt: skip
        return self._run_chunked(call, progress=progress, timeout=timeout)

    def register_prompt(
        self, artifact: Artifact, *, prompt_id: str | None = None, timeout: Timeout | None = None
    ) -> PromptInfo:
        """Register a prompt artifact: a folder holding `manifest.json` [+ `prompt.safetensors`],
        or a `(manifest_dict, tensor_bytes_or_None)` tuple. `prompt_id` defaults server-side."""
        body = _register_body(artifact, prompt_id)
        return self._parse(
            self._request("POST", "/v1/prompts", body=body, timeout=timeout), PromptInfo
        )

    def list_prompts(self, *, timeout: Timeout | None = None) -> list[PromptInfo]:
        """All registered prompts."""
        return self._parse(self._request("GET", "/v1/prompts", timeout=timeout), PromptList).data

    def get_prompt(self, prompt_id: str, *, timeout: Timeout | None = None) -> PromptInfo:
        """One registered prompt; raises `PromptNotFound` if there is none by that id."""
        return self._parse(
            self._request("GET", _prompt_path(prompt_id), timeout=timeout), PromptInfo
        )

    def delete_prompt(self, prompt_id: str, *, timeout: Timeout | None = None) -> None:
        """Unregister a prompt; raises `PromptNotFound` if there is none by that id."""
        self._request("DELETE", _prompt_path(prompt_id), timeout=timeout)

    def model_info(self, *, timeout: Timeout | None = None) -> ModelInfo:
        """What the server serves (backbone, input geometry, limits); cached for `classify`."""
        info = self._parse(self._request("GET", "/v1/models", timeout=timeout), ModelInfo)
        self._model_info = info
        return info

    def health(self, *, timeout: Timeout | None = None) -> bool:
        """Whether the server is ready (`GET /readyz` is 200); False if unreachable. No retries."""
        try:
            request = self._build_request(self._http, "GET", "/readyz", timeout=timeout)
            return self._http.send(request).status_code == 200
        except httpx.TransportError as exc:
            log.debug("health: %r", exc)
            return False


class AsyncClient(AsyncRetrievalMixin, AsyncGenerationMixin, BaseClient):
    """Asynchronous client of a promptserve server; the methods of `Client`, awaitable.

    Args:
        base_url: Server URL; defaults to `$PROMPTSERVE_BASE_URL`, else `http://127.0.0.1:8000`.
        api_key: Sent as `Authorization: Bearer <key>`; defaults to `$PROMPTSERVE_API_KEY`.
        timeout: Seconds per request (or an `httpx.Timeout`); methods take `timeout=` too.
        max_retries: Retries after connection errors, 408, 429 and 5xx, after the server's
            Retry-After or else an exponential backoff (capped at MAX_RETRY_DELAY, 8 s). A
            Retry-After above MAX_RETRY_AFTER (60 s) is not waited for: the error is raised.
        http_client: An `httpx.AsyncClient` to send with. The SDK sets URL, headers and timeout
            per request, and does not close a client it was given.

    Example:
        >>> async with AsyncClient() as client:
        ...     out = await client.classify(images, prompt_id="coop-imagenet")
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.AsyncClient | None = None,
    ):
        super().__init__(base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        """Close the connection pool (unless it came in as `http_client`)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        timeout: Timeout | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """`Client._request`, awaited."""
        request = self._build_request(self._http, method, path, body=body, timeout=timeout)
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
                if stream and not response.is_success:
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
            except httpx.TransportError as exc:
                await asyncio.sleep(self._delay_after_error(request, attempt, exc))
            else:
                delay = self._delay_after_response(attempt, response)
                if delay is None:
                    return self._checked(response)
                await asyncio.sleep(delay)
            attempt += 1

    async def _run_chunked(
        self, call: _Chunked[M], *, progress: bool | None, timeout: Timeout | None
    ) -> M:
        """Send `call`'s chunks as tasks, at most `call.concurrency` in flight (a semaphore),
        and merge the answers. The first failing chunk's error is raised; the other tasks are
        cancelled."""
        semaphore = asyncio.Semaphore(call.concurrency)
        bar = call.progress_bar(progress)

        async def run(chunk: tuple[int, list[ImageInput]]) -> M:
            offset, part = chunk
            async with semaphore:
                # Encoding (PNG, base64) is CPU work: keep it off the event loop.
                body = await asyncio.to_thread(call.body, offset, part)
                response = await self._request("POST", call.path, body=body, timeout=timeout)
            bar.update(len(part))
            return self._parse(response, call.model)

        with bar:
            tasks = [asyncio.ensure_future(run(chunk)) for chunk in call.chunks]
            try:
                responses = await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                raise
        return call.merged(responses)

    async def classify(
        self,
        images: Images,
        *,
        prompt_id: str | None = None,
        labels: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
        top_k: int = 5,
        return_logits: bool = False,
        downscale: bool = True,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: bool | None = None,
        timeout: Timeout | None = None,
    ) -> ClassifyResponse:
        """`Client.classify`, awaitable; chunks run as tasks, at most `concurrency` at once."""
        items, template = _classify_plan(
            images, prompt_id=prompt_id, labels=labels, templates=templates, top_k=top_k,
            return_logits=return_logits,
        )  # fmt: skip
        info = (self._model_info or await self.model_info(timeout=timeout)) if downscale else None
        call = _chunked(
            "classify", ClassifyResponse, _merge, items, template, chunk_size=chunk_size,
            concurrency=concurrency, info=self._model_info, downscale=_downscale_args(info),
        )  # fmt: skip
        return await self._run_chunked(call, progress=progress, timeout=timeout)

    async def detect_anomalies(
        self,
        images: Images,
        *,
        prompt_id: str | None = None,
        object_name: str | None = None,
        max_map_side: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: bool | None = None,
        timeout: Timeout | None = None,
    ) -> AnomalyResponse:
        """`Client.detect_anomalies`, awaitable; chunks run as tasks, at most `concurrency` at
        once."""
        items, template = _anomaly_plan(images, prompt_id, object_name, max_map_side)
        call = _chunked(
            "anomaly", AnomalyResponse, _merge_indexed, items, template, chunk_size=chunk_size,
            concurrency=concurrency, info=self._model_info,
        )  # fmt: skip
        return await self._run_chunked(call, progress=progress, timeout=timeout)

    async def segment(
        self,
        images: Images,
        *,
        labels: Sequence[str | Sequence[str]] | None = None,
        prompt_id: str | None = None,
        method: str | None = None,
        templates: str | Sequence[str] | None = None,
        short_side: int | None = None,
        stride: int | None = None,
        prob_threshold: float = 0.0,
        return_scores: bool = False,
        chunk_size: int = 4,
        concurrency: int = DEFAULT_CONCURRENCY,
        progress: bool | None = None,
        timeout: Timeout | None = None,
    ) -> SegmentResponse:
        """`Client.segment`, awaitable; chunks run as tasks, at most `concurrency` at once."""
        items, template = _segment_plan(
            images, labels=labels, prompt_id=prompt_id, method=method,
            templates=templates if isinstance(templates, (str, type(None))) else list(templates),
            short_side=short_side, stride=stride, prob_threshold=prob_threshold,
            return_scores=return_scores,
        )  # fmt: skip
        call = _chunked(
            "segment", SegmentResponse, _merge_indexed, items, template, chunk_size=chunk_size,
            concurrency=concurrency, info=self._model_info,
        )  # fmt: skip
        return await self._run_chunked(call, progress=progress, timeout=timeout)

    async def register_prompt(
        self, artifact: Artifact, *, prompt_id: str | None = None, timeout: Timeout | None = None
    ) -> PromptInfo:
        """Register a prompt artifact: a folder holding `manifest.json` [+ `prompt.safetensors`],
        or a `(manifest_dict, tensor_bytes_or_None)` tuple. `prompt_id` defaults server-side."""
        body = _register_body(artifact, prompt_id)
        response = await self._request("POST", "/v1/prompts", body=body, timeout=timeout)
        return self._parse(response, PromptInfo)

    async def list_prompts(self, *, timeout: Timeout | None = None) -> list[PromptInfo]:
        """All registered prompts."""
        response = await self._request("GET", "/v1/prompts", timeout=timeout)
        return self._parse(response, PromptList).data

    async def get_prompt(self, prompt_id: str, *, timeout: Timeout | None = None) -> PromptInfo:
        """One registered prompt; raises `PromptNotFound` if there is none by that id."""
        response = await self._request("GET", _prompt_path(prompt_id), timeout=timeout)
        return self._parse(response, PromptInfo)

    async def delete_prompt(self, prompt_id: str, *, timeout: Timeout | None = None) -> None:
        """Unregister a prompt; raises `PromptNotFound` if there is none by that id."""
        await self._request("DELETE", _prompt_path(prompt_id), timeout=timeout)

    async def model_info(self, *, timeout: Timeout | None = None) -> ModelInfo:
        """What the server serves (backbone, input geometry, limits); cached for `classify`."""
        response = await self._request("GET", "/v1/models", timeout=timeout)
        self._model_info = self._parse(response, ModelInfo)
        return self._model_info

    async def health(self, *, timeout: Timeout | None = None) -> bool:
        """Whether the server is ready (`GET /readyz` is 200); False if unreachable. No retries."""
        try:
            request = self._build_request(self._http, "GET", "/readyz", timeout=timeout)
            return (await self._http.send(request)).status_code == 200
        except httpx.TransportError as exc:
            log.debug("health: %r", exc)
            return False
