"""Segment a folder of images over a vocabulary and write colour overlays with a legend.

promptserve export --backbone ViT-B-16:openai --segment sclip,clearclip=448 -o bundles/vit-b-16
promptserve serve config.yaml
python examples/segment.py --labels "background, floor, wall" road car person -- path/to/images

A label may list synonyms separated by ", " (they score as one class, SCLIP's convention); with
--threshold, pixels less sure than it go to the first class (put the background first).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from promptserve import Client, segment_overlay


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("images", type=Path, help="a folder of images")
    p.add_argument("--labels", nargs="+", required=True, help="class names (', ' for synonyms)")
    p.add_argument("--method", choices=["maskclip", "sclip", "clearclip"])
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--out", type=Path, default=Path("segment-overlays"))
    args = p.parse_args()

    paths = sorted(
        q for q in args.images.iterdir() if q.suffix.lower() in {".jpg", ".jpeg", ".png"}
    )
    labels = [[n.strip() for n in label.split(", ")] for label in args.labels]
    args.out.mkdir(parents=True, exist_ok=True)
    with Client(args.url) as client:
        out = client.segment(
            paths, labels=labels, method=args.method, prob_threshold=args.threshold,
            return_scores=True, progress=True,
        )  # fmt: skip
    for path, result in zip(paths, out.results, strict=True):
        target = args.out / f"{path.stem}-segment.png"
        segment_overlay(path, result.labels(), out.labels).save(target)
        shares = ", ".join(f"{s.label} {100 * s.area:.0f}%" for s in result.scores or [])
        print(f"{path.name:<30} {shares} -> {target}")


if __name__ == "__main__":
    main()
