"""The generation half of `promptserve demo`: the demo LLM (seeded random weights) with a soft
prompt imported from a real PEFT prompt-tuning adapter and an IDP prompt pool, called through
the `openai` client exactly as an OpenAI or vLLM server would be.

Random weights write gibberish; what the demo shows is the plumbing: `model` picks the
prompt, the pool's choice and score come back with the answer, tokens stream.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from promptserve import Client

QUESTION = "Rivers flow into the sea and"


def register_demo_prompts(client: Client, backbone: str, model_dir: Path) -> None:
    """`peft-demo`: a seeded PEFT adapter folder, imported as `promptserve import peft` does;
    `idp-demo`: a seeded pool of 4 prompts (selection at the last layer, all heads)."""
    from promptserve.models.llm.export.generation_importers import import_peft
    from promptserve.models.llm.export.seeded_prompts import (
        embedding_scale,
        seeded_peft_adapter,
        seeded_pool,
        seeded_soft_prompt,
    )

    scale = embedding_scale(model_dir)
    try:
        scratch = Path(tempfile.mkdtemp(prefix="promptserve-demo-peft-"))
        soft = import_peft(seeded_peft_adapter(model_dir, scratch / "adapter", 8, 0), backbone)
    except ImportError:  # no `peft` here: the same seeded prompt, without the adapter folder
        width = int(json.loads((model_dir / "config.json").read_text())["hidden_size"])
        soft = seeded_soft_prompt(width, 8, 0, backbone, scale=scale)
    width = soft.tensors["prompt_embeddings"].shape[1]
    pool = seeded_pool(width, [4, 6, 5, 8], 1, backbone, scale=scale)
    for prompt_id, artifact in (("peft-demo", soft), ("idp-demo", pool)):
        client.register_prompt(
            (artifact.manifest.model_dump(mode="json"), artifact.tensor_bytes()),
            prompt_id=prompt_id,
        )


def run_generation(url: str, backbone: str, model_dir: Path) -> None:
    """Register the demo prompts on the LLM app at `url`, then generate with each through
    the openai client."""
    try:
        import openai
    except ImportError:
        print("generation demo skipped: `pip install openai` to run it")
        return
    with Client(url) as client:
        register_demo_prompts(client, backbone, model_dir)
    oai = openai.OpenAI(base_url=url + "/v1", api_key="demo")
    print(f"\ngeneration at {url}/v1 (OpenAI-compatible; RANDOM WEIGHTS, so gibberish):")
    print("  models:", ", ".join(m.id for m in oai.models.list()))
    for model in ("base", "peft-demo", "idp-demo"):
        out = oai.completions.create(model=model, prompt=QUESTION, max_tokens=12, temperature=0)
        chosen = ""
        selection = (out.model_extra or {}).get("selection")
        if selection:
            chosen = f"  [pool prompt {selection['index']}, score {selection['score']:.4f}]"
        print(f"  {model:<10} {QUESTION!r} -> {out.choices[0].text!r}{chosen}")
    print("  streamed chat with peft-demo: ", end="", flush=True)
    stream = oai.chat.completions.create(
        model="peft-demo",
        messages=[{"role": "user", "content": "Tell me about rivers."}],
        max_tokens=16,
        temperature=0,
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print("\n")
