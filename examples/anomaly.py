"""Score a folder of images for anomalies and write heat-map overlays next to them.

promptserve export --backbone ViT-L-14-336:openai --anomaly-size 518 -o bundles/vit-l-14-336
promptserve import anomalyclip epoch_15.pth --backbone ViT-L-14-336:openai -o artifacts/ac
promptserve serve config.yaml && promptserve prompts add artifacts/ac --prompt-id anomalyclip
python examples/anomaly.py --url http://127.0.0.1:8000 --prompt-id anomalyclip path/to/images

WinCLIP needs no artifact, only the window graph in the bundle (`export --winclip-scales 2,3`):
python examples/anomaly.py --object-name bottle path/to/images
"""

from __future__ import annotations

import argparse
from pathlib import Path

from promptserve import Client, overlay


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("images", type=Path, help="a folder of images")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--prompt-id", help="a registered AnomalyCLIP prompt (default: anomalyclip)")
    how.add_argument("--object-name", help="what the images show, for WinCLIP (e.g. bottle)")
    p.add_argument("--out", type=Path, default=Path("anomaly-overlays"))
    args = p.parse_args()

    paths = sorted(
        q for q in args.images.iterdir() if q.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with Client(args.url) as client:
        if args.object_name:
            out = client.detect_anomalies(paths, object_name=args.object_name, progress=True)
        else:
            out = client.detect_anomalies(
                paths, prompt_id=args.prompt_id or "anomalyclip", progress=True
            )
    for path, result in sorted(zip(paths, out.results, strict=True), key=lambda x: -x[1].score):
        target = args.out / f"{path.stem}-anomaly.png"
        overlay(path, result.anomaly_map(), vmax=1.0).save(target)
        print(f"{result.score:.3f}  {path.name:<30} -> {target}")


if __name__ == "__main__":
    main()
