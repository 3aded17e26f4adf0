"""Hold a converted model to transformers: the fidelity harness of the test kit.

:func:`compare` takes a Hugging Face checkpoint and a loaded :class:`~edgesmith.runner.Runner`
of its full-precision conversion and measures, on the same token ids:

- next-token distributions against transformers' float32 logits: top-1
  agreement, mean and max KL(reference || candidate) per position, over a
  chat-formatted text (special tokens included) longer than Gemma's window;
- greedy generation (20 tokens) against transformers' greedy ``generate``
  from the same prompt ids (a prefix of the scored text, chosen so that the
  reference does not stop early);
- tokenization of a text with Unicode, leading and repeated spaces, digits
  and the model's special tokens, against the Hugging Face tokenizer; and the
  chat prompt against ``apply_chat_template``.

It returns the numbers (:class:`Fidelity`), so a test asserts the bounds
(:meth:`Fidelity.failures`) and records them (:func:`record`). torch and
transformers are imported inside the functions: the test kit itself needs
neither. :class:`TransformersRunner` runs a checkpoint through transformers
behind the Runner interface, for candidates that are Hugging Face
checkpoints themselves (an imported GGUF, a deliberately broken copy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ..runner import Runner
from ..types import RunRequest

#: Bounds a full-precision conversion is held to.
TOP1_MIN = 0.99
MEAN_KL_MAX = 1e-3

#: Tokenizer probe: Unicode (composed and not), leading, repeated and trailing
#: spaces, tabs, newlines, digits in runs; the model's special tokens are added.
TOKENIZER_TEXT = (
    "  Leading spaces, then words.\tA tab; two  spaces; three   spaces.\n"
    "Numbers: 7, 42, 1234567, 3.14159, 2024-06-30 and 1,000,000.\n\n"
    " Unicode: café, naïve, Straße, Ångström, São Paulo, Ελληνικά, русский, 東京, 한국어, "
    "emoji 🎉👍🏽, math ∑ ≤ ∞, quotes “like this” — and a dash.\n"
    "Décomposé: cafe\u0301.   Trailing spaces   "
)

#: The conversation every model is scored on (its chat template frames it).
_MESSAGES = [
    {"role": "system", "content": "You are a careful reader."},
    {"role": "user", "content": "Please continue the story from where it stops."},
]


def _excerpt() -> str:
    from ..measure.text import load_text

    text = load_text(None)[0]
    start = text.index("Alice was beginning")
    return text[start:start + 3000]


@attrs.frozen
class Fidelity:
    """What :func:`compare` measured; ``top1``, ``mean_kl`` and ``max_kl`` over ``positions``."""

    label: str
    positions: int
    top1: float
    mean_kl: float
    max_kl: float
    max_kl_at: int
    #: Median probability of the reference's top-1 token: how peaked its distributions are.
    ref_top1_prob: float
    vocab_ref: int
    vocab_cand: int
    greedy_matched: int
    greedy_total: int
    greedy_ref: tuple[int, ...]
    greedy_cand: tuple[int, ...]
    tokenizer_equal: bool
    #: Where the tokenizations first differ, when they do.
    tokenizer_mismatch: str | None = None
    #: Runner.chat_prompt equals apply_chat_template (None: the runner has no chat template).
    chat_equal: bool | None = None

    def failures(self, *, top1: float = TOP1_MIN, mean_kl: float = MEAN_KL_MAX, greedy: bool = True,
                 tokenizer: bool = True) -> list[str]:
        """The bounds this result is outside of, one line each (empty: it is within all)."""
        out = []
        if self.vocab_cand != self.vocab_ref:
            out.append(f"vocabulary width {self.vocab_cand}, the reference's is {self.vocab_ref}")
        if not self.top1 >= top1:
            out.append(f"top-1 agreement {self.top1:.4f} < {top1}")
        if not self.mean_kl <= mean_kl:
            out.append(f"mean KL {self.mean_kl:.3g} > {mean_kl:g} (max {self.max_kl:.3g} at position "
                       f"{self.max_kl_at})")
        if greedy and self.greedy_matched < self.greedy_total:
            out.append(f"greedy generation matches {self.greedy_matched}/{self.greedy_total} tokens "
                       f"(reference {list(self.greedy_ref)}, candidate {list(self.greedy_cand)})")
        if tokenizer and not self.tokenizer_equal:
            out.append(f"tokenizer differs: {self.tokenizer_mismatch}")
        return out

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def row(self) -> str:
        """One line for a table: top-1, mean KL, max KL, greedy, tokenizer."""
        return (f"{self.label}: top1 {self.top1:.4f}  mean KL {self.mean_kl:.2e}  max KL {self.max_kl:.2e}  "
                f"greedy {self.greedy_matched}/{self.greedy_total}  tokenizer "
                f"{'equal' if self.tokenizer_equal else 'DIFFERS'}  (n={self.positions}, "
                f"ref top-1 p {self.ref_top1_prob:.2f})")


def record(result: Fidelity, path: str | Path | None = None) -> None:
    """Append ``result`` as a JSON line to ``path`` (default: ``$EDGESMITH_FIDELITY_LOG``, if set)."""
    path = path or os.environ.get("EDGESMITH_FIDELITY_LOG")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(result.as_dict(), default=list) + "\n")


def _hf(checkpoint: Path) -> tuple[Any, Any]:
    """(tokenizer, float32 model) of ``checkpoint`` through transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    return tok, model


