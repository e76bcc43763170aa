"""End to end through real Ray Serve on loopback: HTTP and SDK answers equal a direct torch
computation of the same method on the same weights."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import reference

from promptserve import AsyncClient, Client
from promptserve.models.clip.export.importers.templates import build_templates
from promptserve.models.clip.templates import IMAGENET_80

CLASSES = ["cat", "golden retriever", "fire truck", "sea anemone"]


@pytest.fixture(scope="module")
def client(server):
    with Client(server["base_url"], timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def templates_prompt(client, tiny_spec, tmp_path_factory):
    art = build_templates(CLASSES, backbone_id=tiny_spec.id, templates="imagenet80")
    info = client.register_prompt(
        art.save(tmp_path_factory.mktemp("art") / "t"), prompt_id="e2e-templates"
    )
    return info


def test_templates_prompt_logits_equal_direct_torch(client, templates_prompt, tiny_model, images):
    out = client.classify(
        images, prompt_id="e2e-templates", top_k=len(CLASSES), return_logits=True, downscale=False
    )
    got = np.array([r.logits for r in out.results])
    want = reference.logits(
        tiny_model, images, reference.template_classifier(tiny_model, CLASSES, list(IMAGENET_80))
    )
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert out.labels == CLASSES and [r.index for r in out.results] == list(range(len(images)))
    for r, row in zip(out.results, want, strict=True):
        assert r.top[0].label == CLASSES[int(row.argmax())]
        assert sum(t.score for t in r.top) == pytest.approx(1.0, abs=1e-5)


def test_free_labels_equal_direct_torch(client, tiny_model, images):
    labels, templates = (
        ["a red apple", "a bicycle", "the night sky"],
        ["a photo of {}.", "art of {}."],
    )
    out = client.classify(
        images[:3], labels=labels, templates=templates, return_logits=True, downscale=False
    )
    want = reference.logits(
        tiny_model, images[:3], reference.template_classifier(tiny_model, labels, templates)
    )
    np.testing.assert_allclose(np.array([r.logits for r in out.results]), want, atol=1e-4, rtol=0)


def test_raw_http_json_and_multipart_agree_with_sdk(server, client, templates_prompt, images):
    sdk = client.classify(
        images[:2], prompt_id="e2e-templates", return_logits=True, downscale=False
    )
    body = {
        "images": [base64.b64encode(b).decode() for b in images[:2]],
        "prompt_id": "e2e-templates",
        "return_logits": True,
    }
    as_json = httpx.post(f"{server['base_url']}/v1/classify", json=body, timeout=60)
    files = [("images", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(images[:2])]
    as_form = httpx.post(
        f"{server['base_url']}/v1/classify",
        files=files,
        data={"prompt_id": "e2e-templates", "return_logits": "true"},
        timeout=60,
    )
    assert as_json.status_code == as_form.status_code == 200
    for resp in (as_json, as_form):
        np.testing.assert_allclose(
            [r["logits"] for r in resp.json()["results"]],
            [r.logits for r in sdk.results],
            atol=1e-5,
        )


def test_client_side_downscale_sends_fewer_bytes_same_answer(client, templates_prompt):
    from conftest import make_image

    big = make_image(99, size=(1600, 1200))
    sent: list[int] = []
    hook = {"request": [lambda req: sent.append(len(req.content))]}
    with Client(client.base_url, timeout=60, http_client=httpx.Client(event_hooks=hook)) as c:
        full = c.classify(big, prompt_id="e2e-templates", return_logits=True, downscale=False)
        small = c.classify(big, prompt_id="e2e-templates", return_logits=True, downscale=True)
    classify_sizes = [n for n in sent if n > 1000]
    assert len(classify_sizes) == 2 and classify_sizes[1] < classify_sizes[0] / 2
    np.testing.assert_allclose(small.results[0].logits, full.results[0].logits, atol=1e-5)


def test_chunked_concurrent_list_equals_one_request(client, templates_prompt, images):
    many = images * 3  # 18 images, chunks of 4 sent 3 at a time
    chunked = client.classify(
        many,
        prompt_id="e2e-templates",
        return_logits=True,
        chunk_size=4,
        concurrency=3,
        progress=True,
    )
    whole = client.classify(many[:12], prompt_id="e2e-templates", return_logits=True)
    assert [r.index for r in chunked.results] == list(range(18))
    np.testing.assert_allclose(
        [r.logits for r in chunked.results[:12]], [r.logits for r in whole.results], atol=1e-5
    )
    np.testing.assert_allclose(chunked.results[0].logits, chunked.results[6].logits, atol=1e-5)


def test_async_client_matches_sync(server, client, templates_prompt, images):
    sync = client.classify(images[:3], prompt_id="e2e-templates", return_logits=True)

    async def run():
        async with AsyncClient(server["base_url"], timeout=60) as ac:
            got = await ac.classify(images[:3], prompt_id="e2e-templates", return_logits=True)
            assert [p.prompt_id for p in await ac.list_prompts()].count("e2e-templates") == 1
            return got

    got = asyncio.run(run())
    np.testing.assert_allclose(
        [r.logits for r in got.results], [r.logits for r in sync.results], atol=1e-5
    )


def test_register_list_get_delete(client, tiny_spec, images, tmp_path):
    art = build_templates(["x", "y"], backbone_id=tiny_spec.id, templates=["a {}."])
    info = client.register_prompt(art.save(tmp_path / "a"), prompt_id="short-lived")
    assert info.content_id == art.content_id and info.num_classes == 2
    assert "short-lived" in [p.prompt_id for p in client.list_prompts()]
    assert client.get_prompt("short-lived").method == "templates"
    assert client.classify(images[0], prompt_id="short-lived").labels == ["x", "y"]
    client.delete_prompt("short-lived")
    assert "short-lived" not in [p.prompt_id for p in client.list_prompts()]
    from promptserve import PromptNotFound

    with pytest.raises(PromptNotFound):
        client.classify(images[0], prompt_id="short-lived")


def test_cupl_artifact_served_equals_direct_torch(client, tiny_spec, tiny_model, images, tmp_path):
    import json

    import open_clip
    import torch

    from promptserve.models.clip.export.importers.cupl import import_cupl

    prompts = {
        "cat": ["A small feline with whiskers.", "A cat sleeping."],
        "ship": ["A large boat at sea."],
    }
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    art = import_cupl(tmp_path / "p.json", backbone_id=tiny_spec.id)
    client.register_prompt(art.save(tmp_path / "cupl"), prompt_id="e2e-cupl")
    out = client.classify(images[:2], prompt_id="e2e-cupl", return_logits=True, downscale=False)
    with torch.no_grad():  # CuPL's classifier: per class, mean of normalised sentence embeddings
        rows = [
            torch.nn.functional.normalize(
                tiny_model.encode_text(open_clip.tokenize(s), normalize=True).mean(0), dim=-1
            )
            for s in prompts.values()
        ]
    want = reference.logits(tiny_model, images[:2], torch.stack(rows))
    np.testing.assert_allclose([r.logits for r in out.results], want, atol=1e-4, rtol=0)


def test_cocoop_served_equals_official_forward(
    server, client, tiny_spec, tiny_model, images, tmp_path
):
    """CoCoOp's text side depends on each image; served through the real app (mixed with a
    precomputed prompt in the same vision batch) it still equals the official forward."""
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
    from test_cocoop_parity import (
        CLASSNAMES,
        PromptLearner,
        load_model,
        reference_logits,
        save_cocoop_checkpoint,
    )

    from promptserve.models.clip.export.importers.cocoop import import_cocoop

    learner = PromptLearner(CLASSNAMES, tiny_model, n_ctx=4, seed=8)
    path = save_cocoop_checkpoint(tmp_path, learner, torch.float32)
    art = import_cocoop(path, classnames=CLASSNAMES, backbone=tiny_spec)
    assert (
        client.register_prompt(art.save(tmp_path / "art"), prompt_id="e2e-cocoop").method
        == "cocoop"
    )
    with ThreadPoolExecutor(2) as pool:  # concurrent: shares the vision batch with a plain prompt
        co = pool.submit(
            client.classify, images[:3], prompt_id="e2e-cocoop", return_logits=True, downscale=False
        )
        pool.submit(client.classify, images[3:5], labels=["x", "y"], downscale=False).result()
        out = co.result()
    with torch.no_grad():
        pixels = reference.preprocess(tiny_model, images[:3])
    want = reference_logits(tiny_model, load_model(tiny_model, learner), pixels)
    np.testing.assert_allclose([r.logits for r in out.results], want, atol=1e-4, rtol=0)
    assert out.labels == CLASSNAMES


def test_reregistering_an_id_serves_the_new_artifact(client, tiny_spec, images, tmp_path):
    for names in (["p", "q"], ["r", "s", "t"]):
        art = build_templates(names, backbone_id=tiny_spec.id, templates=["a {}."])
        client.register_prompt(art.save(tmp_path / "-".join(names)), prompt_id="swapped")
        assert client.classify(images[0], prompt_id="swapped").labels == names


def test_openapi_schema_documents_every_body(server):
    schema = httpx.get(f"{server['base_url']}/openapi.json", timeout=30).json()
    assert {"/v1/classify", "/v1/prompts", "/v1/prompts/{prompt_id}", "/v1/models"} <= set(
        schema["paths"]
    )
    refs: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    names = set(schema["components"]["schemas"])
    assert {r.rsplit("/", 1)[-1] for r in refs} <= names
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert "images" in schema["components"]["schemas"]["ClassifyRequest"]["properties"]


def test_registration_is_one_trip_to_the_encoder(server, tiny_spec):
    """The encoder validates the artifact, computes its features and writes the store, and
    answers with the stored prompt's info only (it used to send the whole artifact back to the
    gateway, which serialised it again to store it)."""
    from ray import serve

    from promptserve.types import PromptInfo

    encoder = serve.get_deployment_handle("encoder", app_name="promptserve")
    art = build_templates(["cat", "dog"], backbone_id=tiny_spec.id)
    manifest = art.manifest.model_dump(mode="json")
    info = encoder.register.remote(manifest, None, "one-trip").result()
    assert isinstance(info, PromptInfo) and info.content_id == art.content_id
    with Client(server["base_url"]) as c:
        assert c.get_prompt("one-trip").content_id == art.content_id
        c.delete_prompt("one-trip")
