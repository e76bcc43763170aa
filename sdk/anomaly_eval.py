"""`promptserve eval anomaly`: image AUROC, pixel AUROC and PRO per category of an MVTec AD
layout folder, scored by a running server through the SDK.

Layout: `<category>/test/<defect>/<name>.png` with `<category>/ground_truth/<defect>/
<name>_mask.png` for every defect other than `good` (MVTec AD, VisA converted, and the tests'
synthetic sets). Maps come back at each image's size, so masks are compared pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from promptserve.anomaly_metrics import auroc, pro_auc

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Sample:
    path: Path
    defect: str
    mask: Path | None  # None for `good` images

    @property
    def anomalous(self) -> bool:
        return self.defect != "good"


def mvtec_samples(root: str | Path) -> dict[str, list[Sample]]:
    """Test images per category, in a stable order; raises if the layout is not MVTec's."""
    root = Path(root)
    out: dict[str, list[Sample]] = {}
    for category in sorted(p for p in root.iterdir() if (p / "test").is_dir()):
        samples = []
        for defect_dir in sorted(p for p in (category / "test").iterdir() if p.is_dir()):
            for path in sorted(defect_dir.iterdir()):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                mask = None
                if defect_dir.name != "good":
                    mask = category / "ground_truth" / defect_dir.name / f"{path.stem}_mask.png"
                    if not mask.exists():
                        raise FileNotFoundError(f"{path} has no ground-truth mask at {mask}")
                samples.append(Sample(path, defect_dir.name, mask))
        if samples:
            out[category.name] = samples
    if not out:
        raise FileNotFoundError(
            f"{root} has no <category>/test/<defect>/ images (MVTec AD layout expected)"
        )
    return out


def _mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    if sample.mask is None:
        return np.zeros(shape, dtype=bool)
    mask = Image.open(sample.mask).convert("L")
    if mask.size != (shape[1], shape[0]):
        mask = mask.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(mask) > 127


def category_metrics(
    samples: list[Sample], scores: np.ndarray, maps: list[np.ndarray]
) -> dict[str, float | int | None]:
    """Image AUROC over scores; pixel AUROC and PRO over all pixels of all images (None when
    the category lacks normal or anomalous examples)."""
    labels = np.array([s.anomalous for s in samples])
    masks = [_mask(s, m.shape) for s, m in zip(samples, maps, strict=True)]
    both = labels.any() and not labels.all()
    pixel_labels = np.concatenate([m.ravel() for m in masks])
    pixel_scores = np.concatenate([m.ravel() for m in maps])
    same_size = len({m.shape for m in maps}) == 1
    return {
        "images": len(samples),
        "anomalous": int(labels.sum()),
        "image_auroc": auroc(labels, scores) if both else None,
        "pixel_auroc": auroc(pixel_labels, pixel_scores) if both else None,
        # PRO stacks the maps; categories mixing image sizes are skipped
        "pro": pro_auc(np.stack(masks), np.stack(maps)) if both and same_size else None,
    }


def evaluate(
    detect: Callable[[list[Path], str], tuple[np.ndarray, list[np.ndarray]]],
    root: str | Path,
    *,
    overlays: str | Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float | int | None]]:
    """Metrics per category; `detect(paths, category) -> (scores, maps)` is the model (e.g. a
    Client's `detect_anomalies`). With `overlays`, writes `<category>/<defect>/<name>.png`
    heat-maps."""
    from tqdm.auto import tqdm

    from promptserve.overlay import overlay

    data = mvtec_samples(root)
    results = {}
    bar = tqdm(total=sum(len(v) for v in data.values()), desc="eval anomaly", disable=not progress)
    for category, samples in data.items():
        scores, maps = [], []
        for start in range(0, len(samples), 16):
            part = samples[start : start + 16]
            s, m = detect([x.path for x in part], category)
            scores.append(s)
            maps += m
            if overlays is not None:
                for sample, amap in zip(part, m, strict=True):
                    target = Path(overlays) / category / sample.defect / f"{sample.path.stem}.png"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    overlay(str(sample.path), amap, vmax=1.0).save(target)
            bar.update(len(part))
        results[category] = category_metrics(samples, np.concatenate(scores), maps)
    bar.close()
    return results


def format_table(results: dict[str, dict[str, float | int | None]]) -> str:
    def pct(v: float | int | None) -> str:
        return "   n/a" if v is None else f"{100 * v:6.1f}"

    lines = [f"{'category':<20} {'images':>6} {'img AUROC':>9} {'px AUROC':>9} {'PRO':>7}"]
    for name, r in results.items():
        lines.append(
            f"{name:<20} {r['images']:>6} {pct(r['image_auroc']):>9} {pct(r['pixel_auroc']):>9} "
            f"{pct(r['pro']):>7}"
        )
    for key in ("image_auroc", "pixel_auroc", "pro"):
        vals = [float(v) for r in results.values() if (v := r[key]) is not None]
        results_mean = float(np.mean(vals)) if vals else None
        lines.append(f"mean {key:<15} {pct(results_mean)}")
    return "\n".join(lines)
