"""Client input the review answered with a 5xx (issue 14), each sent as an attacker would:
every one must be a 4xx with the JSON error body, and a good request right after succeeds."""

from __future__ import annotations

import base64

import httpx
import pytest
from conftest import make_image

JPEG = make_image(81, (64, 48))
B64 = base64.b64encode(JPEG).decode()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server["base_url"], timeout=60) as c:
        yield c


def _refused(http: httpx.Client, resp: httpx.Response, status: int = 400) -> dict:
    """A 4xx with the JSON error body, short and free of internals; the server still serves."""
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert error["type"] and 10 < len(error["message"]) < 600, error
    assert " at 0x" not in error["message"]  # no heap addresses
    ok = http.post("/v1/classify", json={"images": [B64], "labels": ["cat", "dog"]})
    assert ok.status_code == 200, ok.text
    return error


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("prompt_id", ["café", "ünï", "abc%0A"])
def test_odd_prompt_ids_in_the_path(http, method, prompt_id):
    resp = http.request(method, f"/v1/prompts/{prompt_id}")
    assert "prompt_id" in _refused(http, resp)["message"]


@pytest.mark.parametrize("prompt_id", ["café", "abc\n", "x" * 100_000])
def test_odd_prompt_ids_in_a_body(http, prompt_id):
    body = {"images": [B64], "prompt_id": prompt_id}
    error = _refused(http, http.post("/v1/classify", json=body))
    assert error["param"] == "prompt_id"


@pytest.mark.parametrize("template", ["a {} {0}", "{x}", "{", "{.__class__}", "a {0}", "}{}"])
def test_templates_str_format_would_interpret(http, template):
    body = {"images": [B64], "labels": ["cat"], "templates": [template]}
    assert _refused(http, http.post("/v1/classify", json=body))["param"] == "templates"
    seg = {"images": [B64], "labels": ["cat"], "templates": [template]}
    assert _refused(http, http.post("/v1/segment", json=seg))["param"] == "templates"


def test_empty_template_list_is_refused_on_every_route(http):
    for route in ("/v1/classify", "/v1/segment"):
        body = {"images": [B64], "labels": ["cat"], "templates": []}
        assert _refused(http, http.post(route, json=body))["param"] == "templates"


def test_booleans_are_not_numbers(http):
    body = {"images": [B64], "labels": ["cat"], "top_k": True}
    assert _refused(http, http.post("/v1/classify", json=body))["param"] == "top_k"


def test_content_type_must_be_json_or_multipart(http):
    resp = http.post(
        "/v1/classify",
        content=b'{"images": [], "labels": ["a"]}',
        headers={"content-type": "application/jsonfoo"},
    )
    assert "content type" in _refused(http, resp)["message"]


def _multipart(http, route: str, **fields) -> httpx.Response:
    files = [("images", ("a.jpg", JPEG, "image/jpeg"))]
    return http.post(route, files=files, data=fields)


@pytest.mark.parametrize("labels", ["[not json", "[" * 3000, "[1, 2]", '["a", ["b"]]'])
def test_multipart_list_fields_that_are_not_lists_of_strings(http, labels):
    """A field starting with `[` is a JSON list of names (any other text is one name)."""
    resp = _multipart(http, "/v1/classify", labels=labels)
    assert _refused(http, resp)["param"].startswith("labels")


def test_multipart_file_where_a_field_belongs(http):
    files = [
        ("images", ("a.jpg", JPEG, "image/jpeg")),
        ("prompt_id", ("p.txt", b"abc", "text/plain")),
        ("top_k", ("k.txt", b"3", "text/plain")),
    ]
    resp = http.post("/v1/classify", files=files, data={"labels": '["cat"]'})
    assert _refused(http, resp)["param"] in ("prompt_id", "top_k")


