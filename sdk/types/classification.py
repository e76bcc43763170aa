"""Zero-shot classification wire schemas."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from promptserve.types.fields import Integer


class ClassifyRequest(BaseModel):
    """Body of `POST /v1/classify` (JSON form; multipart uploads carry the same fields)."""

    model_config = ConfigDict(extra="forbid")

    images: list[str] = Field(description="Base64-encoded image files (JPEG, PNG, WebP, ...).")
    prompt_id: str | None = Field(None, description="A registered prompt artifact.")
    labels: list[str] | None = Field(None, description="Free-text class names (zero-shot).")
    templates: list[str] | None = Field(
        None, description="Templates with one `{}` for free labels; default `a photo of a {}.`."
    )
    top_k: Integer = Field(5, ge=1, description="How many classes to return per image.")
    return_logits: bool = Field(False, description="Also return the full logit vector per image.")

    @model_validator(mode="after")
    def _one_head(self) -> ClassifyRequest:
        if (self.prompt_id is None) == (self.labels is None):
            raise ValueError("give exactly one of `prompt_id` or `labels`")
        return self


class LabelScore(BaseModel):
    """One class of one image's top-k."""

    label: str = Field(description="Class name.")
    index: int = Field(description="Position of the class in the prompt's class list.")
    score: float = Field(description="Softmax probability over all classes.")
    logit: float = Field(description="Scaled cosine similarity (CLIP logit).")


class PromptChoice(BaseModel):
    """One entry of a prompt pool that an image chose (dynamic prompting methods)."""

    index: int = Field(description="Position in the artifact's pool (L2P prompt, MoCoOp expert).")
    score: float = Field(
        description="L2P: cosine similarity of the image with the prompt's key; MoCoOp: the "
        "expert's gate weight (the two chosen weights sum to 1)."
    )


class ImageClassification(BaseModel):
    """Result for one input image, in input order."""

    index: int = Field(description="Position of the image in the request.")
    top: list[LabelScore] = Field(description="Best classes first.")
    logits: list[float] | None = Field(None, description="All logits, when requested.")
    chosen: list[PromptChoice] | None = Field(
        None, description="Pool entries this image chose, best first (`l2p`, `mocoop` only)."
    )


class ClassifyResponse(BaseModel):
    """Body returned by `POST /v1/classify`."""

    prompt_id: str | None = Field(description="The prompt used, if any.")
    backbone: str = Field(description="Id of the backbone that served the request.")
    labels: list[str] = Field(description="The class list the indices refer to.")
    results: list[ImageClassification]
