"""How deep-prompt rows are padded into one batch and which vision graph each row takes."""

from __future__ import annotations

import numpy as np

from promptserve.models.clip.deep_prompts import DeepPrompts, VisualPromptBatch, plan_vision_calls


def _prompts(depth: int, tokens: int, width: int = 4, fill: float = 1.0) -> DeepPrompts:
    return DeepPrompts(np.full((depth, tokens, width), fill, np.float32))


def test_stack_pads_to_the_longest_prompt_and_marks_plain_rows():
    a, b = _prompts(2, 3, fill=1.0), _prompts(1, 1, fill=2.0)
    batch = VisualPromptBatch.stack([a, None, b], layers=3, width=4)
    assert batch.visual_prompts.shape == (3, 3, 3, 4)
    assert batch.prompt_tokens.tolist() == [3, 0, 1]
    assert batch.prompt_depth.tolist() == [2, 0, 1]
    assert (batch.visual_prompts[0, :2] == 1).all() and (batch.visual_prompts[0, 2] == 0).all()
    assert (batch.visual_prompts[1] == 0).all()
    assert (batch.visual_prompts[2, 0, 0] == 2).all() and (
        batch.visual_prompts[2, 0, 1:] == 0
    ).all()


def test_plan_keeps_one_call_unless_padding_plain_rows_costs_too_much():
    short, long = _prompts(2, 2), _prompts(2, 16)

    def plan(rows, image_tokens=50, split_above=0.1):
        return [
            (idx.tolist(), prompted)
            for idx, prompted in plan_vision_calls(
                rows, image_tokens=image_tokens, split_above=split_above
            )
        ]

    assert plan([None, None]) == [([0, 1], False)]
    assert plan([short, long]) == [([0, 1], True)]  # no plain rows: nothing to split off
    assert plan([short, None, short]) == [([0, 1, 2], True)]  # 2/50 tokens: one call
    assert plan([None, long, None, short]) == [([0, 2], False), ([1, 3], True)]  # 16/50
    assert plan([None, long], split_above=0.5) == [([0, 1], True)]
    assert plan([None, long], image_tokens=None) == [([0, 1], True)]  # older bundles
