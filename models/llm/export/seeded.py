"""Tiny causal LMs with seeded random weights, written as real Hugging Face model folders.

They drive the tests, the demo and the benchmarks where no pretrained LLM can be downloaded:
each is saved with `save_pretrained` (safetensors) next to its tokenizer and loaded back
through `local-dir:` exactly like real weights (models/llm/backbone.py). Every figure they
produce comes from random weights.

The tokenizer is built offline: a byte-level BPE (`ByteLevel` pre-tokenizer and decoder, so
every string is encodable) trained on the small English corpus below, with the special tokens
and conventions of the family it imitates:

- llama: Llama-3's pre-tokenizer split, its chat-template markers (`<|begin_of_text|>`,
  `<|start_header_id|>`, `<|eot_id|>`, ..., the ones PromptReps' Llama-3 prompts use), BOS
  added by the post-processor, no pad token (PromptReps then pads with EOS).
- qwen2: Qwen2's pipeline (NFC, its split, no BOS) and specials (`<|endoftext|>` as EOS and
  pad, `<|im_start|>`, `<|im_end|>`). transformers 5 always loads a qwen2 folder's tokenizer
  as `Qwen2Tokenizer`, which rebuilds exactly that pipeline from the vocabulary and adds
  `<|endoftext|>` as pad if it is missing (an id past the embedding table); building the same
  tokenizer here keeps the saved tokenizer.json and the loaded one identical.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tokenizers import Tokenizer

Arch = Literal["llama", "qwen2"]


@dataclass(frozen=True)
class TokenizerStyle:
    """The parts of a real family's tokenizer the tiny one copies."""

    split: str  # the pre-tokenizer's regex (before ByteLevel)
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str | None
    nfc: bool
    end_of_turn: str  # the chat template's end of a turn: generation stops on it too
    chat_template: str


# meta-llama/Meta-Llama-3-8B tokenizer.json: pre_tokenizer Split pattern
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# transformers models/qwen2/tokenization_qwen2.py::PRETOKENIZE_REGEX
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json `chat_template`
_LLAMA3_CHAT = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Qwen/Qwen2-0.5B-Instruct tokenizer_config.json `chat_template`
_QWEN2_CHAT = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
STYLES: dict[str, TokenizerStyle] = {
    "llama": TokenizerStyle(
        split=_LLAMA3_SPLIT,
        specials=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
        bos="<|begin_of_text|>",
        eos="<|end_of_text|>",
        pad=None,
        nfc=False,
        end_of_turn="<|eot_id|>",
        chat_template=_LLAMA3_CHAT,
    ),
    "qwen2": TokenizerStyle(
        split=_QWEN2_SPLIT,
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        bos=None,
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        end_of_turn="<|im_end|>",
        chat_template=_QWEN2_CHAT,
        nfc=True,
    ),
}
VOCAB_SIZE = 2048  # the corpus below supports about 2,300 merges at most
# Shared by both architectures: tiny, but with grouped-query attention (2 kv heads of 4) and
# untied input/output embeddings, as in Llama-3 and Qwen2 7B+.
MODEL_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": False,
}

