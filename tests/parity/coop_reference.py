"""Independent references for the parity tests: CoOp inference and CLIP's template ensemble.

Nothing here imports promptserve. CoOp is transcribed from the official implementation,
KaiyangZhou/CoOp `trainers/coop.py` (commit ff61507): `PromptLearner.__init__/forward`,
`TextEncoder.forward` and `CustomCLIP.forward`, with OpenAI's `clip` package replaced by
open_clip:

    clip.tokenize               -> open_clip.tokenize
    _tokenizer.encode           -> open_clip.tokenizer.SimpleTokenizer().encode
    clip_model.dtype            -> clip_model.visual.conv1.weight.dtype (OpenAI's CLIP.dtype)

Everything else (token_embedding, positional_embedding, transformer, ln_final,
text_projection, visual, logit_scale) is the open_clip CLIP's attribute of the same name.

The template ensemble is openai/CLIP `notebooks/Prompt_Engineering_for_ImageNet.ipynb`
(`zeroshot_classifier`, also open_clip `zero_shot_classifier.py::build_zero_shot_classifier`):
per class, encode every template, L2-normalise each embedding, average, re-normalise.
"""

from __future__ import annotations

import open_clip
import torch
from torch import nn

_tokenizer = open_clip.tokenizer.SimpleTokenizer()


def clip_dtype(clip_model: nn.Module) -> torch.dtype:
    """OpenAI's `CLIP.dtype` property (open_clip's CLIP has no such attribute)."""
    return clip_model.visual.conv1.weight.dtype


