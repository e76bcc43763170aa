"""`promptserve`: one CLI for export, import, serving, the registry and the demo.

Heavy imports happen inside each command, so `promptserve --help` is instant and the client
install can run `promptserve prompts ...` without torch or Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptserve._exceptions import APIConnectionError, PromptServeError


def _backbone(text: str):
    from promptserve.models.clip.export.commands import backbone

    return backbone(text)


def _segment_specs(text: str) -> tuple:
    from promptserve.models.clip.bundle import SegmentGraphSpec

    specs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        method, _, size = item.partition("=")
        try:
            specs.append(SegmentGraphSpec(method=method, image_size=int(size or 224)))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{item!r}: {exc}") from None
    return tuple(specs)


def cmd_export_triton(args: argparse.Namespace) -> int:
    from promptserve.exporters.tensorrt import TensorRTOptions, tensorrt_provider
    from promptserve.exporters.triton import TritonOptions, write_model_repository
    from promptserve.models.bundle import Bundle

    if args.bundle is None:
        print(
            "--format triton needs --bundle DIR (a bundle written by `promptserve export`)",
            file=sys.stderr,
        )
        return 2
    trt = None
    if args.tensorrt:
        trt = TensorRTOptions(
            precision=args.tensorrt, max_batch=args.triton_max_batch_size,
            opt_batch=min(16, args.triton_max_batch_size), cache_path=args.tensorrt_cache,
        )  # fmt: skip
        if not args.tensorrt_on_server and not tensorrt_provider():
            print(
                "TensorRT is not available here: ONNX Runtime has no TensorrtExecutionProvider, "
                "so no engine was built or checked and no repository was written. Rerun on a GPU "
                "machine with onnxruntime-gpu and the TensorRT libraries, or pass "
                "--tensorrt-on-server to let Triton build the engines at model load (unchecked).",
                file=sys.stderr,
            )
            return 2
    options = TritonOptions(
        prefix=args.model_prefix, instance_kind=args.instance_kind, instances=args.instances,
        max_batch_size=args.triton_max_batch_size, max_queue_delay_us=args.max_queue_delay_us,
        backend=args.triton_backend, tensorrt=trt,
    )  # fmt: skip
    names = write_model_repository(Bundle(args.bundle), args.output, options)
    for name, skipped in names.items():
        status = (
            f"left out ({skipped}; the triton engine runs it in-process)"
            if skipped
            else ("config.pbtxt checked against its graph")
        )
        print(f"{name:>40}: {status}")
    print(f"Triton model repository written to {args.output}")
    if trt is None:
        return 0
    from promptserve.exporters.triton import CONFIG_FILE, parse_config

    accelerated = [  # as Triton will read them: the written configs, parsed
        name for name, skipped in names.items() if skipped is None
        and parse_config((Path(args.output) / name / CONFIG_FILE).read_text())
        .optimization.execution_accelerators.gpu_execution_accelerator
    ]  # fmt: skip
    print(f"TensorRT {trt.precision} accelerator (engine cache {trt.cache_path}): {accelerated}")
    if args.tensorrt_on_server:
        print("Triton builds these engines at model load; nothing was built or checked here.")
        return 0
    from promptserve.exporters.tensorrt import build_engines

    report = build_engines(Bundle(args.bundle), trt)
    (Path(args.output) / "tensorrt_parity.json").write_text(
        json.dumps([r.model_dump() for r in report], indent=2)
    )
    for r in report:
        print(
            f"{r.graph:>24}: {'ok' if r.passed else 'FAILED'} cosine {r.min_cosine:.5f} "
            f"max |diff| {r.max_abs_diff:.2e} at batches {r.batches} (built in {r.build_s:.0f} s)"
        )
    return 0 if all(r.passed for r in report) else 1


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "triton":
        return cmd_export_triton(args)
    if args.backbone is None:
        print("--backbone is required (or --format triton --bundle DIR)", file=sys.stderr)
        return 2
    if args.family == "llm":
        return cmd_export_llm(args)
    from promptserve.models.clip.bundle import AnomalyGraphSpec, WinCLIPGraphSpec
    from promptserve.models.clip.export.onnx import export_bundle

    manifest = export_bundle(
        _backbone(args.backbone),
        args.output,
        tolerance=args.tolerance,
        deep_prompts=args.deep_prompts,
        max_prompt_tokens=args.max_prompt_tokens,
        anomaly=AnomalyGraphSpec(image_size=args.anomaly_size, taps=args.anomaly_taps,
                                 dpam_layer=args.dpam_layer) if args.anomaly_size else None,
        winclip=WinCLIPGraphSpec(scales=args.winclip_scales) if args.winclip_scales else None,
        segment=args.segment,
    )  # fmt: skip
    for name, p in manifest.parity.items():
        print(
            f"{name:>15} graph: max|onnx-torch|={p.max_abs_diff:.2e}  min cosine={p.min_cosine:.6f}  (tol {p.tolerance})"
        )
    print(f"bundle for {manifest.backbone_id} written to {args.output}")
    return 0


def cmd_export_llm(args: argparse.Namespace) -> int:
    from promptserve.models.bundle import Bundle
    from promptserve.models.llm.export.onnx import export_bundle

    backbone = args.backbone
    if backbone == "demo":
        from promptserve.models.llm.export.seeded import demo_llm_dir

        backbone = f"local-dir:{demo_llm_dir()}"
    export_bundle(backbone, args.output)
    manifest = Bundle(args.output).manifest
    for name, p in manifest.parity.items():
        print(
            f"{name:>15} graph: max|onnx-torch|={p.max_abs_diff:.2e}  min cosine={p.min_cosine:.6f}  (tol {p.tolerance})"
        )
    print(f"bundle for {manifest.backbone_id} written to {args.output}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from promptserve import Client

    with Client(args.url, api_key=args.api_key) as client:
        if args.action == "list":
            rows = client.list_indexes()
            print(f"{'index_id':<28} {'documents':>9}  {'prompt_id':<28} engine")
            for r in rows:
                print(f"{r.index_id:<28} {r.documents:>9}  {r.prompt_id:<28} {r.engine}")
            if not rows:
                print("(no indexes)")
        elif args.action == "create":
            info = client.create_index(args.index_id, prompt_id=args.prompt_id)
            print(f"created {info.index_id} (prompt {info.prompt_id}, {info.dim}-d, {info.engine})")
        elif args.action == "add":
            from promptserve.retrieve_eval import read_jsonl

            if args.prompt_id is not None and args.index_id not in {
                i.index_id for i in client.list_indexes()
            }:
                client.create_index(args.index_id, prompt_id=args.prompt_id)
            out = client.index_documents(
                read_jsonl(args.corpus), index_id=args.index_id, progress=True,
                chunk_size=args.chunk_size, concurrency=args.concurrency,
            )  # fmt: skip
            print(
                f"{args.index_id}: {out.added} added, {out.skipped} already there, "
                f"{len(out.truncated)} truncated; {out.documents} documents"
            )
        else:
            client.delete_index(args.index_id)
            print(f"deleted {args.index_id}")
    return 0


def cmd_eval_retrieve(args: argparse.Namespace) -> int:
    from promptserve import Client
    from promptserve.retrieve_eval import BeirSet, evaluate, table

    data = BeirSet(args.data, args.split)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with Client(args.url, api_key=args.api_key) as client:
        if args.prompt_id is not None and args.index_id not in {
            i.index_id for i in client.list_indexes()
        }:
            client.create_index(args.index_id, prompt_id=args.prompt_id)
        added = client.index_documents(data.corpus(), index_id=args.index_id, progress=True)
        print(f"{args.index_id}: {added.documents} documents ({added.added} added now)")

        def search(ids: list[str], texts: list[str], mode: str) -> dict[str, dict[str, float]]:
            out = client.retrieve(texts, index_id=args.index_id, k=args.k, mode=mode)  # type: ignore[arg-type]
            return {
                q: {h.id: h.score for h in r.hits} for q, r in zip(ids, out.results, strict=True)
            }

        results = evaluate(data, search, modes)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    artifact = args.importer.run(args)
    artifact.save(args.output)
    labels = artifact.manifest.labels()
    what = f" for {len(labels)} classes" if labels is not None else ""
    print(f"{artifact.manifest.method} artifact{what} on {artifact.manifest.backbone}")
    print(f"content id {artifact.content_id}\nwritten to {args.output}")
    return 0


def _import_parsers(sub: argparse._SubParsersAction) -> None:
    """`promptserve import METHOD`: every family's import commands (a family adds its own in
    its folder, e.g. models/clip/export/commands.py)."""
    from promptserve.models.family import FAMILIES, get_family

    imp = sub.add_parser("import", help="turn a checkpoint or templates into a prompt artifact")
    isub = imp.add_subparsers(dest="method", required=True, metavar="METHOD")
    for family in FAMILIES:
        for name, command in get_family(family).import_commands().items():
            parser = isub.add_parser(name, help=command.help)
            command.arguments(parser)
            parser.add_argument(
                "-o", "--output", required=True, type=Path, help="artifact directory"
            )
            parser.set_defaults(fn=cmd_import, importer=command)


def cmd_serve(args: argparse.Namespace) -> int:
    from promptserve.serving.config import load_config
    from promptserve.serving.run import run_forever

    config = load_config(args.config)
    if args.port is not None or args.host is not None:
        http = config.http.model_copy(
            update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        )
        config = config.model_copy(update={"http": http})
    run_forever(config, address=args.address)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from promptserve.demo import run_demo

    return run_demo(
        workdir=args.workdir, port=args.port, once=args.once, retrieval=not args.no_retrieval
    )


def cmd_prompts(args: argparse.Namespace) -> int:
    from promptserve import Client

    with Client(args.url, api_key=args.api_key) as client:
        if args.action == "list":
            rows = client.list_prompts()
            print(f"{'prompt_id':<32} {'method':<10} {'classes':>7}  backbone")
            for p in rows:
                classes = "-" if p.num_classes is None else p.num_classes
                print(f"{p.prompt_id:<32} {p.method:<10} {classes:>7}  {p.backbone}")
            if not rows:
                print("(no prompts registered)")
        elif args.action == "add":
            info = client.register_prompt(args.artifact, prompt_id=args.prompt_id)
            what = f", {info.num_classes} classes" if info.num_classes is not None else ""
            print(f"registered {info.prompt_id} ({info.method}{what})")
        else:
            client.delete_prompt(args.prompt_id)
            print(f"deleted {args.prompt_id}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Print the text `--model` generates for TEXT (`-`: read stdin), as it comes with
    `--stream`; for an IDP pool, the chosen prompt goes to stderr, before the text."""
    from promptserve import Client
    from promptserve._generation import _selection_note

    text = sys.stdin.read() if args.text == "-" else args.text
    options = {
        "model": args.model, "max_tokens": args.max_tokens, "temperature": args.temperature,
        "top_p": args.top_p, "seed": args.seed, "stop": args.stop or None,
    }  # fmt: skip
    messages = [{"role": "user", "content": text}]

    def show(answer: Any, piece: str | None) -> None:
        note = _selection_note(answer)
        if note is not None:
            print(note, file=sys.stderr, flush=True)
        print(piece or "", end="", flush=True)

    with Client(args.url, api_key=args.api_key) as client:
        if not args.stream:
            if args.chat:
                chat = client.chat(messages, **options)
                show(chat, chat.choices[0].message.content)
            else:
                completion = client.generate(text, **options)
                show(completion, completion.choices[0].text)
        elif args.chat:
            with client.chat(messages, stream=True, **options) as chat_chunks:
                for chat_chunk in chat_chunks:
                    show(chat_chunk, "".join(c.delta.content or "" for c in chat_chunk.choices))
        else:
            with client.generate(text, stream=True, **options) as chunks:
                for chunk in chunks:
                    show(chunk, "".join(c.text for c in chunk.choices))
    print()
    return 0


