"""`promptserve eval retrieve`: a BEIR-format folder through a served index, scored by
pytrec_eval (the TREC measures the PromptReps paper reports: nDCG@10, Recall@100/1000; and
MRR@10).

A BEIR folder holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`)
and `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`, with a header row), as the BEIR
datasets ship them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptserve.optional import require

# name shown -> (pytrec_eval measure, its key in the results, run cut-off or None)
MEASURES: dict[str, tuple[str, str, int | None]] = {
    "nDCG@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    "Recall@100": ("recall.100", "recall_100", None),
    "Recall@1000": ("recall.1000", "recall_1000", None),
    # trec_eval's recip_rank has no cut-off: MRR@10 is recip_rank over the top 10 of the run
    "MRR@10": ("recip_rank", "recip_rank", 10),
}
Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Documents of a JSONL corpus: `id` or BEIR's `_id`, `text`, optional `title`."""
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(doc, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object per line")
            doc_id = doc.get("id", doc.get("_id"))
            yield {"id": None if doc_id is None else str(doc_id), "text": doc.get("text"),
                   "title": doc.get("title") or None}  # fmt: skip


@dataclass(frozen=True)
class BeirSet:
    folder: Path
    split: str

    def corpus(self) -> Iterator[dict[str, Any]]:
        return read_jsonl(self.folder / "corpus.jsonl")

    def queries(self) -> dict[str, str]:
        out = {}
        with (self.folder / "queries.jsonl").open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    q = json.loads(line)
                    out[str(q["_id"])] = q["text"]
        return out

    def qrels(self) -> Qrels:
        path = self.folder / "qrels" / f"{self.split}.tsv"
        out: Qrels = {}
        with path.open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t")
            header = next(rows, None)
            if header is not None and header[0].isdigit() and len(header) >= 3:
                out.setdefault(header[0], {})[header[1]] = int(header[2])  # no header row
            for row in rows:
                if len(row) >= 3:
                    out.setdefault(row[0], {})[row[1]] = int(row[2])
        return out


def score(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean of each measure over the judged queries (pytrec_eval, as trec_eval computes it:
    queries without a ranked document count as zero)."""
    pytrec_eval = require("pytrec_eval")
    out: dict[str, float] = {}
    judged = {q: rel for q, rel in qrels.items() if any(v > 0 for v in rel.values())}
    for name, (measure, key, cut) in MEASURES.items():
        cut_run = {q: _top(docs, cut) for q, docs in run.items()} if cut else run
        full = {q: cut_run.get(q, {}) for q in judged}
        per_query = pytrec_eval.RelevanceEvaluator(judged, {measure}).evaluate(full)
        values = [per_query.get(q, {}).get(key, 0.0) for q in judged]
        out[name] = sum(values) / len(values) if values else 0.0
    return out


def _top(docs: dict[str, float], n: int) -> dict[str, float]:
    return dict(sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def evaluate(
    data: BeirSet,
    search: Callable[[list[str], list[str], str], Run],
    modes: list[str],
) -> dict[str, dict[str, float]]:
    """Scores per mode: `search(query_ids, query_texts, mode)` returns the run."""
    qrels = data.qrels()
    queries = {q: t for q, t in data.queries().items() if q in qrels}
    ids, texts = list(queries), list(queries.values())
    return {mode: score(search(ids, texts, mode), qrels) for mode in modes}


def table(results: dict[str, dict[str, float]]) -> str:
    names = list(MEASURES)
    lines = [f"{'mode':<8} " + " ".join(f"{n:>11}" for n in names)]
    for mode, scores in results.items():
        lines.append(f"{mode:<8} " + " ".join(f"{scores[n]:>11.4f}" for n in names))
    return "\n".join(lines)
