"""Chunked calls of both clients against a real HTTP server: `detect_anomalies` and `segment`
split long inputs, run up to `concurrency` chunk requests at once, and merge the answers back
into input order; the progress bar names the call; errors of one chunk fail the call.

The server (`local_server.py`) decodes the images it is sent and answers from their pixels, so
a result that lands at the wrong position after merging shows up as a wrong value.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from local_server import LocalServer, running_server
from PIL import Image

import promptserve

LABELS = [["road", "street"], "car", "person"]


@pytest.fixture
def local() -> Iterator[LocalServer]:
    with running_server() as server:
        server.routes[("POST", "/v1/anomaly")] = _anomaly_route
        server.routes[("POST", "/v1/segment")] = _segment_route
        yield server


def _value(i: int) -> int:
    return 10 * i + 5


def _size(i: int) -> tuple[int, int]:
    """(height, width) of test image i: every image a different size."""
    return 6 + i, 8 + 2 * i


def _images(n: int) -> list[np.ndarray]:
    """Image i: uniform grey `_value(i)`, of size `_size(i)` (the SDK sends arrays as PNG)."""
    return [np.full((*_size(i), 3), _value(i), np.uint8) for i in range(n)]


# -- the server side: answers computed from the decoded pixels -----------------------------------


def _decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _anomaly_route(body: dict[str, Any]) -> tuple[int, Any]:
    results = []
    for j, b64 in enumerate(body["images"]):
        pixels = _decode(b64)
        score = float(pixels[0, 0, 0]) / 255.0
        amap = np.full(pixels.shape[:2], score, dtype="<f2")
        results.append(
            {
                "index": j,  # position within this request, as a real server answers
                "score": score,
                "map": {
                    "shape": list(amap.shape),
                    "dtype": "float16",
                    "data": base64.b64encode(amap.tobytes()).decode(),
                },
            }
        )
    return 200, {
        "prompt_id": body.get("prompt_id"),
        "object_name": body.get("object_name"),
        "method": "winclip" if body.get("object_name") else "anomalyclip",
        "backbone": "tiny",
        "results": results,
    }


def _segment_route(body: dict[str, Any]) -> tuple[int, Any]:
    labels = [g if isinstance(g, str) else g[0] for g in body["labels"]]
    results = []
    for j, b64 in enumerate(body["images"]):
        pixels = _decode(b64)
        if pixels[0, 0, 0] == _value(13):  # a poisoned image, for the error test
            return 400, {"error": {"type": "invalid_input", "message": "bad image 13"}}
        label = (int(pixels[0, 0, 0]) // 10) % len(labels)
        buf = io.BytesIO()
        Image.fromarray(np.full(pixels.shape[:2], label, np.uint8), mode="L").save(buf, "PNG")
        results.append(
            {
                "index": j,
                "label_map": {
                    "shape": list(pixels.shape[:2]),
                    "data": base64.b64encode(buf.getvalue()).decode(),
                },
            }
        )
    return 200, {
        "method": body.get("method") or "sclip",
        "backbone": "tiny",
        "labels": labels,
        "results": results,
    }


# -- calling either client the same way ----------------------------------------------------------


def _call(kind: str, task: str, url: str, images: list[np.ndarray], **kwargs: Any) -> Any:
    """`Client.<task>` or `AsyncClient.<task>` (run to completion) with the same arguments."""
    if task == "anomaly":
        method, kwargs = "detect_anomalies", {"object_name": "bottle", **kwargs}
    else:
        method, kwargs = "segment", {"labels": LABELS, **kwargs}
    if kind == "sync":
        with promptserve.Client(url, max_retries=0) as client:
            return getattr(client, method)(images, **kwargs)

    async def main() -> Any:
        async with promptserve.AsyncClient(url, max_retries=0) as client:
            return await getattr(client, method)(images, **kwargs)

    return asyncio.run(main())


def _check_merged(task: str, out: Any, n: int) -> None:
    """Every result at its input position, with the values image i itself gives."""
    assert [r.index for r in out.results] == list(range(n))
    for i, r in enumerate(out.results):
        if task == "anomaly":
            assert r.score == pytest.approx(_value(i) / 255.0, abs=1e-6)
            amap = r.anomaly_map()
            assert amap.shape == _size(i)
            assert np.allclose(amap, _value(i) / 255.0, atol=1e-3)  # float16 on the wire
        else:
            labels = r.labels()
            assert labels.shape == _size(i)
            assert (labels == (_value(i) // 10) % 3).all()


# -- concurrency, measured by the server ---------------------------------------------------------


@pytest.mark.parametrize("task", ["anomaly", "segment"])
@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("concurrency", [1, 3])
def test_chunks_run_up_to_concurrency_at_once(local, kind, task, concurrency):
    local.delay = 0.2  # long enough for the chunks in flight together to overlap
    out = _call(kind, task, local.url, _images(5), chunk_size=1, concurrency=concurrency)
    assert len(local.requests) == 5
    assert local.max_in_flight == concurrency
    _check_merged(task, out, 5)


# -- chunking and merging ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_detect_anomalies_chunks_and_merges_in_input_order(local, kind):
    out = _call(kind, "anomaly", local.url, _images(10), chunk_size=3, concurrency=2)
    bodies = [body for _, path, body in local.requests if path == "/v1/anomaly"]
    assert sorted(len(b["images"]) for b in bodies) == [1, 3, 3, 3]
    assert all(b["object_name"] == "bottle" and b["prompt_id"] is None for b in bodies)
    assert out.method == "winclip" and out.object_name == "bottle" and out.backbone == "tiny"
    _check_merged("anomaly", out, 10)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_segment_chunks_and_merges_in_input_order(local, kind):
    out = _call(
        kind, "segment", local.url, _images(9), chunk_size=4, method="clearclip", stride=112
    )
    bodies = [body for _, path, body in local.requests if path == "/v1/segment"]
    assert sorted(len(b["images"]) for b in bodies) == [1, 4, 4]
    for b in bodies:
        assert b["labels"] == LABELS and b["method"] == "clearclip" and b["stride"] == 112
    assert out.labels == ["road", "car", "person"] and out.method == "clearclip"
    _check_merged("segment", out, 9)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_one_failing_chunk_fails_the_call(local, kind):
    with pytest.raises(promptserve.InvalidInput, match="bad image 13") as info:
        _call(kind, "segment", local.url, _images(16), chunk_size=2, concurrency=4)
    assert info.value.status_code == 400


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("task", ["anomaly", "segment"])
def test_checks_arguments_before_sending(local, kind, task):
    with pytest.raises(promptserve.InvalidInput, match="concurrency"):
        _call(kind, task, local.url, _images(2), concurrency=0)
    with pytest.raises(promptserve.InvalidInput, match="empty"):
        _call(kind, task, local.url, [])
    assert local.requests == []


# -- the progress bar names the call -------------------------------------------------------------


def _mock_answers(request: httpx.Request) -> httpx.Response:
    import json

    body = json.loads(request.content)
    n = len(body["images"])
    if request.url.path == "/v1/classify":
        top = [{"label": "cat", "index": 0, "score": 1.0, "logit": 9.0}]
        results = [{"index": j, "top": top} for j in range(n)]
        answer = {"prompt_id": None, "backbone": "tiny", "labels": ["cat"], "results": results}
        return httpx.Response(200, json=answer)
    route = _anomaly_route if request.url.path == "/v1/anomaly" else _segment_route
    status, answer = route(body)
    return httpx.Response(status, json=answer)


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("method", "kwargs", "name"),
    [
        ("classify", {"labels": ["cat"], "downscale": False}, "classify"),
        ("detect_anomalies", {"object_name": "bottle"}, "anomaly"),
        ("segment", {"labels": LABELS}, "segment"),
    ],
)
def test_progress_bar_names_the_call(capsys, kind, method, kwargs, name):
    images = _images(3)
    if kind == "sync":
        http = httpx.Client(transport=httpx.MockTransport(_mock_answers))
        with promptserve.Client("http://promptserve.test", http_client=http) as client:
            getattr(client, method)(images, progress=True, chunk_size=1, **kwargs)
    else:

        async def main() -> None:
            http = httpx.AsyncClient(transport=httpx.MockTransport(_mock_answers))
            async with promptserve.AsyncClient("http://promptserve.test", http_client=http) as c:
                await getattr(c, method)(images, progress=True, chunk_size=1, **kwargs)

        asyncio.run(main())
    bar = capsys.readouterr().err
    assert "3/3" in bar  # the bar was drawn and completed
    lines = [line for line in bar.replace("\r", "\n").splitlines() if "3/3" in line]
    assert lines and all(line.startswith(f"{name}:") for line in lines), bar