def cmd_eval_anomaly(args: argparse.Namespace) -> int:
    import numpy as np

    from promptserve import Client
    from promptserve.anomaly_eval import evaluate, format_table

    with Client(args.url, api_key=args.api_key) as client:

        def detect(paths, category):
            # WinCLIP is told what each category shows: its folder name, e.g. "metal nut"
            name = category.replace("_", " ") if args.prompt_id is None else None
            out = client.detect_anomalies(
                paths, prompt_id=args.prompt_id, object_name=name, progress=False
            )
            return np.array([r.score for r in out.results]), [r.anomaly_map() for r in out.results]

        results = evaluate(detect, args.data, overlays=args.overlays)
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def cmd_eval_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from promptserve import Client
    from promptserve.segment_eval import evaluate, format_table, read_labels
    from promptserve.segment_metrics import iou_per_class

    groups = read_labels(args.labels)
    names = [g[0] for g in groups]
    with Client(args.url, api_key=args.api_key) as client:

        def predict(paths):
            out = client.segment(paths, labels=groups, method=args.method, progress=False,
                                 short_side=args.short_side, prob_threshold=args.prob_threshold)  # fmt: skip
            return [r.labels() for r in out.results]

        conf = evaluate(
            predict, args.images, args.masks, len(groups), ignore_index=args.ignore_index
        )
    print(format_table(conf, names))
    if args.json:
        iou = iou_per_class(conf)
        report = {
            "miou": float(np.nanmean(iou)),
            "iou": {n: None if np.isnan(v) else float(v) for n, v in zip(names, iou, strict=True)},
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_k8s_render(args: argparse.Namespace) -> int:
    from promptserve.deploy.k8s import dump, render

    text = dump(render(args.config, args.cluster, data_root=args.data_root))
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "rayservice.yaml").write_text(text)
        print(f"wrote {args.output / 'rayservice.yaml'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="promptserve", description="Serve prompt-adapted CLIP models on Ray Serve."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "serve", help="run an application config on Ray Serve (blocks; Ctrl-C stops it)"
    )
    s.add_argument("config", help="YAML application config")
    s.add_argument("--address", help="join a running Ray cluster (e.g. auto or ray://host:10001)")
    s.add_argument("--host", help="override http.host")
    s.add_argument("--port", type=int, help="override http.port")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser(
        "demo",
        help="export tiny seeded backbones, serve them, classify sample images and retrieve "
        "from a small corpus",
    )
    s.add_argument("--once", action="store_true", help="exit after the sample requests")
    s.add_argument(
        "--no-retrieval",
        action="store_true",
        help="skip the retrieval part (a tiny seeded LLM indexing and querying a small corpus)",
    )
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where bundles and artifacts go (default: cache dir)",
    )
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("export", help="export a backbone to an ONNX bundle with a parity report")
    s.add_argument(
        "--backbone",
        help="NAME:TAG, NAME@WEIGHTS, CONFIG.json@WEIGHTS, hf-hub:ORG/REPO, local-dir:PATH or `demo` (a tiny backbone with seeded random weights)",
    )
    s.add_argument(
        "--family",
        choices=["clip", "llm"],
        default="clip",
        help="clip: an open_clip backbone; llm: a Hugging Face causal LM (hf-hub:ORG/NAME, "
        "local-dir:PATH, or `demo`) exported for PromptReps (dense + sparse outputs)",
    )
    s.add_argument(
        "-o", "--output", required=True, type=Path, help="bundle (or repository) directory"
    )
    s.add_argument(
        "--format",
        choices=["bundle", "triton"],
        default="bundle",
        help="bundle: ONNX graphs + parity report; triton: a Triton model repository from --bundle",
    )
    t = s.add_argument_group("--format triton")
    t.add_argument("--bundle", type=Path, help="the bundle to turn into a Triton repository")
    t.add_argument("--model-prefix", default="promptserve", help="models are PREFIX_<graph>")
    t.add_argument("--instance-kind", choices=["KIND_GPU", "KIND_CPU"], default="KIND_GPU")
    t.add_argument("--instances", type=int, default=1, help="model instances per device")
    t.add_argument("--triton-max-batch-size", type=int, default=64)
    t.add_argument("--max-queue-delay-us", type=int, default=2000, help="dynamic batcher wait")
    t.add_argument(
        "--triton-backend",
        choices=["onnxruntime", "python"],
        default="onnxruntime",
        help="python: model.py running the graph with ONNX Runtime (Triton without its ORT backend)",
    )
    t.add_argument(
        "--tensorrt",
        choices=["fp16", "fp32"],
        help="run the static-shape graphs through TensorRT in Triton's ONNX Runtime backend; "
        "builds and checks the engines here (exits 2 where TensorRT is absent)",
    )
    t.add_argument(
        "--tensorrt-on-server",
        action="store_true",
        help="with --tensorrt: no local build; Triton builds the engines at model load (unchecked)",
    )
    t.add_argument(
        "--tensorrt-cache",
        default="/tmp/promptserve-trt-cache",
        help="engine cache directory (a path on the Triton server, e.g. on its volume)",
    )
    s.add_argument(
        "--tolerance", type=float, default=1e-4, help="max |onnx - torch| allowed (fp32: 1e-4)"
    )
    s.add_argument(
        "--no-deep-prompts",
        dest="deep_prompts",
        action="store_false",
        help="skip the prompted graphs MaPLe and IVLP artifacts need (halves the bundle size)",
    )
    s.add_argument(
        "--max-prompt-tokens", type=int, default=16, help="most deep-prompt tokens per layer"
    )
    s.add_argument(
        "--anomaly-size",
        type=int,
        help="also export AnomalyCLIP's dense graph at this input size (official: 518)",
    )
    s.add_argument(
        "--anomaly-taps",
        type=lambda t: tuple(int(v) for v in t.split(",")),
        default=(6, 12, 18, 24),
        help="1-based layers whose patch tokens make the map (official: 6,12,18,24)",
    )
    s.add_argument(
        "--dpam-layer", type=int, default=20, help="DPAM on the last N-1 blocks (official: 20)"
    )
    s.add_argument(
        "--winclip-scales",
        type=lambda t: tuple(int(v) for v in t.split(",")),
        help="also export WinCLIP's window graph with these window sizes (anomalib: 2,3)",
    )
    s.add_argument(
        "--segment",
        type=_segment_specs,
        default=(),
        metavar="METHOD[=SIZE],...",
        help="also export segmentation graphs: maskclip, sclip, clearclip, each at a window size "
        "(default 224; ClearCLIP's official is 448), e.g. sclip,clearclip=448",
    )
    s.set_defaults(fn=cmd_export)

    _import_parsers(sub)

    k8s = sub.add_parser("k8s", help="Kubernetes manifests from the app config")
    ksub = k8s.add_subparsers(dest="k8s_action", required=True, metavar="ACTION")
    kr = ksub.add_parser("render", help="a KubeRay RayService running this app config")
    kr.add_argument("config", type=Path, help="the config `promptserve serve` runs")
    kr.add_argument(
        "--cluster", type=Path, help="cluster settings YAML (deploy/k8s.py::ClusterConfig)"
    )
    kr.add_argument(
        "--data-root",
        type=Path,
        help="local directory the cluster's data volume mirrors (default: the config's directory)",
    )
    kr.add_argument("-o", "--output", type=Path, help="write DIR/rayservice.yaml (default: stdout)")
    kr.set_defaults(fn=cmd_k8s_render)

    ev = sub.add_parser("eval", help="evaluate a served prompt on a labelled dataset")
    esub = ev.add_subparsers(dest="task", required=True, metavar="TASK")
    ea = esub.add_parser(
        "anomaly", help="image AUROC, pixel AUROC and PRO on an MVTec AD layout folder"
    )
    ea.add_argument("--data", required=True, type=Path, help="<category>/test/<defect>/*.png ...")
    how = ea.add_mutually_exclusive_group(required=True)
    how.add_argument("--prompt-id", help="a registered anomaly prompt (AnomalyCLIP)")
    how.add_argument(
        "--winclip",
        action="store_true",
        help="WinCLIP, zero-shot, told each category's folder name as the object name",
    )
    ea.add_argument("--overlays", type=Path, help="write heat-map overlays under this folder")
    ea.add_argument("--json", type=Path, help="also write the metrics as JSON")
    ea.set_defaults(fn=cmd_eval_anomaly)
    es = esub.add_parser("segment", help="mIoU and per-class IoU on images + label masks")
    es.add_argument("--images", required=True, type=Path, help="a folder of images")
    es.add_argument("--masks", required=True, type=Path, help="<image stem>.png class-index masks")
    es.add_argument("--labels", required=True, type=Path, help="one class per line (', ' synonyms)")
    es.add_argument(
        "--method", choices=["maskclip", "sclip", "clearclip"], help="default: the server's first"
    )
    es.add_argument(
        "--short-side", type=int, help="resize before the sliding window (method default)"
    )
    es.add_argument(
        "--prob-threshold", type=float, default=0.0, help="below it: class 0 (background)"
    )
    es.add_argument("--ignore-index", type=int, default=255)
    es.add_argument("--json", type=Path, help="also write the metrics as JSON")
    es.set_defaults(fn=cmd_eval_segment)

    er = esub.add_parser(
        "retrieve", help="nDCG@10, Recall@100/1000, MRR@10 on a BEIR folder, through an index"
    )
    er.add_argument("--data", required=True, type=Path, help="corpus.jsonl, queries.jsonl, qrels/")
    er.add_argument("--index-id", required=True, help="indexed first (resumes: present ids skip)")
    er.add_argument("--prompt-id", help="create the index with this prompt if it is missing")
    er.add_argument("--split", default="test", help="qrels/<split>.tsv (default test)")
    er.add_argument("--modes", default="dense,sparse,hybrid", help="comma-separated")
    er.add_argument("--k", type=int, default=1000, help="documents per query (Recall@1000)")
    er.add_argument("--json", type=Path, help="also write the metrics as JSON")
    er.set_defaults(fn=cmd_eval_retrieve)

    ix = sub.add_parser("index", help="create, fill, list or delete retrieval indexes")
    xsub = ix.add_subparsers(dest="action", required=True, metavar="ACTION")
    x1 = xsub.add_parser("list", help="list indexes")
    x2 = xsub.add_parser("create", help="create an empty index")
    x2.add_argument("index_id")
    x2.add_argument("--prompt-id", required=True, help="the representation prompt it uses")
    x3 = xsub.add_parser("add", help="add a JSONL corpus (id/_id, text, title) with a progress bar")
    x3.add_argument("corpus", type=Path, help="JSONL: one document per line")
    x3.add_argument("--index-id", required=True)
    x3.add_argument("--prompt-id", help="create the index with this prompt if it is missing")
    x3.add_argument("--chunk-size", type=int, default=64, help="documents per request")
    x3.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    x4 = xsub.add_parser("rm", help="delete an index")
    x4.add_argument("index_id")
    for cmd in (x1, x2, x3, x4):
        cmd.set_defaults(fn=cmd_index)

    g = sub.add_parser(
        "generate", help="generate text with a served LLM prompt (soft prompt, IDP pool, hard)"
    )
    g.add_argument("text", metavar="TEXT", help="the prompt to continue (`-`: read stdin)")
    g.add_argument("--model", required=True, help="a generation model id (GET /v1/models)")
    g.add_argument("--chat", action="store_true", help="send TEXT as a user turn of a chat")
    g.add_argument(
        "--stream", action=argparse.BooleanOptionalAction, default=True,
        help="print the text as it is generated (default) or when complete",
    )  # fmt: skip
    g.add_argument("--max-tokens", type=int, help="new tokens at most")
    g.add_argument("--temperature", type=float, help="0 is greedy (server default 1)")
    g.add_argument("--top-p", type=float, help="nucleus sampling mass (default 1)")
    g.add_argument("--seed", type=int, help="repeatable sampling")
    g.add_argument("--stop", action="append", help="a stop sequence (repeatable)")
    g.set_defaults(fn=cmd_generate)

    pr = sub.add_parser("prompts", help="list, add or remove prompts on a running server")
    psub = pr.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = psub.add_parser("list", help="list registered prompts")
    s3 = psub.add_parser("add", help="register an artifact directory")
    s3.add_argument("artifact", type=Path)
    s3.add_argument("--prompt-id", help="name to serve it under")
    s4 = psub.add_parser("rm", help="remove a prompt")
    s4.add_argument("prompt_id")
    for cmd in (s, s3, s4, ea, es, er, x1, x2, x3, x4, g):
        cmd.add_argument(
            "--url",
            default=None,
            help="server URL (default $PROMPTSERVE_BASE_URL or http://127.0.0.1:8000)",
        )
        cmd.add_argument(
            "--api-key", default=None, help="bearer token (default $PROMPTSERVE_API_KEY)"
        )
        cmd.set_defaults(fn=cmd.get_default("fn") or cmd_prompts)
    return p


