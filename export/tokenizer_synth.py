"""A byte-level BPE tokenizer trained locally on source code, with the harmony special tokens of gpt-oss.

The real o200k_harmony tokenizer cannot be downloaded here; this one has the same kind (byte-level BPE,
so any text round-trips) and the same special tokens, which is what the export and the runtime rely on.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from edge_runtime.harmony import HARMONY_SPECIAL_TOKENS

# Standard-library modules present in every CPython: real code to learn merges from.
CORPUS_MODULES = (
    "argparse",
    "ast",
    "bisect",
    "calendar",
    "csv",
    "dataclasses",
    "difflib",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "inspect",
    "json.decoder",
    "json.encoder",
    "pathlib",
    "pprint",
    "shlex",
    "statistics",
    "string",
    "textwrap",
    "tokenize",
    "typing",
    "uuid",
)

# A harmony chat template in the shape of gpt-oss's: system header, optional developer message,
# conversation turns, and the assistant's final channel.
CHAT_TEMPLATE = (
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
    "Reasoning: {{ reasoning_effort | default('medium') }}\n\n"
    "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' or message['role'] == 'developer' -%}"
    "<|start|>developer<|message|># Instructions\n\n{{ message['content'] }}<|end|>"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- if message.get('thinking') -%}"
    "<|start|>assistant<|channel|>analysis<|message|>{{ message['thinking'] }}<|end|>"
    "{%- endif -%}"
    "<|start|>assistant<|channel|>final<|message|>{{ message['content'] }}"
    "{%- if loop.last and not add_generation_prompt -%}<|return|>{%- else -%}<|end|>{%- endif -%}"
    "{%- else -%}"
    "<|start|>{{ message['role'] }}<|message|>{{ message['content'] }}<|end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}"
)


def training_corpus() -> list[str]:
    texts = []
    for name in CORPUS_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            texts.append(Path(spec.origin).read_text(encoding="utf-8"))
    return texts


def train_tokenizer(vocab_size: int, texts: Iterable[str] | None = None) -> Tokenizer:
    """A byte-level BPE learned from `texts` (a fixed set of standard-library modules by default)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(HARMONY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus() if texts is None else texts, trainer=trainer)
    tokenizer.add_special_tokens(list(HARMONY_SPECIAL_TOKENS))
    return tokenizer


def write_tokenizer_files(folder: Path, vocab_size: int, texts: Iterable[str] | None = None) -> dict[str, int]:
    """Write tokenizer.json and tokenizer_config.json; return the special token ids and the vocabulary size."""
    tokenizer = train_tokenizer(vocab_size, texts)
    tokenizer.save(str(folder / "tokenizer.json"))
    ids: dict[str, int] = {}
    for token in HARMONY_SPECIAL_TOKENS:
        token_id = tokenizer.token_to_id(token)
        assert token_id is not None  # added just above
        ids[token] = token_id
    added = {
        str(ids[token]): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for token in HARMONY_SPECIAL_TOKENS
    }
    config = {
        "added_tokens_decoder": added,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|return|>",
        "pad_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    result = dict(ids)
    result["vocab_size"] = tokenizer.get_vocab_size(with_added_tokens=True)
    return result
