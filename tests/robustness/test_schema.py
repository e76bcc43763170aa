"""The served OpenAPI schema, fuzzed (schemathesis) against the real server: every documented
operation, with data that fits the schema and data that does not, JSON and multipart bodies.

Whatever a client sends, the answer is never a 5xx, and every error carries the JSON error
body (`{"error": {"type", "message"}}`). Bounded so CI's two cores run it in well under three
minutes: a fixed number of examples per operation, no shrinking, derandomized (the same cases
every run, so a failure here is a failure there)."""

from __future__ import annotations

import base64
import collections
import json
import os
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import API_KEY, make_image
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks as st_checks

# per operation, positive and negative together; PROMPTSERVE_FUZZ_EXAMPLES=500 for a longer hunt
MAX_EXAMPLES = int(os.environ.get("PROMPTSERVE_FUZZ_EXAMPLES", "30"))
SECURE_EXAMPLES = max(10, MAX_EXAMPLES // 3)
JPEG = make_image(7, (40, 32))
B64 = base64.b64encode(JPEG).decode()
# Per operation: how many bodies of each media type were sent, and answered with each status
# (test_image_routes_got_multipart_and_json_bodies reads it).
SENT: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def _config(max_examples: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "request-timeout": 60,
            "generation": {
                "mode": "all",  # positive and negative
                "max-examples": max_examples,
                "no-shrink": True,
                "deterministic": True,
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": True},
                "fuzzing": {"enabled": True},
                # boundary values, missing fields, methods a path does not take, OPTIONS
                "coverage": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


# What a swapped-in case asks about, per route: a vocabulary (or object) the server has, in
# place of whatever was generated, so the other fuzzed fields reach the model.
VOCABULARY = {
    "/v1/classify": {"labels": ["cat", "dog"]},
    "/v1/segment": {"labels": ["background", "cat"]},
    "/v1/anomaly": {"object_name": "bottle"},
}


def _with_real_images(schema: Any) -> Any:
    """Generated `images` are not images, and few generated bodies name exactly one of the
    prompt fields, so most requests stop at the first check: in some cases swap in a real JPEG
    and a vocabulary, so the other generated fields reach decoding and the model."""

    @schema.hook
    def before_generate_case(context, strategy):
        def swap(triple):
            case, real, plain = triple
            body = case.body
            vocabulary = VOCABULARY.get(case.operation.path)
            if real and vocabulary and isinstance(body, dict):
                multipart = (case.media_type or "").startswith("multipart/")
                images = body.get("images")
                n = len(images) if isinstance(images, list) and images else 1
                if plain:  # only what a served request needs: some cases surely run
                    body.clear()
                body["images"] = [JPEG if multipart else B64] * min(n, 3)
                body.pop("prompt_id", None)
                body.update(vocabulary)
            return case

        return st.tuples(strategy, st.booleans(), st.booleans()).map(swap)

    return schema


def _load() -> Any:
    """The schema the server serves, built in-process at collection time: schemathesis's lazy
    loader (`schemathesis.pytest.from_fixture`, for a schema only a running server has) does
    not run under pytest 9.2 (it sets `Function._nodeid`, gone there), so the cases come from the
    same FastAPI app the gateway serves, and `test_the_served_schema_is_the_fuzzed_one` checks
    that the running server's /openapi.json is this one."""
    pytest.importorskip("ray")  # as the `server` fixture does
    from promptserve.models.clip.serve.gateway import api

    return api.openapi()


OPENAPI = _load()


def json_error_body(ctx, response, case) -> None:
    """Every 4xx/5xx is `application/json` with `{"error": {"type": str, "message": str}}`."""
    if response.status_code < 400:
        return None
    ctype = (response.headers.get("content-type") or [""])[0]
    assert ctype.startswith("application/json"), (
        f"{response.status_code} answered with content-type {ctype!r}: {response.text[:200]!r}"
    )
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"no `error` object in {response.text[:200]!r}"
    assert isinstance(error.get("type"), str) and error["type"], error
    assert isinstance(error.get("message"), str) and error["message"], error
    assert " at 0x" not in error["message"], f"a heap address in {error['message']!r}"
    return None


def needs_a_key(ctx, response, case) -> None:
    """The secure app answers every documented operation without a key with a 401 (methods a
    path does not take and OPTIONS are answered before auth, like an unknown path)."""
    if case.method.upper() == case.operation.method.upper():
        assert response.status_code == 401, (response.status_code, response.text[:200])
    return None


CHECKS = [
    st_checks.not_a_server_error,
    json_error_body,
    st_checks.status_code_conformance,  # every status it answers with is documented
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,  # error bodies are ErrorBody, results their model
    st_checks.unsupported_method,  # a 405 with `Allow` for a method the path does not take
    st_checks.allow_header_conformance,  # OPTIONS' `Allow` lists the documented methods
]
schema = _with_real_images(schemathesis.openapi.from_dict(OPENAPI, config=_config(MAX_EXAMPLES)))
keyless = schemathesis.openapi.from_dict(OPENAPI, config=_config(SECURE_EXAMPLES))
keyed = _with_real_images(schemathesis.openapi.from_dict(OPENAPI, config=_config(SECURE_EXAMPLES)))


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation(case, server):
    response = case.call_and_validate(base_url=server["base_url"], checks=CHECKS)
    if case.media_type:
        SENT[case.operation.label][case.media_type] += 1
        SENT[case.operation.label][f"{case.media_type} {response.status_code}"] += 1


@keyless.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_needs_a_key(case, server):
    case.call_and_validate(base_url=server["secure_url"], checks=[*CHECKS, needs_a_key])


@keyed.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_with_an_admin_key_fused(case, server):
    """The secure app runs the fused topology (the encoder in the gateway's replica)."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    case.call_and_validate(base_url=server["secure_url"], headers=headers, checks=CHECKS)


def test_the_served_schema_is_the_fuzzed_one(server):
    for base in (server["base_url"], server["secure_url"]):
        served = httpx.get(f"{base}/openapi.json", timeout=30).json()
        served.pop("servers", None)  # /secure's root path
        assert served == json.loads(json.dumps(OPENAPI)), base


def test_image_routes_got_multipart_and_json_bodies():
    """Both forms of each image route were sent, and some multipart requests were served
    (parsed, decoded, run), not only refused."""
    if not SENT:
        pytest.skip("counts what test_every_operation sent: run it first")
    for route in ("/v1/classify", "/v1/anomaly", "/v1/segment"):
        sent = SENT[f"POST {route}"]
        assert sent["multipart/form-data"] >= 5 and sent["application/json"] >= 5, (route, sent)
        assert sent["multipart/form-data 200"] >= 1 and sent["application/json 200"] >= 1, (
            route,
            sent,
        )


# -- hand-made: what the fuzzer does not send -------------------------------------------------


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server["base_url"], timeout=60) as c:
        yield c


def _methods(resp: httpx.Response) -> set[str]:
    return {m.strip() for m in resp.headers["allow"].split(",")}


@pytest.mark.parametrize(
    ("path", "methods"),
    [("/v1/prompts", {"GET", "POST"}), ("/v1/prompts/some-id", {"GET", "DELETE"})],
)
def test_options_lists_every_method_of_the_path(server, path, methods):
    for base in (server["base_url"], server["secure_url"]):  # no key needed to ask
        resp = httpx.options(base + path, timeout=30)
        assert resp.status_code == 204, (resp.status_code, resp.text)
        assert _methods(resp) == {*methods, "OPTIONS"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("PUT", "/v1/prompts", {"GET", "POST"}), ("POST", "/v1/prompts/x", {"GET", "DELETE"}),
     ("DELETE", "/v1/models", {"GET"}), ("GET", "/v1/classify", {"POST"})],
)  # fmt: skip
def test_a_method_a_path_does_not_take_is_a_json_405_with_allow(http, method, path, allow):
    resp = http.request(method, path)
    assert resp.status_code == 405, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert error["type"] == "method_not_allowed" and method in error["message"], error
    assert _methods(resp) == allow


def test_validation_errors_are_documented_as_the_400_they_are():
    for path, operations in OPENAPI["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            assert "400" in operation["responses"], (method, path)
    assert "HTTPValidationError" not in json.dumps(OPENAPI)


@pytest.mark.parametrize("route", ["/v1/classify", "/v1/anomaly", "/v1/segment"])
def test_multipart_fields_have_the_json_fields_bounds(route):
    content = OPENAPI["paths"][route]["post"]["requestBody"]["content"]
    name = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    json_props = OPENAPI["components"]["schemas"][name]["properties"]
    form_props = content["multipart/form-data"]["schema"]["properties"]
    assert set(form_props) == set(json_props), route
    bounds = ("minimum", "maximum", "exclusiveMinimum", "minLength", "maxLength", "enum")
    for field, prop in json_props.items():
        if field == "images":
            continue
        types = [t for t in prop.get("anyOf", [prop]) if t.get("type") != "null"]
        if any(t.get("type") == "array" for t in types):  # a repeated field
            assert form_props[field]["type"] == "array", field
            continue
        (json_type,) = types
        for key in bounds:
            assert form_props[field].get(key) == json_type.get(key), (field, key)
        assert form_props[field]["type"] == json_type["type"], field
    # the bounds are JSON Schema's, not pydantic's names for them
    assert '"ge":' not in json.dumps(OPENAPI) and '"le":' not in json.dumps(OPENAPI)


def test_a_multipart_preset_name_is_a_preset(http):
    """One `templates` value that is not a JSON list is the preset it names (it used to be read
    as a list of one template, and refused)."""
    files = [("images", ("a.jpg", JPEG, "image/jpeg"))]
    data = {"labels": ["background", "cat"], "templates": "default", "short_side": "32"}
    resp = http.post("/v1/segment", files=files, data=data)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("route", ["/v1/classify", "/v1/anomaly", "/v1/segment"])
def test_a_file_that_is_no_image_is_named_without_internals(http, route):
    files = [("images", ("a.jpg", b"not an image", "image/jpeg"))]
    data = {"labels": ["cat", "dog"]} if route != "/v1/anomaly" else {"object_name": "bottle"}
    resp = http.post(route, files=files, data=data)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "images[0]" and "not a decodable image" in error["message"]
    assert " at 0x" not in error["message"], error  # was `<_io.BytesIO object at 0x7f...>`
