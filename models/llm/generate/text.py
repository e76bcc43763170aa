"""Token ids to streamed text, and stop sequences: engine-neutral, so both engines' outputs
read the same (vLLM is asked for token ids only).

Text is decoded from all of a request's ids each step and the new suffix sent, holding back a
trailing U+FFFD (half of a multi-byte character) until the next token completes it; a stop
sequence is cut with everything after it, and text that could be the start of one is held
until it cannot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["IncrementalText"]


class IncrementalText:
    """One request's output text, token by token. `tokenizer` has `decode(ids,
    skip_special_tokens=...)` (transformers or tokenizers)."""

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = [s for s in stop if s]
        self._hold = max((len(s) for s in self._stop), default=1) - 1
        self._ids: list[int] = []
        self._sent = 0  # characters of self._decoded already sent
        self.stopped = False

    def add(self, ids: Sequence[int], *, final: bool = False) -> str:
        """The text to send after `ids`; `final` flushes what was held back. After a stop
        sequence, `stopped` is set and later calls return ''."""
        if self.stopped:
            return ""
        self._ids.extend(ids)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):
            text = text.rstrip("\ufffd")
        # text that could begin a stop sequence is never sent, so one starts at or after _sent
        hits = [i for i in (text.find(s, self._sent) for s in self._stop) if i != -1]
        if hits:
            cut = min(hits)
            out, self._sent, self.stopped = text[self._sent : cut], cut, True
            return out
        end = len(text)
        if not final:
            for k in range(min(self._hold, end - self._sent), 0, -1):
                if any(s.startswith(text[end - k :]) for s in self._stop):
                    end -= k
                    break
        out, self._sent = text[self._sent : end], end
        return out