CORPUS = """\
The morning light crept over the hills and touched the roofs of the small village by the river.
Farmers walked to their fields with tools on their shoulders, and children ran along the muddy road to school.
In the market, traders sold apples, pears, cabbages, onions, fresh bread, cheese, eggs and honey from wooden stalls.
A baker shouted prices while a fisherman cleaned silver fish and threw the scraps to hungry gulls.
The old church bell rang nine times, and the town slowly filled with voices, wheels and footsteps.
Science begins with curiosity: a question, a careful observation, a measurement, and an honest record of what happened.
Researchers design experiments to test a hypothesis, repeat them, and report the results even when they disappoint.
Physics describes motion, energy, force, heat, light, sound, electricity and magnetism with simple equations.
Chemistry studies atoms and molecules, how elements bond, how reactions release or absorb energy, and why salt dissolves in water.
Biology explores living things, from bacteria and fungi to plants, insects, birds, fish, mammals and the human body.
Cells contain genes written in DNA, and proteins fold into shapes that let them carry signals or speed up reactions.
The heart pumps blood through arteries and veins, the lungs exchange oxygen and carbon dioxide, and the brain controls thought.
Doctors diagnose illness, prescribe medicine, perform surgery and advise patients on diet, sleep and exercise.
Nurses care for the sick in hospitals and clinics, checking temperature, pressure and pulse through long night shifts.
Mountains rise where continental plates collide, and rivers cut deep canyons through rock over millions of years.
Deserts receive little rain, yet cactus, lizards, scorpions and camels survive the heat of the day and the cold of the night.
Forests shelter deer, wolves, bears, foxes, owls and countless beetles, while their trees store carbon and shade the soil.
Oceans cover most of the planet; whales sing, sharks hunt, coral reefs glow with colour, and tides follow the moon.
Weather changes quickly: clouds gather, wind blows, thunder rolls, lightning flashes, and snow or hail may fall.
Climate is the long average of weather, shaped by sunlight, ice, oceans, forests and the gases in the atmosphere.
Astronomers watch stars, planets, comets and distant galaxies through telescopes on high mountains and in orbit.
The sun is a star; the earth turns once each day and travels around the sun once each year, tilted to make seasons.
History records kings and queens, wars and treaties, inventions, trade routes, plagues, revolutions and ordinary lives.
Ancient cities built walls, temples, roads, aqueducts and libraries, and scribes wrote laws on clay, stone and paper.
Empires rose and fell; merchants carried silk, spices, gold, silver, cotton, tea and ideas across deserts and seas.
Printing made books cheap, so more people learned to read, and newspapers spread news to every corner of the country.
Engines powered factories and railways; steam, coal and iron changed how people worked, travelled and lived.
Computers follow instructions called programs, written in languages that describe data, functions, loops and conditions.
A network connects machines so they can send messages; servers answer requests, and clients display the responses.
Software engineers write code, review changes, test features, fix bugs, measure performance and deploy new versions.
A database stores records in tables or documents, with indexes that make search fast even over billions of rows.
Machine learning fits models to examples; a neural network learns weights that map inputs to useful predictions.
Language models read text as tokens and predict the next word, one step at a time, from the words that came before.
Search engines rank documents by relevance to a query, using the words they share and vectors that capture meaning.
Retrieval finds the passage that answers a question, and a good retriever is both accurate and efficient.
You are an AI assistant that can understand human language and answer questions politely and clearly.
Use one word to represent the passage in a retrieval task, and make sure your word is in lowercase.
The word is simple, the query is short, and the answer is somewhere in the collection of documents.
Music fills the evening: a violin, a piano, a guitar, drums, a flute and a choir singing an old song.
Painters mix colours on a palette; red, orange, yellow, green, blue, purple, brown, black, white and grey.
Writers draft stories and poems, edit sentences, choose words with care, and publish novels, essays and letters.
Theatre actors rehearse their lines for weeks, and the audience laughs, cries and applauds at the end of the play.
Sports teach teamwork and patience; football, tennis, swimming, cycling, running and climbing keep the body strong.
A marathon runner trains for months, building endurance, eating well and resting after each long run.
Cooking turns raw ingredients into meals: chop vegetables, boil pasta, roast chicken, bake a cake, brew coffee.
Kitchens smell of garlic, butter, pepper, lemon, basil, cinnamon and chocolate on a busy holiday afternoon.
Families gather for dinner, share stories, argue about politics, wash the dishes and play games late into the night.
Cities grow as people move for work; buses, trains, bridges, tunnels, parks and shops serve millions of residents.
Architects draw plans for houses, schools, museums, towers and stadiums, balancing beauty, cost, safety and comfort.
Economics studies how people choose with limited money and time, how prices form, and why markets sometimes fail.
Banks lend money, pay interest, and keep savings safe; governments collect taxes and spend them on public services.
Law sets rules for society; judges hear cases, lawyers argue, juries decide, and citizens vote for their leaders.
Education opens doors: teachers explain, students practise, ask questions, take exams and earn their degrees.
Philosophy asks what is true, what is good, what we can know, and how we ought to live together in peace.
Mathematics proves theorems about numbers, shapes, sets, functions, probability, geometry, algebra and calculus.
Statistics summarises data with means, medians, variance and correlation, and warns that correlation is not cause.
Travellers pack bags, buy tickets, board planes or ships, cross borders, and learn new customs and languages.
Maps show roads, rivers, coasts, borders and mountains; a compass points north, and the stars guide sailors home.
Gardens need sunlight, water and patience; tomatoes, roses, tulips, herbs and strawberries grow in warm spring weather.
Animals communicate with calls, colours and dances; bees share directions to flowers, and dogs read human faces.
Volcanoes erupt with lava, ash and gas; earthquakes shake the ground, and tsunamis race across the ocean.
Glaciers carve valleys as they move, and melting ice raises the level of the sea along low coastal plains.
Energy comes from oil, gas, coal, nuclear reactors, dams, wind turbines and solar panels on sunny rooftops.
Electric cars use batteries charged from the grid; engineers work to make them cheaper, lighter and faster to charge.
Farmers rotate crops, irrigate dry land, protect soil from erosion, and store grain for the long winter months.
Bread rises when yeast ferments sugar and releases gas, and a hot oven turns the dough into a golden crust.
Friendship grows through kindness, honesty, loyalty and time spent together, through happy days and hard ones.
Memory is strange: we forget names quickly, yet remember a smell or a melody from childhood for many decades.
Sleep restores the body and mind; dreams mix memories, fears and wishes into scenes that rarely make sense.
Happiness, sadness, anger, fear, surprise and love colour every decision that people make each day.
Robots assemble cars, explore other planets, clean floors and help surgeons hold instruments with great precision.
Satellites orbit the planet to relay phone calls, measure storms, map forests and guide ships and aircraft.
Photographs capture a moment: a smile, a sunset, a storm over the harbour, a crowded street at midnight.
Museums preserve paintings, sculptures, fossils, coins, clothing and tools, telling the story of human culture.
Libraries lend books freely, offer quiet rooms for study, and help readers find information they can trust.
Newspapers, radio, television and the internet bring news, opinion, entertainment and advertising to the public.
Privacy matters: people want control over their personal data, their messages, their location and their history.
Security protects systems from attackers who steal passwords, spread viruses or hold files for ransom.
Good tools are simple to use, fast to start, clear in their errors, and honest about what they cannot do.
Numbers like one, two, three, four, five, six, seven, eight, nine, ten, hundred, thousand and million appear everywhere.
Days of the week are Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday; months run from January to December.
People often read about this topic, students learn it at school, and it is described in many encyclopedias.
Questions begin with who, what, when, where, why and how; answers should be short, precise and supported by evidence.
The quick brown fox jumps over the lazy dog while the cat sleeps quietly beside the warm kitchen stove.
"""


