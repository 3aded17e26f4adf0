"""Opening a Hugging Face checkpoint directory safely, with one-line errors.

Safe by default: weights are read from safetensors only (a pickle-only
checkpoint needs ``--allow-pickle``), model and tokenizer code shipped with a
checkpoint runs only with ``--trust-remote-code`` (and code it names in another
repository is refused), nothing is fetched from the hub (``local_files_only``)
and the hub client is kept offline and silent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgesmith import offline
from edgesmith.errors import BackendError, UserError
from edgesmith.formats import check_pickle
from edgesmith.types import Artifact, Context
from edgesmith.weights import check_safetensors, check_tokenizer, safe_weights

from .options import TORCH_DTYPES

#: On top of :data:`edgesmith.offline.OFFLINE_ENV`: no hub progress bars and no
#: advisory warnings from transformers on a job's or a chat's terminal.
STACK_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise UserError(f"{directory} has no config.json; give a Hugging Face checkpoint directory")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); repair or replace it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object; repair or replace it")
    return data


def check_files(art: Artifact, ctx: Context) -> None:
    """What the core checks for a path, again for an :class:`Artifact` handed to
    ``api.load`` directly (which skips those checks): pickle, truncated weights,
    a missing tokenizer, and weights transformers would find at all."""
    directory = art.directory
    check_pickle(art, ctx.allow_pickle)
    check_safetensors(directory)
    check_tokenizer(directory)
    if not safe_weights(directory) and not (ctx.allow_pickle and _pickle_weights(directory)):
        raise UserError(f"{directory} has no model.safetensors (or complete safetensors index); "
                        f"copy the checkpoint's weights into it")


def _pickle_weights(directory: Path) -> bool:
    """The pickle weight files transformers loads (a single file or shards)."""
    return any(directory.glob("pytorch_model*.bin"))


def causal_lm_problem(config: Mapping[str, Any], trust_remote_code: bool) -> str | None:
    """Why transformers' AutoModelForCausalLM would not give this checkpoint's
    language model (None: it would). Imports transformers' class tables only."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if trust_remote_code and "AutoModelForCausalLM" in (config.get("auto_map") or {}):
        return None
    kind = config.get("model_type")
    cls = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        if (config.get("auto_map") or {}).get("AutoModelForCausalLM"):
            return (f"its model_type {kind!r} is defined by code its config names (auto_map); pass "
                    f"--trust-remote-code if you trust its source")
        return (f"transformers has no causal language model for model_type {kind!r} "
                f"(encoders and other kinds of model cannot be scored token by token)")
    # A checkpoint saved from another head (BertForMaskedLM, BertModel) would get a
    # freshly initialised LM head: refuse rather than score random weights.
    named = [a for a in config.get("architectures") or [] if isinstance(a, str)]
    if named and cls not in named:
        return (f"its weights are for {', '.join(named)}, not for the causal language model {cls}; "
                f"give a checkpoint saved from {cls}")
    return None


def code_elsewhere(directory: Path, config: Mapping[str, Any]) -> str | None:
    """The repository named by an ``auto_map`` entry (``org/repo--module.Class``) of the
    config or tokenizer config: code transformers would download, whatever
    ``local_files_only`` says (huggingface_hub builds its request headers first,
    and that alone looks the Hub up unless the hub client is offline)."""
    maps = [config.get("auto_map")]
    tok = directory / "tokenizer_config.json"
    if tok.is_file():
        try:
            maps.append(json.loads(tok.read_text(encoding="utf-8")).get("auto_map"))
        except (UnicodeDecodeError, ValueError, AttributeError):
            pass  # transformers names a broken tokenizer config itself
    refs: list[Any] = []
    for m in maps:
        if isinstance(m, dict):
            refs += [r for v in m.values() for r in (v if isinstance(v, list) else [v])]
    return next((r.split("--")[0] for r in refs if isinstance(r, str) and "--" in r), None)


def prepare(art: Artifact, ctx: Context) -> tuple[Path, dict[str, Any]]:
    """(directory, config) of ``art`` once its files are checked and the hub is
    offline; refuses model code named in another repository."""
    directory = Path(art.directory)
    config = read_config(directory)
    check_files(art, ctx)
    # Before transformers (and huggingface_hub through it) is first imported:
    # the hub client reads these once. The model outlives any job, so they stay set.
    offline.set_defaults(STACK_ENV)
    # Without --trust-remote-code transformers never fetches that code (it uses its
    # own class for a model_type it knows, and refuses one it does not).
    elsewhere = code_elsewhere(directory, config) if ctx.trust_remote_code else None
    if elsewhere:
        raise UserError(f"{directory} names model code in the repository {elsewhere} (its auto_map); "
                        f"edgesmith reads local files only: copy that code into the checkpoint and "
                        f"name it without the '{elsewhere}--' prefix")
    return directory, config


def open_checkpoint(art: Artifact, options: Mapping[str, Any], ctx: Context) -> tuple[Any, Any]:
    """(tokenizer, model in eval mode) of the checkpoint ``art``, on the CPU."""
    directory, config = prepare(art, ctx)
    problem = causal_lm_problem(config, ctx.trust_remote_code)
    if problem:
        raise UserError(f"backend transformers cannot run {directory}: {problem}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common = {"trust_remote_code": ctx.trust_remote_code, "local_files_only": True}
    ctx.progress("loading the tokenizer", None, None)
    tokenizer = vendor_call(lambda: AutoTokenizer.from_pretrained(str(directory), **common), directory, "tokenizer")
    ctx.progress("loading the model", None, None)
    dtype = getattr(torch, TORCH_DTYPES[options["dtype"]])
    model = vendor_call(lambda: AutoModelForCausalLM.from_pretrained(
        str(directory), dtype=dtype, attn_implementation=options["attn_implementation"],
        # True: transformers never falls back to pickle files; None lets it choose
        # (safetensors first) once the user has allowed pickle.
        use_safetensors=None if ctx.allow_pickle else True, **common), directory, "model")
    return tokenizer, model.eval()


def vendor_call(call: Any, directory: Path, what: str) -> Any:
    """``call()``, with transformers' errors about the checkpoint as one-line UserErrors."""
    try:
        return call()
    except (KeyboardInterrupt, UserError):
        raise
    except (ValueError, OSError, KeyError, ImportError) as exc:
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if "trust_remote_code" in msg:
            raise UserError(f"{directory} needs code shipped with it to load its {what}; pass "
                            f"--trust-remote-code if you trust its source") from None
        if isinstance(exc, OSError) and ("local_files_only" in msg or "offline" in msg.lower()
                                         or "cannot find the requested files" in msg.lower()):
            raise UserError(f"{directory}: transformers would fetch files for its {what} from the "
                            f"Hugging Face hub ({_first_sentence(msg)}); edgesmith reads local files only: "
                            f"put those files into the checkpoint directory") from None
        raise UserError(f"transformers cannot load the {what} of {directory}: {_first_sentence(msg)}; "
                        f"check that the checkpoint directory is complete") from None
    except Exception as exc:
        raise BackendError(f"transformers failed to load the {what} of {directory}: "
                           f"{_first_sentence(str(exc)) or type(exc).__name__}") from exc


def _first_sentence(msg: str, limit: int = 300) -> str:
    msg = " ".join(msg.split())
    cut = msg.find(". ")
    msg = msg[: cut + 1] if 0 < cut < limit else msg
    return msg[:limit].rstrip(".")