def _fail(args: argparse.Namespace, message: object, status: int) -> int:
    """Report an error the user can act on as one line on stderr (newlines and runs of spaces,
    e.g. of an HTML error page, collapsed), with no traceback, and return `status`."""
    text = " ".join(str(message).split())
    print(f"promptserve {args.command}: error: {text}", file=sys.stderr)
    return status


def _is_export_parity_error(exc: BaseException) -> bool:
    """Whether `exc` is the exporters' ExportParityError (a RuntimeError), matched by class name
    along its MRO: importing the class would import torch into every CLI run, and the exporters'
    module path is not fixed."""
    return any(cls.__name__ == "ExportParityError" for cls in type(exc).__mro__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Errors the user can act on are one line and a status, not a traceback:
    bad arguments, files or missing extras (ValueError, FileNotFoundError, ImportError) exit 2;
    errors of the SDK (the server's answer, or no answer) and a failed export parity check exit
    1; anything else is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, ImportError) as exc:
        return _fail(args, exc, 2)
    except PromptServeError as exc:
        if isinstance(exc, APIConnectionError) and exc.request is not None:
            # the SDK's message says what failed; say which server
            return _fail(args, f"{exc} ({exc.request.method} {exc.request.url})", 1)
        return _fail(args, exc, 1)
    except RuntimeError as exc:
        if not _is_export_parity_error(exc):
            raise
        return _fail(args, exc, 1)


if __name__ == "__main__":
    sys.exit(main())
