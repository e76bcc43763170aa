"""The LLM half of `promptserve demo`: a tiny causal LM with seeded random weights, exported
for PromptReps, served beside the CLIP app, indexing and querying the bundled BEIR-format
corpus (promptserve/data/beir-demo), scored with pytrec_eval; then generating with a soft
prompt and an IDP pool through the openai client (sdk/demo_generate.py).

The weights are random, so the dense run is noise; the sparse run still finds passages that
share the query's words (PromptReps keeps only a text's own words), which the scores show.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEMO_CORPUS = Path(str(files("promptserve") / "data" / "beir-demo"))
QUERIES = ["volcano lava and ash", "espresso coffee pressure", "penguins in antarctica"]


def prepare_llm(workdir: Path) -> Path:
    """The demo LLM's bundle, exported once and reused."""
    from promptserve.models.bundle import Bundle, BundleError
    from promptserve.models.llm.backbone import LlmBackboneSpec
    from promptserve.models.llm.export.onnx import export_bundle
    from promptserve.models.llm.export.seeded import demo_llm_dir

    spec = LlmBackboneSpec.parse(f"local-dir:{demo_llm_dir()}")
    bundle = workdir / "bundles" / "demo-llm"
    try:
        stale = Bundle(bundle).backbone_id != spec.id
    except BundleError:
        stale = True
    if stale:
        print("exporting the demo LLM to ONNX ...", flush=True)
        export_bundle(f"local-dir:{demo_llm_dir()}", bundle, progress=False)
    return bundle


def run_retrieval(workdir: Path, *, port: int) -> None:
    """Serve the demo LLM at /retrieval on the running Serve instance, index, query, score."""
    import tempfile

    from promptserve import Client
    from promptserve.models.llm.artifacts import builtin_prompt
    from promptserve.retrieve_eval import BeirSet, evaluate, table
    from promptserve.serving import run
    from promptserve.serving.config import AppConfig

    bundle = prepare_llm(workdir)
    scratch = Path(tempfile.mkdtemp(prefix="promptserve-demo-retrieval-"))
    config = AppConfig.model_validate(
        {
            "name": "retrieval",
            "route_prefix": "/retrieval",
            "bundle": str(bundle),
            "http": {"port": port},
            "prompts": {"store": str(scratch / "prompts")},
            "index": {"path": str(scratch / "indexes")},
            # beside the CLIP app on a 2-core machine: Ray counts CPUs, these replicas mostly wait
            "encoder": {"num_cpus": 0.5},
            "gateway": {"num_cpus": 0.0},
            "indexer": {"num_cpus": 0.0},
            # the same app generates (sdk/demo_generate.py): the whole tiny backbone, CPU
            "generator": {"num_cpus": 0.0, "max_batch_rows": 8},
            "log_level": "WARNING",
        }
    )
    url = run.start(config)
    run.wait_ready(url)
    with Client(url) as client:
        info = client.model_info()
        artifact = builtin_prompt("llama3", info.backbone)
        client.register_prompt(
            (artifact.manifest.model_dump(mode="json"), None), prompt_id="promptreps-llama3"
        )
        client.create_index("demo", prompt_id="promptreps-llama3")
        data = BeirSet(DEMO_CORPUS, "test")
        added = client.index_documents(data.corpus(), index_id="demo", progress=True)
        print(f"\nindexed {added.documents} passages into `demo` ({info.backbone}) at {url}")
        for mode in ("sparse", "hybrid"):
            out = client.retrieve(QUERIES, index_id="demo", k=2, mode=mode)
            print(f"{mode} search:")
            for query, result in zip(QUERIES, out.results, strict=True):
                hits = ", ".join(f"{h.id} ({h.score:.3f})" for h in result.hits)
                print(f"  {query!r:<32} -> {hits}")

        def search(ids: list[str], texts: list[str], mode: str) -> dict[str, dict[str, float]]:
            found = client.retrieve(texts, index_id="demo", k=100, mode=mode)  # type: ignore[arg-type]
            return {
                q: {h.id: h.score for h in r.hits} for q, r in zip(ids, found.results, strict=True)
            }

        print("\nBEIR-style evaluation of the demo set (random weights: dense is noise):")
        try:
            print(table(evaluate(data, search, ["dense", "sparse", "hybrid"])))
        except ImportError as exc:  # the scores need the [eval] extra; the demo goes on
            print(f"  skipped: {exc}")
        print()
    from promptserve.demo_generate import run_generation
    from promptserve.models.llm.export.seeded import demo_llm_dir

    run_generation(url, info.backbone, demo_llm_dir())
