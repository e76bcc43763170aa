"""Every bad request gets a typed 4xx JSON error a person can act on, and the server keeps
serving; overload gets 503 with Retry-After; API keys are enforced."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import json
import time

import httpx
import numpy as np
import pytest
from conftest import API_KEY

from promptserve import AuthError, BackboneMismatch, Client, InvalidInput, PromptNotFound
from promptserve.models.artifacts import PromptArtifact
from promptserve.models.clip.artifacts import ClipArtifactManifest
from promptserve.models.clip.export.importers.templates import build_templates
from promptserve.serving.store import PromptStore


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server["base_url"], timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def good_prompt(server, tiny_spec, tmp_path_factory):
    art = build_templates(["cat", "dog"], backbone_id=tiny_spec.id, templates=["a photo of a {}."])
    with Client(server["base_url"]) as c:
        return c.register_prompt(
            art.save(tmp_path_factory.mktemp("bad") / "ok"), prompt_id="bad-input-ok"
        )


def _error(resp: httpx.Response, status: int, type_: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()["error"]
    assert body["type"] == type_ and len(body["message"]) > 10
    return body


CASES = {
    "undecodable image": (
        {"images": [b64(b"definitely not an image")], "labels": ["a", "b"]},
        400,
        "not a decodable image",
    ),
    "bad base64": ({"images": ["***"], "labels": ["a"]}, 400, "base64"),
    "images not a list": ({"images": "abc", "labels": ["a"]}, 400, "images"),
    "wrong label type": ({"images": ["AAAA"], "labels": "cat"}, 400, "labels"),
    "empty images": ({"images": [], "labels": ["a"]}, 400, "at least one image"),
    "both heads": ({"images": ["AAAA"], "labels": ["a"], "prompt_id": "x"}, 400, "exactly one"),
    "no head": ({"images": ["AAAA"]}, 400, "exactly one"),
    "top_k zero": ({"images": ["AAAA"], "labels": ["a"], "top_k": 0}, 400, "top_k"),
    "unknown field": ({"images": ["AAAA"], "labels": ["a"], "colour": 1}, 400, "colour"),
    "empty label": ({"images": ["AAAA"], "labels": ["a", " "]}, 400, "non-empty"),
    "too many labels": (
        {"images": ["AAAA"], "labels": [f"l{i}" for i in range(51)]},
        400,
        "limit of 50",
    ),
    "bad template": (
        {"images": ["AAAA"], "labels": ["a"], "templates": ["no placeholder"]},
        400,
        "placeholder",
    ),
    "invalid prompt id": ({"images": ["AAAA"], "prompt_id": "../../etc"}, 400, "invalid prompt_id"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_classify_bodies(http, images, name):
    body, status, words = CASES[name]
    if body.get("images") == ["AAAA"]:
        body = {**body, "images": [b64(images[0])]}
    err = _error(http.post("/v1/classify", json=body), status, "invalid_input")
    assert words in err["message"] or words == err["param"], err


def test_malformed_json_and_wrong_content_type(http):
    _error(
        http.post(
            "/v1/classify", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
        "invalid_input",
    )
    err = _error(
        http.post("/v1/classify", content=b"x", headers={"content-type": "text/plain"}),
        400,
        "invalid_input",
    )
    assert "application/json" in err["message"]


def test_unknown_route_and_method_get_the_error_body(http):
    assert "see /docs" in _error(http.get("/v1/nope"), 404, "not_found")["message"]
    _error(http.put("/v1/classify"), 405, "method_not_allowed")


def test_too_many_images(http, images):
    err = _error(
        http.post("/v1/classify", json={"images": [b64(images[0])] * 13, "labels": ["a"]}),
        400,
        "invalid_input",
    )
    assert "13 images" in err["message"] and "limit of 12" in err["message"]


def test_oversized_body_is_413(http):
    body = json.dumps({"images": ["A" * (5 << 20)], "labels": ["a"]})
    _error(
        http.post("/v1/classify", content=body, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )


def test_non_image_multipart_upload(http):
    resp = http.post(
        "/v1/classify",
        files=[("images", ("a.txt", b"hello", "text/plain"))],
        data={"labels": ["a", "b"]},
    )
    assert "images[0]" in _error(resp, 400, "invalid_input")["param"]


def test_unknown_prompt_is_404(http, images):
    err = _error(
        http.post("/v1/classify", json={"images": [b64(images[0])], "prompt_id": "nope"}),
        404,
        "prompt_not_found",
    )
    assert "GET /v1/prompts" in err["message"]
    _error(http.get("/v1/prompts/nope"), 404, "prompt_not_found")
    _error(http.delete("/v1/prompts/nope"), 404, "prompt_not_found")


def test_artifact_for_another_backbone(server, http, images, tiny_spec, tmp_path):
    art = build_templates(["a", "b"], backbone_id="ViT-B-32:openai")
    with Client(server["base_url"]) as c, pytest.raises(BackboneMismatch, match="ViT-B-32:openai"):
        c.register_prompt(art.save(tmp_path / "other"))
    # One that reached the store by another route (e.g. copied in) is refused at classify time.
    PromptStore(str(server["config"].prompts.store)).put(
        "foreign", art, np.zeros((2, 64), np.float32)
    )
    err = _error(
        http.post("/v1/classify", json={"images": [b64(images[0])], "prompt_id": "foreign"}),
        409,
        "backbone_mismatch",
    )
    assert tiny_spec.id in err["message"]


def test_bad_registrations(http, tiny_spec):
    ok = build_templates(["a"], backbone_id=tiny_spec.id).manifest.model_dump(mode="json")
    coop = {**ok, "method": "coop", "hparams": {"n_ctx": 4}, "templates": None}
    cases = [
        ({"manifest": {**ok, "method": "mystery"}}, "unknown prompt method"),
        ({"manifest": {**ok, "classnames": []}}, "classnames"),
        ({"manifest": coop}, "ctx"),
        ({"manifest": coop, "tensors": b64(b"garbage")}, "safetensors"),
        ({"manifest": ok, "prompt_id": "has space"}, "prompt_id"),
        ({"manifest": ok, "tensors": "%%%"}, "base64"),
    ]
    for body, words in cases:
        err = _error(http.post("/v1/prompts", json=body), 400, "invalid_input")
        assert words in err["message"], (words, err)
    wrong_width = PromptArtifact(
        ClipArtifactManifest.model_validate(coop), {"ctx": np.zeros((4, 32), np.float32)}
    )
    body = {"manifest": coop, "tensors": b64(wrong_width.tensor_bytes())}
    assert "(4, 64)" in _error(http.post("/v1/prompts", json=body), 400, "invalid_input")["message"]


def test_sdk_raises_typed_errors(server, images):
    with Client(server["base_url"]) as c:
        with pytest.raises(PromptNotFound):
            c.classify(images[0], prompt_id="nope")
        with pytest.raises(InvalidInput, match="not a decodable image"):
            c.classify(b"junk", labels=["a"], downscale=False)
        with pytest.raises(InvalidInput):
            c.classify([], labels=["a"])


def test_server_keeps_serving_after_bad_input(server, good_prompt, images):
    with Client(server["base_url"]) as c:
        assert c.health()
        out = c.classify(images[:2], prompt_id="bad-input-ok")
        assert len(out.results) == 2


def test_auth(server, images):
    url = server["secure_url"]
    body = {"images": [b64(images[0])], "labels": ["a", "b"]}
    missing = httpx.post(f"{url}/v1/classify", json=body, timeout=60)
    assert _error(missing, 401, "authentication_error")["message"].startswith("missing API key")
    wrong = httpx.post(
        f"{url}/v1/classify", json=body, headers={"Authorization": "Bearer nope"}, timeout=60
    )
    _error(wrong, 403, "permission_denied")
    right = httpx.post(
        f"{url}/v1/classify", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    )
    assert right.status_code == 200
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200  # probes need no key
    with Client(url, api_key="nope") as c, pytest.raises(AuthError):
        c.list_prompts()
    with Client(url, api_key=API_KEY) as c:
        assert c.classify(images[0], labels=["a", "b"]).results[0].top


def test_overload_is_503_with_retry_after_and_recovers(server, images):
    """The encoder's admission (serving/admission.py) refuses what its queue cannot hold, at
    once, with the JSON body and Retry-After; the next request is served."""
    url = server["tight_url"]  # its encoder holds at most 2 images
    body = {"images": [b64(images[0])] * 2, "labels": ["a", "b"]}
    with httpx.Client(timeout=60) as c, cf.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: c.post(f"{url}/v1/classify", json=body), range(16)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, codes
    rejected = next(r for r in responses if r.status_code == 503)
    assert int(rejected.headers["retry-after"]) >= 1
    assert rejected.json()["error"]["type"] == "overloaded"
    assert "the encoder holds" in rejected.json()["error"]["message"]
    # once the burst is answered, the next request is served (after Retry-After at most)
    answer = httpx.post(f"{url}/v1/classify", json=body, timeout=60)
    if answer.status_code == 503:
        time.sleep(int(answer.headers["retry-after"]))
        answer = httpx.post(f"{url}/v1/classify", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