def _logprobs(model: Any, ids: Sequence[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([list(ids)])).logits[0].double()
    return torch.log_softmax(logits, -1).numpy()


def _eos_ids(model: Any, tok: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        eos = tok.eos_token_id
    return [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]


def _greedy(model: Any, prompt: Sequence[int], n: int, eos: Sequence[int]) -> list[int]:
    """transformers' greedy ``generate`` from ``prompt``: the new ids before the first end of sequence."""
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([list(prompt)]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             max_new_tokens=n, min_new_tokens=0, do_sample=False, num_beams=1,
                             temperature=None, top_p=None, top_k=None, repetition_penalty=None,
                             eos_token_id=list(eos), pad_token_id=eos[0] if eos else 0)
    new = [int(t) for t in out[0, len(prompt):]]
    for k, t in enumerate(new):
        if t in eos:
            return new[:k]
    return new


def scored_ids(tok: Any, max_positions: int = 256) -> list[int]:
    """The ids every candidate is scored on: the conversation through the chat template,
    then the story, as the model's tokenizer gives them (special tokens included)."""
    prompt = tok.apply_chat_template(_MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt + _excerpt(), add_special_tokens=False)["input_ids"]
    return list(ids[:max_positions])


def _probe_text(tok: Any, rows: int) -> str:
    """:data:`TOKENIZER_TEXT` with the model's special tokens between words: BOS,
    EOS and the last added tokens that have an embedding row (``rows``). Gemma 3's
    tokenizer also has ``<image_soft_token>`` past its text embedding; a runtime
    cannot feed that id to the model, so it is no test of faithful tokenization."""
    specials = []
    added = [t for t, i in getattr(tok, "added_tokens_encoder", {}).items() if i < rows]
    for t in [tok.bos_token, tok.eos_token, *added[-4:]]:
        if t and t not in specials:
            specials.append(t)
    return TOKENIZER_TEXT + " " + " x ".join(specials) + " end"


def beyond_embedding(checkpoint: str | Path) -> dict[str, int]:
    """Tokens the Hugging Face tokenizer has whose ids the embedding has no row for."""
    from transformers import AutoConfig, AutoTokenizer

    rows = AutoConfig.from_pretrained(checkpoint).get_text_config().vocab_size
    tok = AutoTokenizer.from_pretrained(checkpoint)
    return {t: i for t, i in tok.get_vocab().items() if i >= rows}


def _first_difference(a: Sequence[int], b: Sequence[int]) -> str:
    k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"at token {k}: candidate {list(a[k:k + 6])}, reference {list(b[k:k + 6])} ({len(a)} vs {len(b)} ids)"


def _greedy_prompt(model: Any, ids: Sequence[int], n: int, eos: Sequence[int],
                   start: int | None) -> tuple[list[int], list[int]]:
    """A prefix of ``ids`` from which transformers generates ``n`` tokens greedily
    before any end of sequence (random weights may end early), and those tokens.
    The first prefix tried is the chat prompt and the story's first sentence."""
    cut = start or 48
    best: tuple[list[int], list[int]] = ([], [])
    while cut < len(ids):
        want = _greedy(model, ids[:cut], n, eos)
        if len(want) > len(best[1]):
            best = (list(ids[:cut]), want)
        if len(want) >= n:
            break
        cut += 8
    return best


def compare(checkpoint: str | Path, runner: Runner, *, label: str = "", max_positions: int = 256,
            gen_tokens: int = 20, prompt_tokens: int | None = None) -> Fidelity:
    """Measure ``runner`` (a conversion of ``checkpoint``) against transformers' float32 run of it."""
    checkpoint = Path(checkpoint)
    tok, model = _hf(checkpoint)
    ids = scored_ids(tok, max_positions)
    ref = _logprobs(model, ids)
    cand = np.asarray(runner.logprobs(ids), dtype=np.float64)
    width = min(ref.shape[1], cand.shape[1])
    p = np.exp(ref[:, :width])
    kl = (p * (ref[:, :width] - cand[:, :width])).sum(axis=1)
    top1 = float(np.mean(ref.argmax(axis=1) == cand.argmax(axis=1)))

    eos = _eos_ids(model, tok)
    prompt, want = _greedy_prompt(model, ids, gen_tokens, eos, prompt_tokens)
    got: list[int] = []
    for t in runner.stream_tokens(list(prompt), RunRequest(max_tokens=gen_tokens, temperature=0.0)):
        got.append(int(t))
        if len(got) >= gen_tokens:
            break
    matched = next((k for k, (x, y) in enumerate(zip(got, want, strict=False)) if x != y), min(len(got), len(want)))
    if len(got) != len(want) and matched == min(len(got), len(want)):
        total = max(len(got), len(want))
    else:
        total = len(want)

    text = _probe_text(tok, model.config.vocab_size)
    mismatch = None
    for add in (True, False):
        mine = list(runner.tokenize(text, add_special=add))
        theirs = list(tok(text, add_special_tokens=add)["input_ids"])
        if mine != theirs:
            mismatch = f"add_special={add} " + _first_difference(mine, theirs)
            break
    try:
        chat = runner.chat_prompt(_MESSAGES) == tok.apply_chat_template(
            _MESSAGES, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - a runner without templates
        chat = None
    return Fidelity(
        label=label or checkpoint.name, positions=len(ids), top1=top1, mean_kl=float(kl.mean()),
        max_kl=float(kl.max()), max_kl_at=int(kl.argmax()),
        ref_top1_prob=float(np.median(np.exp(ref.max(axis=1)))), vocab_ref=int(ref.shape[1]),
        vocab_cand=int(cand.shape[1]), greedy_matched=int(matched), greedy_total=int(total),
        greedy_ref=tuple(want), greedy_cand=tuple(got), tokenizer_equal=mismatch is None,
        tokenizer_mismatch=mismatch, chat_equal=chat)


def assert_caught(result: Fidelity) -> list[str]:
    """For a deliberately broken conversion (RoPE bases halved): the harness must
    report it outside the scoring and greedy bounds, with the tokenizer still equal.
    Its failures, printed with the row."""
    failures = result.failures()
    print(result.row(), *failures, sep="\n")
    assert result.top1 < 0.5 and result.mean_kl > 1.0
    assert [f.split(" ")[0] for f in failures] == ["top-1", "mean", "greedy"]
    assert result.tokenizer_equal
    return failures


def copy_with_config(src: str | Path, dest: str | Path, **changes: Any) -> Path:
    """A copy of checkpoint ``src`` whose config.json has ``changes`` applied: a
    top-level key each, or ``rope_theta`` to scale every RoPE base in ``rope_parameters``
    by the given factor (the deliberately broken candidate of the harness's own test)."""
    import shutil

    src, dest = Path(src), Path(dest)
    shutil.copytree(src, dest)
    cfg = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key == "rope_theta":
            params = cfg["rope_parameters"]
            for part in ([params] if "rope_theta" in params else params.values()):
                part["rope_theta"] = part["rope_theta"] * value
        else:
            cfg[key] = value
    (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return dest


class TransformersRunner(Runner):
    """A Hugging Face checkpoint run by transformers in float32, as a Runner
    (greedy generation only): the candidate when the candidate is itself a checkpoint."""

    backend = "transformers"

    def __init__(self, checkpoint: str | Path):
        self.path = Path(checkpoint)
        self._tok, self._model = _hf(self.path)
        self._eos = _eos_ids(self._model, self._tok)
        self.context_length = getattr(self._model.config, "max_position_embeddings", None)

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return list(self._tok(text, add_special_tokens=add_special)["input_ids"])

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self._tok.decode(list(token_ids), skip_special_tokens=True)

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        return _logprobs(self._model, token_ids).astype(np.float32)

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        if request.temperature:
            raise ValueError("TransformersRunner generates greedily only (temperature 0)")
        yield from _greedy(self._model, prompt_ids, request.max_tokens, self._eos)

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        return self._tok.apply_chat_template([dict(m) for m in messages], tokenize=False,
                                             add_generation_prompt=True)

    def close(self) -> None:
        self._model = None
