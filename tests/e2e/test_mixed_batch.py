"""A batch that mixes prompt_ids (and free labels, and deep-prompt artifacts) returns what
separate calls return.

Calls go to the real encoder deployment through a Serve handle; each answer reports the size
of the vision batch it rode in, which proves the concurrent calls shared one batch.
"""

from __future__ import annotations

import numpy as np
import pytest
from deep_checkpoints import CLASSNAMES, ivlp_checkpoint, maple_checkpoint
from ray import serve

from promptserve import Client
from promptserve.images import crop_uint8, decode_image
from promptserve.models.clip.export.importers.deep import import_ivlp, import_maple
from promptserve.models.clip.export.importers.templates import build_templates
from promptserve.models.clip.serve.calls import ClassifyCall, Labels
from promptserve.serving.store import PromptRef

PROMPTS = {
    "animals": ["cat", "dog", "cow"],
    "vehicles": ["car", "bus"],
    "food": ["pizza", "soup", "rice", "bread"],
}


@pytest.fixture(scope="module")
def prompts(server, tiny_spec, tiny_model, tmp_path_factory):
    out = {}
    tmp = tmp_path_factory.mktemp("deep")
    maple, _ = maple_checkpoint(
        tmp / "maple", tiny_model, n_ctx=2, depth=3, ctx_init="a photo of a", fp16=True
    )
    ivlp, _ = ivlp_checkpoint(
        tmp / "ivlp", tiny_model, n_text=4, n_vision=8, depth_text=3, depth_vision=2,
        ctx_init="a photo of a", fp16=True,
    )  # fmt: skip
    # 8 vision tokens on the tiny ViT's 50: the encoder sends plain rows of batches holding
    # this artifact through the plain graph in a call of their own (encoder.split_plain_rows)
    deep = {
        "maple": import_maple(maple, classnames=CLASSNAMES, backbone=tiny_spec),
        "ivlp": import_ivlp(ivlp, classnames=CLASSNAMES[:3], backbone=tiny_spec),
    }
    with Client(server["base_url"]) as c:
        for name, art in deep.items():
            out[name] = c.register_prompt(art.save(tmp / f"{name}-art"), prompt_id=f"mixed-{name}")
        for name, classes in PROMPTS.items():
            art = build_templates(
                classes, backbone_id=tiny_spec.id, templates=["a photo of a {}.", "a {}."]
            )
            out[name] = c.register_prompt(
                art.save(tmp_path_factory.mktemp("mixed") / name), prompt_id=f"mixed-{name}"
            )
    return out


def _call(crops, info=None, labels=None) -> ClassifyCall:
    if info is not None:
        return ClassifyCall(
            crops=crops,
            head=PromptRef(info.prompt_id, info.content_id),
            top_k=10,
            return_logits=True,
        )
    return ClassifyCall(
        crops=crops,
        head=Labels(tuple(labels), ("a photo of a {}.",)),
        top_k=10,
        return_logits=True,
    )


def test_mixed_prompt_batch_equals_separate_calls(server, prompts, images, tiny_bundle):
    encoder = serve.get_deployment_handle("encoder", app_name="promptserve")
    size = tiny_bundle.manifest.config.preprocess.size
    crops = np.stack([crop_uint8(decode_image(b), size=size) for b in images])
    calls = [
        _call(crops[0:2], prompts["animals"]),
        _call(crops[2:3], prompts["vehicles"]),
        _call(crops[3:6], prompts["food"]),
        _call(crops[1:4], labels=["sky", "sea"]),
        _call(crops[0:1], prompts["vehicles"]),
        _call(crops[4:6], prompts["maple"]),
        _call(crops[2:3], prompts["ivlp"]),
    ]
    total = sum(len(c.crops) for c in calls)
    for c in calls:  # warm the heads so the concurrent calls reach the batcher together
        encoder.classify.remote(c).result()
    for _ in range(5):  # the batch window is 50 ms; on a loaded machine a call can miss it
        mixed = [r.result() for r in [encoder.classify.remote(c) for c in calls]]
        if all(m["batch_images"] == [total] for m in mixed):
            break
    assert [m["batch_images"] for m in mixed] == [[total]] * len(calls), (
        "calls never shared a vision batch"
    )
    separate = [encoder.classify.remote(c).result() for c in calls]
    assert [s["batch_images"] for s in separate] == [[len(c.crops)] for c in calls]
    for got, want in zip(mixed, separate, strict=True):
        got, want = got["results"], want["results"]
        assert [r["top"][0]["label"] for r in got] == [r["top"][0]["label"] for r in want]
        # deep-prompt calls put every row through the prompted graph (plain rows masked),
        # which agrees with the plain graph to float tolerance, not bit for bit
        np.testing.assert_allclose(
            [r["logits"] for r in got], [r["logits"] for r in want], atol=1e-4, rtol=0
        )
    assert {len(r["logits"]) for m in mixed for r in m["results"]} == {2, 3, 4, 5}


def test_live_batch_size_change_splits_large_requests(server, prompts, images):
    """Lowering encoder.max_batch_size through Serve's user_config (a live update, no restart)
    reaches the encoder's chunking: a request larger than the new batch size rides in batches
    no larger than it, with the same answers; raising it back joins them again."""
    import base64

    import httpx
    from ray import serve

    from promptserve.serving.app import build_app

    body = {
        "images": [base64.b64encode(images[i % 6]).decode() for i in range(12)],
        "prompt_id": "mixed-food",
    }

    def classify() -> tuple[list[int], list]:
        resp = httpx.post(f"{server['base_url']}/v1/classify", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        sizes = [int(n) for n in resp.headers["x-promptserve-batch-images"].split(",")]
        results = resp.json()["results"]
        assert [r["index"] for r in results] == list(range(12))
        return sizes, [[t["label"] for t in r["top"]] for r in results]

    sizes, want = classify()
    assert sizes == [12]  # max_batch_size 16 in the test config
    deploy = {"name": "promptserve", "route_prefix": "/", "blocking": False}
    cfg = server["config"]
    try:
        serve.run(
            build_app(cfg, user_config={"max_batch_size": 5, "batch_wait_timeout_s": 0.05}),
            **deploy,
        )
        sizes, got = classify()
        assert sorted(sizes) == [2, 5, 5] and got == want
    finally:
        serve.run(build_app(cfg), **deploy)
    sizes, got = classify()
    assert sizes == [12] and got == want