class TextEncoder(nn.Module):
    """CoOp `TextEncoder`: encodes token-embedding sequences, pools at the EOT token."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.attn_mask = clip_model.attn_mask
        self.dtype = clip_dtype(clip_model)

    def forward(self, prompts: torch.Tensor, tokenized_prompts: torch.Tensor) -> torch.Tensor:
        x = prompts + self.positional_embedding.type(self.dtype)
        # The official code permutes NLD -> LND here and back afterwards because OpenAI's
        # transformer is sequence-first; open_clip's is batch-first (transformer.batch_first),
        # so x stays [N, L, D]. OpenAI's blocks hold the causal mask themselves; open_clip's
        # take it as an argument.
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x).type(self.dtype)
        # take features from the eot embedding (eot_token is the highest number in each sequence)
        x = x[torch.arange(x.shape[0]), tokenized_prompts.argmax(dim=-1)] @ self.text_projection
        return x


class PromptLearner(nn.Module):
    """CoOp `PromptLearner` with random context init (CTX_INIT empty), as in the official
    `__init__`; the cfg fields are keyword arguments. `seed` drives `nn.init.normal_`."""

    def __init__(
        self,
        classnames: list[str],
        clip_model: nn.Module,
        *,
        n_ctx: int,
        csc: bool,
        class_token_position: str,
        seed: int = 0,
    ) -> None:
        super().__init__()
        n_cls = len(classnames)
        dtype = clip_dtype(clip_model)
        ctx_dim = clip_model.ln_final.weight.shape[0]

        # random initialization
        if csc:
            ctx_vectors = torch.empty(n_cls, n_ctx, ctx_dim, dtype=dtype)
        else:
            ctx_vectors = torch.empty(n_ctx, ctx_dim, dtype=dtype)
        nn.init.normal_(ctx_vectors, std=0.02, generator=torch.Generator().manual_seed(seed))
        prompt_prefix = " ".join(["X"] * n_ctx)

        self.ctx = nn.Parameter(ctx_vectors)  # to be optimized

        classnames = [name.replace("_", " ") for name in classnames]
        name_lens = [len(_tokenizer.encode(name)) for name in classnames]
        prompts = [prompt_prefix + " " + name + "." for name in classnames]

        tokenized_prompts = torch.cat([open_clip.tokenize(p) for p in prompts])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokenized_prompts).type(dtype)

        # These token vectors will be saved when in save_model(),
        # but they should be ignored in load_model() as we want to use
        # those computed using the current class names
        self.register_buffer("token_prefix", embedding[:, :1, :])  # SOS
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx :, :])  # CLS, EOS

        self.n_cls = n_cls
        self.n_ctx = n_ctx
        self.tokenized_prompts = tokenized_prompts  # torch.Tensor
        self.name_lens = name_lens
        self.class_token_position = class_token_position

    def forward(self) -> torch.Tensor:
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)

        prefix = self.token_prefix
        suffix = self.token_suffix

        if self.class_token_position == "end":
            prompts = torch.cat(
                [
                    prefix,  # (n_cls, 1, dim)
                    ctx,  # (n_cls, n_ctx, dim)
                    suffix,  # (n_cls, *, dim)
                ],
                dim=1,
            )

        elif self.class_token_position == "middle":
            half_n_ctx = self.n_ctx // 2
            prompts = []
            for i in range(self.n_cls):
                name_len = self.name_lens[i]
                prefix_i = prefix[i : i + 1, :, :]
                class_i = suffix[i : i + 1, :name_len, :]
                suffix_i = suffix[i : i + 1, name_len:, :]
                ctx_i_half1 = ctx[i : i + 1, :half_n_ctx, :]
                ctx_i_half2 = ctx[i : i + 1, half_n_ctx:, :]
                prompt = torch.cat(
                    [
                        prefix_i,  # (1, 1, dim)
                        ctx_i_half1,  # (1, n_ctx//2, dim)
                        class_i,  # (1, name_len, dim)
                        ctx_i_half2,  # (1, n_ctx//2, dim)
                        suffix_i,  # (1, *, dim)
                    ],
                    dim=1,
                )
                prompts.append(prompt)
            prompts = torch.cat(prompts, dim=0)

        elif self.class_token_position == "front":
            prompts = []
            for i in range(self.n_cls):
                name_len = self.name_lens[i]
                prefix_i = prefix[i : i + 1, :, :]
                class_i = suffix[i : i + 1, :name_len, :]
                suffix_i = suffix[i : i + 1, name_len:, :]
                ctx_i = ctx[i : i + 1, :, :]
                prompt = torch.cat(
                    [
                        prefix_i,  # (1, 1, dim)
                        class_i,  # (1, name_len, dim)
                        ctx_i,  # (1, n_ctx, dim)
                        suffix_i,  # (1, *, dim)
                    ],
                    dim=1,
                )
                prompts.append(prompt)
            prompts = torch.cat(prompts, dim=0)

        else:
            raise ValueError

        return prompts


class CustomCLIP(nn.Module):
    """CoOp `CustomCLIP`: image features vs. prompt-learner text features, scaled cosine."""

    def __init__(self, classnames: list[str], clip_model: nn.Module, **learner_kwargs) -> None:
        super().__init__()
        self.prompt_learner = PromptLearner(classnames, clip_model, **learner_kwargs)
        self.tokenized_prompts = self.prompt_learner.tokenized_prompts
        self.image_encoder = clip_model.visual
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.dtype = clip_dtype(clip_model)

    def text_features(self) -> torch.Tensor:
        """The normalised class features of `forward` (the official computes them inline)."""
        prompts = self.prompt_learner()
        text_features = self.text_encoder(prompts, self.tokenized_prompts)
        return text_features / text_features.norm(dim=-1, keepdim=True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image_features = self.image_encoder(image.type(self.dtype))

        prompts = self.prompt_learner()
        tokenized_prompts = self.tokenized_prompts
        text_features = self.text_encoder(prompts, tokenized_prompts)

        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)

        logit_scale = self.logit_scale.exp()
        logits = logit_scale * image_features @ text_features.t()

        return logits


def load_prompt_learner(model: CustomCLIP, state_dict: dict[str, torch.Tensor]) -> None:
    """CoOp `load_model`: drop the fixed token vectors, load the rest with strict=False.

    `ctx` is upcast to the model's dtype (fp32 here), as promptserve always computes in fp32;
    the official copies an fp16 checkpoint into an fp16 (or fp32) parameter the same way.
    """
    state_dict = dict(state_dict)
    state_dict.pop("token_prefix", None)
    state_dict.pop("token_suffix", None)
    model.prompt_learner.load_state_dict(state_dict, strict=False)


# openai/CLIP notebooks/Prompt_Engineering_for_ImageNet.ipynb, verbatim.
IMAGENET_TEMPLATES: tuple[str, ...] = (
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


@torch.no_grad()
def zeroshot_classifier(
    clip_model: nn.Module, classnames: list[str], templates: list[str] | tuple[str, ...]
) -> torch.Tensor:
    """openai/CLIP's notebook `zeroshot_classifier`, returned as [n_cls, E] (the notebook
    stacks along dim=1 for `image_features @ weights`)."""
    zeroshot_weights = []
    for classname in classnames:
        texts = [template.format(classname) for template in templates]  # format with class
        texts = open_clip.tokenize(texts)  # tokenize
        class_embeddings = clip_model.encode_text(texts)  # embed with text encoder
        class_embeddings /= class_embeddings.norm(dim=-1, keepdim=True)
        class_embedding = class_embeddings.mean(dim=0)
        class_embedding /= class_embedding.norm()
        zeroshot_weights.append(class_embedding)
    return torch.stack(zeroshot_weights, dim=0)


@torch.no_grad()
def zero_shot_logits(
    clip_model: nn.Module, image: torch.Tensor, class_weights: torch.Tensor
) -> torch.Tensor:
    """The notebook's evaluation: normalised image features @ class weights, times 100 there;
    here times exp(logit_scale), as CoOp's CustomCLIP (the same for OpenAI's models)."""
    image_features = clip_model.visual(image)
    image_features = image_features / image_features.norm(dim=-1, keepdim=True)
    return clip_model.logit_scale.exp() * image_features @ class_weights.t()
