"""Running an OpenVINO LLM IR: openvino-genai for generation, the raw IR for logits."""

from __future__ import annotations

import json
import queue
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.errors import BackendError, UnsupportedError, UserError
from edgesmith.lmfeed import lm_feed
from edgesmith.logsoftmax import log_softmax
from edgesmith.runner import Runner
from edgesmith.types import Artifact, Context, RunRequest

from . import stack
from .compiled import check_device, read_compiled

_DONE = object()


def load(artifact: Artifact, opts: Mapping[str, Any], ctx: Context) -> Runner:
    """Handler of ``load openvino``; ``opts`` are parsed by the core
    (:data:`edgesmith_openvino.options.LOAD_OPTIONS`)."""
    directory = Path(artifact.path)
    compiled = read_compiled(directory)
    device = (opts.get("device") or compiled.get("device") or "cpu").upper()
    # The compiled properties and blob belong to the device they were made for.
    same = compiled.get("device", "").upper() == device
    props: dict[str, Any] = dict(compiled.get("properties", {})) if same else {}
    if ctx.threads and device in ("CPU", "AUTO"):
        props["INFERENCE_NUM_THREADS"] = int(ctx.threads)
    if not stack.is_llm(directory):
        # Encoders and vision IR (converted from ONNX): named arrays in, named arrays out.
        from .graph import GraphRunner

        xml = stack.ir_file(artifact)
        check_device(stack.core(), device)
        blob = directory / compiled["blob"] if same and compiled.get("blob") else None
        return GraphRunner(xml, device, props, blob if blob is not None and blob.is_file() else None,
                           truncate=opts.get("truncate", True))
    if not (directory / stack.TOKENIZER_IR[1]).is_file():
        raise stack.missing_tokenizer(directory)
    return OpenVINORunner(directory, device, props, compiled if same else {})