def default_cache_dir() -> Path:
    return Path(os.environ.get("PROMPTSERVE_CACHE", Path.home() / ".cache" / "promptserve"))


def build_tokenizer(arch: Arch = "llama") -> Tokenizer:
    """The byte-level BPE in `arch`'s style, trained on `CORPUS` (deterministic: same corpus,
    same merges)."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    style = _style(arch)
    tokenizer = Tokenizer(models.BPE())
    if style.nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(style.split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(style.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer)
    steps: list[processors.PostProcessor] = [processors.ByteLevel(trim_offsets=False)]
    if style.bos is not None:
        bos, bos_id = style.bos, tokenizer.token_to_id(style.bos)
        steps.append(
            processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
            )
        )
    tokenizer.post_processor = processors.Sequence(steps)
    return tokenizer


def _style(arch: str) -> TokenizerStyle:
    try:
        return STYLES[arch]
    except KeyError:
        raise ValueError(
            f"unknown tiny LLM architecture {arch!r}; use one of {sorted(STYLES)}"
        ) from None


def build_tiny_llm(out_dir: str | Path, arch: Arch = "llama", seed: int = 0) -> Path:
    """Write a tiny `arch` causal LM initialised with `seed`, and its tokenizer, to `out_dir`
    (a Hugging Face model folder; load it with `local-dir:OUT_DIR`). Same seed, same bytes.

    The folder is written next to `out_dir` and renamed into place, so a reader never sees
    a half-written model; an existing `out_dir` is replaced.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config
    from transformers.utils import logging as hf_logging

    style = _style(arch)
    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(arch),
        bos_token=style.bos,
        eos_token=style.eos,
        pad_token=style.pad,
    )
    tokenizer.chat_template = style.chat_template
    config = config_cls(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_CONFIG,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # as the real chat models ship it: a turn's end stops generation as EOS does
    model.generation_config.eos_token_id = [
        tokenizer.eos_token_id,
        tokenizer.convert_tokens_to_ids(style.end_of_turn),
    ]
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 1-shard "Writing model shards" bar says nothing here
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def demo_llm_dir(arch: Arch = "llama", seed: int = 0, directory: str | Path | None = None) -> Path:
    """The demo's tiny LLM folder under the cache (built on first use, reused after).

    The folder name carries a digest of this module, so a changed recipe (corpus, sizes)
    never reuses a stale model.
    """
    recipe = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]
    base = Path(directory) if directory is not None else default_cache_dir() / "llm"
    out = base / f"tiny-{arch}-seed{seed}-{recipe}"
    if not (out / "config.json").exists():
        build_tiny_llm(out, arch, seed)
    return out