def test_multipart_without_boundary_or_with_garbage(http):
    for content_type, body in [
        ("multipart/form-data", b"--x\r\n"),
        ("multipart/form-data; boundary=xyz", b"garbage without parts"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: broken\r\n\r\n"),
    ]:
        resp = http.post("/v1/classify", content=body, headers={"content-type": content_type})
        _refused(http, resp)


def test_multipart_with_too_many_files_or_fields(http):
    files = [("images", (f"{i}.jpg", JPEG, "image/jpeg")) for i in range(40)]
    resp = http.post("/v1/classify", files=files, data={"labels": '["cat"]'})
    assert "images" in _refused(http, resp, 400)["message"]
    fields = {f"f{i}": "x" for i in range(2000)}  # the test config allows 50 labels
    resp = http.post("/v1/classify", files=[("images", ("a.jpg", JPEG, "image/jpeg"))], data=fields)
    _refused(http, resp)


def test_multipart_anomaly_reads_object_name(http):
    resp = _multipart(http, "/v1/anomaly", object_name="bottle")
    assert resp.status_code == 200, resp.text
    assert resp.json()["object_name"] == "bottle"


def test_label_and_template_size_is_bounded(http):
    """Labels × templates are encoded per request: a 16,000-letter label (tokenizing it took
    seconds) or 1,000 templates are refused before any text work."""
    for route in ("/v1/classify", "/v1/segment"):
        huge = {"images": [B64], "labels": ["cat", "x" * 16_000]}
        assert _refused(http, http.post(route, json=huge))["param"] == "labels"
        many = {"images": [B64], "labels": ["cat"], "templates": ["a {}."] * 1000}
        assert _refused(http, http.post(route, json=many))["param"] == "templates"
        long = {"images": [B64], "labels": ["cat"], "templates": ["a " * 400 + "{}"]}
        assert _refused(http, http.post(route, json=long))["param"] == "templates"


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buf, format="PNG")
    return buf.getvalue()  # a flat colour: a few kB on the wire, width x height decoded


def test_anomaly_maps_are_bounded_in_pixels(http):
    """A 36 MP photo's map at the original size is 72 MB of float16 (+ base64): over the
    response bound unless the client asks for smaller maps, which then come back at most
    `max_map_side` on the longer side."""
    big = base64.b64encode(_png(6000, 6000)).decode()
    body = {"images": [big], "object_name": "bottle"}
    assert _refused(http, http.post("/v1/anomaly", json=body))["param"] == "max_map_side"
    small = http.post("/v1/anomaly", json={**body, "max_map_side": 300})
    assert small.status_code == 200, small.text[:300]
    assert small.json()["results"][0]["map"]["shape"] == [300, 300]
    wide = {"images": [base64.b64encode(_png(400, 100)).decode()], "object_name": "bottle"}
    shaped = http.post("/v1/anomaly", json={**wide, "max_map_side": 200}).json()
    assert shaped["results"][0]["map"]["shape"] == [50, 200]  # aspect kept
    plain = http.post("/v1/anomaly", json=wide).json()
    assert plain["results"][0]["map"]["shape"] == [100, 400]  # default: the original size
    resp = http.post(
        "/v1/anomaly", files=[("images", ("a.png", _png(400, 100), "image/png"))],
        data={"object_name": "bottle", "max_map_side": "40"},
    )  # fmt: skip
    assert resp.json()["results"][0]["map"]["shape"] == [10, 40]


def test_segmentation_windows_are_bounded(http):
    """`stride: 1, short_side: 2048` asked for 467 GiB; it is refused before decoding, and a
    request whose exact window count is over the limit before any window is cut."""
    body = {"images": [B64], "labels": ["cat", "dog"], "method": "sclip"}
    for extra in ({"stride": 1, "short_side": 2048}, {"stride": 8, "short_side": 448}):
        error = _refused(http, http.post("/v1/segment", json={**body, **extra}))
        assert error["param"] == "stride" and "windows" in error["message"]
    ok = http.post("/v1/segment", json={**body, "stride": 16, "short_side": 448})
    assert ok.status_code == 200, ok.text[:300]


def test_chunked_multipart_is_held_to_the_body_limit(http):
    """Each part was bounded, the body was not: a chunked upload (no Content-Length) of two
    parts under the part limit but over the body limit (4 MiB in the test config) was read
    whole."""
    part = b"\xff" * (3 << 20)
    boundary = "b0undary"

    def chunks():
        for i in range(2):
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
                f'filename="{i}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            for j in range(0, len(part), 1 << 16):
                yield part[j : j + (1 << 16)]
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    resp = http.post(
        "/v1/classify", content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    assert "content-length" not in resp.request.headers
    assert "limit" in _refused(http, resp, 413)["message"]