class OpenVINORunner(Runner):
    def __init__(self, directory: Path, device: str, props: dict[str, Any], compiled: dict[str, Any]):
        stack.quiet()
        import openvino_genai

        self._g = openvino_genai
        self._dir = directory
        self._device = device
        self._props = props
        self._compiled = compiled
        genai_props = dict(props)
        if compiled.get("genai_cache"):
            genai_props["CACHE_DIR"] = str(directory / compiled["genai_cache"])
        if compiled.get("npu_blob"):
            genai_props["BLOB_PATH"] = str(directory / compiled["npu_blob"])
        try:
            self._pipe = openvino_genai.LLMPipeline(str(directory), device, **genai_props)
        except Exception as exc:
            raise _load_error(directory, device, exc) from None
        self._tok = self._pipe.get_tokenizer()
        cfg = self._pipe.get_generation_config()
        self._eos = set(getattr(cfg, "stop_token_ids", set()) or set())
        if cfg.eos_token_id is not None and cfg.eos_token_id >= 0:
            self._eos.add(int(cfg.eos_token_id))
        self._logits_request: Any = None
        self.context_length = _context_length(directory)
        # Scoring imports the compiled blob made for this device instead of compiling the IR.
        self.from_blob = bool(compiled.get("blob")) and (directory / compiled["blob"]).is_file()

    # -- text <-> ids ---------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        enc = self._tok.encode(text, add_special_tokens=add_special)
        return [int(t) for t in enc.input_ids.data[0]]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        if not token_ids:
            return ""
        return self._tok.decode([int(t) for t in token_ids], skip_special_tokens=True)

    def chat_prompt(self, messages: Sequence[Mapping[str, str]]) -> str:
        history = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        try:
            return self._tok.apply_chat_template(history, add_generation_prompt=True)
        except Exception as exc:
            raise UnsupportedError(f"this model's tokenizer has no usable chat template "
                                   f"({stack.first_line(exc)}); use -p PROMPT instead") from None

    # -- generation -----------------------------------------------------------

    def _config(self, request: RunRequest) -> Any:
        cfg = self._pipe.get_generation_config()
        cfg.max_new_tokens = int(request.max_tokens)
        # A RunRequest means the same on every stack: no penalty unless asked for.
        # openvino-genai takes the checkpoint's generation_config.json otherwise
        # (Qwen2.5 ships repetition_penalty 1.05), so "greedy" would not be greedy.
        cfg.repetition_penalty = 1.0
        if request.temperature > 0:
            cfg.do_sample = True
            cfg.temperature = float(request.temperature)
            cfg.top_p = float(request.top_p)
            if request.top_k > 0:
                cfg.top_k = int(request.top_k)
            cfg.rng_seed = int(request.seed) if request.seed is not None else random.randrange(2**31)
        else:
            cfg.do_sample = False
        return cfg

    def stream_tokens(self, prompt_ids: list[int], request: RunRequest) -> Iterator[int]:
        g = self._g
        ov = stack.ov()
        ids = np.asarray([prompt_ids], dtype=np.int64)
        inputs = g.TokenizedInputs(ov.Tensor(ids), ov.Tensor(np.ones_like(ids)))
        config = self._config(request)
        tokens: queue.Queue[Any] = queue.Queue()
        halt = threading.Event()

        class Streamer(g.StreamerBase):
            # openvino-genai calls write() from its generation loop; returning STOP
            # ends generation early when the consumer closed the stream.
            def write(self, token: Any) -> Any:
                for t in token if isinstance(token, list) else [token]:
                    tokens.put(int(t))
                return g.StreamingStatus.STOP if halt.is_set() else g.StreamingStatus.RUNNING

            def end(self) -> None:
                pass

        streamer = Streamer()

        def work() -> None:
            try:
                self._pipe.generate(inputs, config, streamer)
            except BaseException as exc:  # handed to the consumer thread
                tokens.put(exc)
            finally:
                tokens.put(_DONE)

        thread = threading.Thread(target=work, name="openvino-genai-generate", daemon=True)
        thread.start()
        try:
            while True:
                item = tokens.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise BackendError(f"openvino-genai generation failed: {stack.first_line(item)}")
                if item in self._eos:
                    continue
                yield item
        finally:
            halt.set()
            thread.join()

    # -- scoring --------------------------------------------------------------

    def _request(self) -> Any:
        if self._logits_request is None:
            core = stack.core()
            if self.from_blob:
                with open(self._dir / self._compiled["blob"], "rb") as f:
                    compiled = core.import_model(f.read(), self._device, self._props)
            else:
                compiled = core.compile_model(str(self._dir / "openvino_model.xml"), self._device,
                                              self._props)
            self._logits_request = compiled.create_infer_request()
        return self._logits_request

    def logprobs(self, token_ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray([list(token_ids)], dtype=np.int64)
        if ids.shape[1] == 0:
            return np.zeros((0, 0), dtype=np.float32)
        req = self._request()
        feed = lm_feed(ids[0], (p.get_any_name() for p in req.model_inputs))
        # The IR is stateful (KV cache in variables): start every scoring pass empty.
        req.reset_state()
        req.infer(feed)
        logits = np.asarray(req.get_tensor("logits").data[0])
        req.reset_state()
        return log_softmax(logits)

    def close(self) -> None:
        self._logits_request = None
        self._pipe = None
        self._tok = None


def _context_length(directory: Path) -> int | None:
    try:
        cfg = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    value = cfg.get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


def _load_error(directory: Path, device: str, exc: BaseException) -> Exception:
    msg = stack.first_line(exc)
    low = str(exc).lower()
    if "device" in low and ("not" in low or "unavailable" in low) and device != "CPU":
        return UserError(f"OpenVINO cannot use device {device} here ({msg}); run with --option device=cpu")
    if any(w in low for w in ("parse", "xml", "read_model", "bin file", "weights", "corrupt")):
        return UserError(f"{directory} holds an unreadable OpenVINO IR ({msg}); re-export the model")
    return BackendError(f"openvino-genai could not load {directory}: {msg}")
