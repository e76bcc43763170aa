"""Classify a folder of images against a registered prompt and against free labels.

promptserve demo            # in another terminal (or point --url at your server)
python examples/classify.py --url http://127.0.0.1:8000 --prompt-id demo-coop path/to/images
"""

from __future__ import annotations

import argparse
from pathlib import Path

from promptserve import Client, PromptNotFound


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("images", type=Path, help="a folder of images")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--prompt-id", default="demo-templates")
    p.add_argument("--labels", nargs="*", default=["a cat", "a dog", "a car"])
    args = p.parse_args()

    paths = sorted(
        q for q in args.images.iterdir() if q.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
    )
    with Client(args.url) as client:
        try:
            by_prompt = client.classify(
                paths, prompt_id=args.prompt_id, top_k=3
            )  # chunked + progress bar
        except PromptNotFound:
            print(
                f"{args.prompt_id} is not registered; have: {[p.prompt_id for p in client.list_prompts()]}"
            )
            return
        free = client.classify(paths, labels=args.labels, templates=["a photo of {}."])
    for path, a, b in zip(paths, by_prompt.results, free.results, strict=True):
        print(
            f"{path.name:<30} {a.top[0].label:<20} {a.top[0].score:.2f}   {b.top[0].label:<12} {b.top[0].score:.2f}"
        )


if __name__ == "__main__":
    main()
