"""Template presets for zero-shot class embeddings.

`IMAGENET_80` are the 80 prompt templates CLIP used for ImageNet (Radford et al., 2021,
openai/CLIP `notebooks/Prompt_Engineering_for_ImageNet.ipynb`); each has one `{}` for the name.
"""

from __future__ import annotations

from string import Formatter

DEFAULT_TEMPLATE = "a photo of a {}."

IMAGENET_80: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

PRESETS: dict[str, tuple[str, ...]] = {
    "imagenet80": IMAGENET_80,
    "default": (DEFAULT_TEMPLATE,),
}


def resolve_templates(templates: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A preset name, an explicit list, or None (the single default template)."""
    if templates is None:
        return PRESETS["default"]
    if isinstance(templates, str):
        if templates not in PRESETS:
            shown = templates if len(templates) <= 40 else templates[:40] + "…"
            raise ValueError(f"unknown template preset {shown!r}; presets: {sorted(PRESETS)}")
        return PRESETS[templates]
    if not templates:
        raise ValueError("`templates` is empty: give a preset name or at least one template")
    bad = [t for t in templates if not is_template(t)]
    if bad:
        raise ValueError(
            f"{len(bad)} template(s) are not text with exactly one '{{}}' placeholder and nothing else "
            f"str.format would read (write other braces as '{{{{' and '}}}}'), e.g. {bad[0][:60]!r}"
        )
    return tuple(templates)


def is_template(template: object) -> bool:
    """Text with exactly one bare `{}` field: the class name goes there, and nothing else
    str.format would interpret (`{0}`, `{x}`, `{.attr}`, a format spec, a lone brace)."""
    if not isinstance(template, str):
        return False
    try:
        fields = [(n, s, c) for _, n, s, c in Formatter().parse(template) if n is not None]
    except ValueError:  # a lone "{" or "}"
        return False
    return fields == [("", "", None)]
