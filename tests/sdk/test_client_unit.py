"""SDK pieces that need no server: error mapping, retry policy, chunking, image inputs."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

import promptserve
from promptserve import _base, _client
from promptserve._base import _merge, _retry_delay, _should_retry, _split
from promptserve._client import _classify_plan, _encode_images, _register_body
from promptserve._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER, MAX_RETRY_DELAY
from promptserve._exceptions import _make_status_error
from promptserve.types import ClassifyResponse, ImageClassification, LabelScore, ModelInfo

URL = "http://promptserve.test"


def _response(status: int, error_type: str | None = None, **kwargs) -> httpx.Response:
    if error_type is not None:
        kwargs["json"] = {"error": {"type": error_type, "message": "it broke", "param": "images"}}
    return httpx.Response(status, request=httpx.Request("POST", URL + "/v1/classify"), **kwargs)


# -- exception mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "cls"),
    [
        (400, "invalid_input", promptserve.InvalidInput),
        (413, "payload_too_large", promptserve.InvalidInput),
        (415, None, promptserve.InvalidInput),
        (422, None, promptserve.InvalidInput),
        (409, "backbone_mismatch", promptserve.BackboneMismatch),
        (400, "backbone_mismatch", promptserve.BackboneMismatch),
        (401, "authentication_error", promptserve.AuthError),
        (403, "permission_denied", promptserve.AuthError),
        (404, "prompt_not_found", promptserve.PromptNotFound),
        (404, None, promptserve.NotFoundError),
        (503, "overloaded", promptserve.ServerOverloaded),
        (503, None, promptserve.ServerOverloaded),
        (500, "internal_error", promptserve.InternalServerError),
        (502, None, promptserve.InternalServerError),
        (418, None, promptserve.APIStatusError),
    ],
)
def test_status_error_classes(status, error_type, cls):
    err = _make_status_error(_response(status, error_type))
    assert type(err) is cls
    assert isinstance(err, promptserve.APIStatusError)
    assert isinstance(err, promptserve.PromptServeError)
    assert err.status_code == status
    assert err.error_type == error_type
    assert err.request is not None and err.request.url == URL + "/v1/classify"
    if error_type is not None:
        assert err.message == "it broke"
        assert err.param == "images"
        assert err.body == {"error": {"type": error_type, "message": "it broke", "param": "images"}}


def test_backbone_mismatch_is_invalid_input():
    assert issubclass(promptserve.BackboneMismatch, promptserve.InvalidInput)
    assert issubclass(promptserve.APITimeoutError, promptserve.APIConnectionError)
    assert issubclass(promptserve.APIConnectionError, promptserve.APIError)


def test_status_error_falls_back_to_text_and_request_id():
    response = _response(502, text="<html>bad gateway</html>", headers={"x-request-id": "abc123"})
    err = _make_status_error(response)
    assert err.message == "<html>bad gateway</html>"
    assert err.request_id == "abc123"
    assert err.error_type is None
    assert "abc123" in str(err) and "502" in str(err)


def test_status_error_without_request():
    err = _make_status_error(httpx.Response(404, json={"detail": "Not Found"}))
    assert type(err) is promptserve.NotFoundError  # a wrong route is not a missing prompt
    assert err.request is None and err.request_id is None


@pytest.mark.parametrize(("header", "expected"), [("3", 3.0), ("0.5", 0.5), ("-2", 0.0)])
def test_overloaded_retry_after_seconds(header, expected):
    err = _make_status_error(_response(503, "overloaded", headers={"Retry-After": header}))
    assert isinstance(err, promptserve.ServerOverloaded)
    assert err.retry_after == expected


def test_overloaded_retry_after_http_date_and_garbage():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    err = _make_status_error(_response(503, headers={"Retry-After": when}))
    assert 25 <= err.retry_after <= 31
    assert _make_status_error(_response(503, headers={"Retry-After": "soon"})).retry_after is None
    assert _make_status_error(_response(503)).retry_after is None


def test_client_side_invalid_input_has_no_status():
    err = promptserve.InvalidInput("bad", param="images")
    assert err.status_code is None and err.response is None and err.request is None
    assert str(err) == "bad"


# -- retry policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "retry"),
    [
        (408, {}, True),
        (429, {}, True),
        (500, {}, True),
        (502, {}, True),
        (503, {}, True),
        (400, {}, False),
        (404, {}, False),
        (409, {}, False),
        (503, {"x-should-retry": "false"}, False),
        (400, {"x-should-retry": "true"}, True),
    ],
)
def test_should_retry(status, headers, retry):
    assert _should_retry(_response(status, headers=headers)) is retry


def test_retry_delay_obeys_retry_after_beyond_the_backoff_cap():
    """MAX_RETRY_DELAY caps the client's own backoff only: the server's Retry-After is the wait,
    even above it (whether to wait at all is `_delay_after_response`'s call, tested below)."""
    assert _retry_delay(0, _response(503, headers={"Retry-After": "2"})) == 2.0
    assert _retry_delay(3, _response(503, headers={"Retry-After": "0"})) == 0.0
    assert _retry_delay(0, _response(503, headers={"Retry-After": "30"})) == 30.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25.0 <= _retry_delay(0, _response(429, headers={"Retry-After": when})) <= 31.0


def test_retry_delay_backoff_grows_with_jitter_and_caps(monkeypatch):
    for attempt in range(3):
        nominal = INITIAL_RETRY_DELAY * 2**attempt
        delays = [_retry_delay(attempt) for _ in range(50)]
        assert all(0.75 * nominal <= d <= nominal for d in delays)
    monkeypatch.setattr(_base.random, "random", lambda: 0.0)
    assert [_retry_delay(a) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert _retry_delay(40) == MAX_RETRY_DELAY


# -- transport loop (httpx.MockTransport) --------------------------------------------------------


_MODEL_INFO = {
    "backbone": "ViT-B-16",
    "embed_dim": 512,
    "engine": "onnxruntime",
    "image": {
        "size": 224,
        "interpolation": "bicubic",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
    },
    "max_images_per_request": 64,
    "max_body_bytes": 1 << 26,
    "tasks": ["classify"],
}


def _flaky(responses: list[httpx.Response | Exception]):
    """A handler answering `responses` in turn, recording the requests it saw."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = responses[min(len(seen), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def _overloaded() -> httpx.Response:
    body = {"error": {"type": "overloaded", "message": "busy", "param": None}}
    return httpx.Response(503, json=body, headers={"Retry-After": "0"})


def test_sync_retries_503_then_succeeds():
    handler, seen = _flaky([_overloaded(), _overloaded(), httpx.Response(200, json=_MODEL_INFO)])
    http = httpx.Client(transport=httpx.MockTransport(handler))
    with promptserve.Client(URL, api_key="sk-test", http_client=http) as client:
        info = client.model_info()
    assert info.image.size == 224 and len(seen) == 3
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert seen[0].headers["user-agent"] == f"promptserve-python/{promptserve.__version__}"
    assert str(seen[0].url) == URL + "/v1/models"


def test_sync_gives_up_after_max_retries():
    handler, seen = _flaky([_overloaded()])
    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = promptserve.Client(URL, max_retries=2, http_client=http)
    with pytest.raises(promptserve.ServerOverloaded) as info:
        client.model_info()
    assert len(seen) == 3 and info.value.retry_after == 0.0


def test_sync_does_not_retry_400():
    body = {"error": {"type": "invalid_input", "message": "no", "param": "top_k"}}
    handler, seen = _flaky([httpx.Response(400, json=body)])
    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = promptserve.Client(URL, http_client=http)
    with pytest.raises(promptserve.InvalidInput, match="no") as info:
        client.list_prompts()
    assert len(seen) == 1 and info.value.param == "top_k"


def test_sync_connection_error_after_retries(monkeypatch):
    monkeypatch.setattr(_base, "INITIAL_RETRY_DELAY", 0.0)
    handler, seen = _flaky([httpx.ConnectError("refused")])
    http = httpx.Client(transport=httpx.MockTransport(handler))
    with promptserve.Client(URL, max_retries=2, http_client=http) as client:
        with pytest.raises(promptserve.APIConnectionError) as info:
            client.model_info()
        assert client.health() is False
    assert not isinstance(info.value, promptserve.APITimeoutError)
    assert len(seen) == 3 + 1  # three tries, then one health probe without retries


def test_sync_timeout_maps_to_api_timeout_error(monkeypatch):
    monkeypatch.setattr(_base, "INITIAL_RETRY_DELAY", 0.0)
    handler, seen = _flaky([httpx.ReadTimeout("slow")])
    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = promptserve.Client(URL, max_retries=1, http_client=http)
    with pytest.raises(promptserve.APITimeoutError):
        client.model_info()
    assert len(seen) == 2


def test_async_retries_503_then_succeeds():
    handler, seen = _flaky([_overloaded(), _overloaded(), httpx.Response(200, json=_MODEL_INFO)])

    async def main():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with promptserve.AsyncClient(URL, http_client=http) as client:
            return await client.model_info()

    assert asyncio.run(main()).backbone == "ViT-B-16" and len(seen) == 3


def _sleeps(monkeypatch) -> list[float]:
    """Record the client's sleeps between retries instead of sleeping them. `time` and
    `asyncio` are process-wide modules: sleeps of other threads (event loops of Ray or the
    triton engine, left by other tests) still sleep, and are not recorded."""
    import threading

    slept: list[float] = []
    me = threading.get_ident()
    real_sleep, real_asleep = _client.time.sleep, _client.asyncio.sleep

    def sleep(delay: float) -> None:
        if threading.get_ident() != me:
            return real_sleep(delay)
        slept.append(delay)

    async def asleep(delay: float, *args, **kwargs):
        if threading.get_ident() != me:
            return await real_asleep(delay, *args, **kwargs)
        slept.append(delay)

    monkeypatch.setattr(_client.time, "sleep", sleep)
    monkeypatch.setattr(_client.asyncio, "sleep", asleep)
    return slept


def _busy(retry_after: str) -> httpx.Response:
    body = {"error": {"type": "overloaded", "message": "busy", "param": None}}
    return httpx.Response(503, json=body, headers={"Retry-After": retry_after})


def _model_info_with(kind: str, handler) -> ModelInfo:
    if kind == "sync":
        http = httpx.Client(transport=httpx.MockTransport(handler))
        with promptserve.Client(URL, max_retries=2, http_client=http) as client:
            return client.model_info()

    async def main():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with promptserve.AsyncClient(URL, max_retries=2, http_client=http) as client:
            return await client.model_info()

    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("retry_after", ["30", "60"])
def test_waits_as_long_as_retry_after_says(monkeypatch, kind, retry_after):
    """A server asking for 30 s is not hit again after MAX_RETRY_DELAY (8 s) but after 30 s."""
    slept = _sleeps(monkeypatch)
    handler, seen = _flaky([_busy(retry_after), httpx.Response(200, json=_MODEL_INFO)])
    assert _model_info_with(kind, handler).backbone == "ViT-B-16"
    (waited,) = slept  # what the server asked, plus up to 25 % jitter (never earlier)
    assert float(retry_after) <= waited <= 1.25 * float(retry_after) and len(seen) == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_retry_after_beyond_max_retry_after_raises_at_once(monkeypatch, kind):
    """Past MAX_RETRY_AFTER (60 s, documented) the client neither sleeps for an hour nor hits
    the server early: it raises, and `retry_after` tells the caller when to come back."""
    assert MAX_RETRY_AFTER == 60.0
    slept = _sleeps(monkeypatch)
    handler, seen = _flaky([_busy("61"), httpx.Response(200, json=_MODEL_INFO)])
    with pytest.raises(promptserve.ServerOverloaded) as info:
        _model_info_with(kind, handler)
    assert slept == [] and len(seen) == 1
    assert info.value.retry_after == 61.0 and info.value.status_code == 503


def test_retry_after_still_counts_against_max_retries(monkeypatch):
    slept = _sleeps(monkeypatch)
    handler, seen = _flaky([_busy("20")])
    with pytest.raises(promptserve.ServerOverloaded):
        _model_info_with("sync", handler)
    assert len(slept) == 2 and all(20.0 <= w <= 25.0 for w in slept) and len(seen) == 3


def test_async_connection_error_after_retries(monkeypatch):
    monkeypatch.setattr(_base, "INITIAL_RETRY_DELAY", 0.0)
    handler, seen = _flaky([httpx.ConnectError("refused")])

    async def main():
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with promptserve.AsyncClient(URL, max_retries=2, http_client=http) as client:
            await client.list_prompts()

    with pytest.raises(promptserve.APIConnectionError):
        asyncio.run(main())
    assert len(seen) == 3


# -- configuration -------------------------------------------------------------------------------


def test_env_fallbacks(monkeypatch):
    monkeypatch.setenv("PROMPTSERVE_BASE_URL", "http://elsewhere:9000/")
    monkeypatch.setenv("PROMPTSERVE_API_KEY", "sk-env")
    with promptserve.Client() as client:
        assert client.base_url == "http://elsewhere:9000" and client.api_key == "sk-env"
    monkeypatch.delenv("PROMPTSERVE_BASE_URL")
    monkeypatch.delenv("PROMPTSERVE_API_KEY")
    with promptserve.Client() as client:
        assert client.base_url == "http://127.0.0.1:8000" and client.api_key is None
        assert "authorization" not in {k.lower() for k in client._headers()}


# -- chunking ------------------------------------------------------------------------------------


def test_split_keeps_order_and_offsets():
    chunks = _split(list(range(70)), 32)
    assert [offset for offset, _ in chunks] == [0, 32, 64]
    assert [len(part) for _, part in chunks] == [32, 32, 6]
    assert [x for _, part in chunks for x in part] == list(range(70))
    assert _split(["a"], 32) == [(0, ["a"])]


def _chunk_response(n: int, labels=("cat", "dog")) -> ClassifyResponse:
    results = [
        ImageClassification(index=i, top=[LabelScore(label="cat", index=0, score=1.0, logit=1.0)])
        for i in range(n)
    ]
    return ClassifyResponse(prompt_id=None, backbone="b", labels=list(labels), results=results)


def test_merge_renumbers_to_global_input_positions():
    chunks = _split(list(range(70)), 32)
    merged = _merge([_chunk_response(len(p)) for _, p in chunks], [o for o, _ in chunks])
    assert [r.index for r in merged.results] == list(range(70))
    assert merged.labels == ["cat", "dog"] and merged.backbone == "b"


def test_merge_refuses_inconsistent_class_lists():
    with pytest.raises(promptserve.APIError, match="class lists"):
        _merge([_chunk_response(2), _chunk_response(2, labels=("x",))], [0, 2])


# -- client-side argument checks -----------------------------------------------------------------


def test_classify_plan_checks_arguments():
    items, template = _classify_plan("a.jpg", prompt_id="p", labels=None, top_k=3)
    assert items == ["a.jpg"] and template.prompt_id == "p" and template.top_k == 3
    batch = np.zeros((5, 8, 8, 3), np.uint8)
    assert len(_classify_plan(batch, prompt_id="p", labels=None)[0]) == 5
    with pytest.raises(promptserve.InvalidInput, match="empty"):
        _classify_plan([], prompt_id="p", labels=None)
    with pytest.raises(promptserve.InvalidInput, match="exactly one"):
        _classify_plan(["a.jpg"], prompt_id="p", labels=["cat"])
    with pytest.raises(promptserve.InvalidInput, match="exactly one"):
        _classify_plan(["a.jpg"], prompt_id=None, labels=None)
    with pytest.raises(promptserve.InvalidInput, match="labels"):
        _classify_plan(["a.jpg"], prompt_id=None, labels="cat")
    with pytest.raises(promptserve.InvalidInput) as info:
        _classify_plan(["a.jpg"], prompt_id="p", labels=None, top_k=0)
    assert info.value.param == "top_k" and info.value.status_code is None


def test_client_checks_before_sending():
    def handler(request):  # pragma: no cover - must not be reached
        raise AssertionError("sent a request")

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with promptserve.Client(URL, http_client=http) as client:
        with pytest.raises(promptserve.InvalidInput):
            client.classify([], labels=["cat"], downscale=False)
        with pytest.raises(promptserve.InvalidInput):
            client.classify([object()], labels=["cat"], downscale=False)


def test_register_body_from_folder_and_tuple(tmp_path):
    (tmp_path / "manifest.json").write_text('{"method": "coop", "classnames": ["a"]}')
    body = _register_body(tmp_path, "my-prompt")
    assert body.manifest["method"] == "coop" and body.tensors is None
    (tmp_path / "prompt.safetensors").write_bytes(b"\x00\x01")
    assert base64.b64decode(_register_body(str(tmp_path), None).tensors) == b"\x00\x01"
    assert _register_body(({"method": "templates"}, None), None).tensors is None
    with pytest.raises(promptserve.InvalidInput, match="manifest"):
        _register_body(tmp_path / "missing", None)
    with pytest.raises(promptserve.InvalidInput) as info:
        _register_body(({"method": "coop"}, None), "bad id/../")
    assert info.value.param == "prompt_id"


# -- image inputs --------------------------------------------------------------------------------


def _decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def _jpeg(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def test_image_inputs_of_every_kind(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(_jpeg())
    rgb = np.full((30, 40, 3), 7, np.uint8)
    inputs = [
        path,
        str(path),
        _jpeg(),
        Image.new("RGB", (40, 30)),
        rgb,
        np.zeros((30, 40), np.uint8),
        np.zeros((30, 40, 4), np.uint8),
    ]
    encoded = _encode_images(inputs, 0, {})
    assert base64.b64decode(encoded[0]) == path.read_bytes()  # files go as they are
    assert base64.b64decode(encoded[2]) == _jpeg()
    for b64 in encoded:
        assert _decode(b64).size == (40, 30)
    assert _decode(encoded[4]).format == "PNG"
    assert np.array_equal(np.asarray(_decode(encoded[4])), rgb)  # lossless


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((30, 40, 3), np.float32),
        np.zeros((30, 40, 2), np.uint8),
        np.zeros(5, np.uint8),
        12,
        b"not an image",
    ],
)
def test_bad_image_inputs_raise_invalid_input(bad):
    with pytest.raises(promptserve.InvalidInput) as info:
        # b"not an image" only fails when decoded, i.e. when downscaling
        _encode_images([bad], 7, {"downscale_to": 16, "interpolation": "bicubic"})
    assert info.value.param == "images[7]"


def test_missing_file_raises_invalid_input(tmp_path):
    with pytest.raises(promptserve.InvalidInput, match="images\\[0\\]"):
        _encode_images([tmp_path / "nope.jpg"], 0, {})


@pytest.mark.parametrize("make", [lambda: _jpeg((400, 300)), lambda: Image.new("RGB", (300, 400))])
def test_downscale_to_model_size_as_png(make):
    (b64,) = _encode_images([make()], 0, {"downscale_to": 224, "interpolation": "bicubic"})
    img = _decode(b64)
    assert img.format == "PNG" and min(img.size) == 224
    assert max(img.size) == int(224 * 400 / 300)


def test_downscale_leaves_small_files_alone():
    small = _jpeg((100, 80))
    (b64,) = _encode_images([small], 0, {"downscale_to": 224, "interpolation": "bicubic"})
    assert base64.b64decode(b64) == small


def test_import_pulls_in_no_heavy_dependencies():
    import subprocess
    import sys

    code = (
        "import promptserve, sys; "
        "print([m for m in ('torch', 'ray', 'onnxruntime', 'fastapi') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
