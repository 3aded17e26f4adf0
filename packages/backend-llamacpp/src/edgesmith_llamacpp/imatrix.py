"""Importance matrix from calibration text, computed with llama.cpp itself.

What llama-imatrix computes, done through llama-cpp-python's low-level API:
the GGUF is evaluated on the calibration text in chunks, and a graph-eval
callback (`cb_eval`) sees the input activations of every matrix product
whose weight is a `blk.*` tensor. For each such weight we keep, per input
column j, the mean of x_j^2 over all tokens; that vector is what
`llama_model_quantize` receives through `params.imatrix` and uses to weight
the rounding error of each column. Dense models only (MoE expert products
go through MUL_MAT_ID, which this collector does not handle).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from edgesmith.calibration import read_text
from edgesmith.errors import UserError
from edgesmith.types import Context

_GGML_MAX_DIMS = 4
_GGML_MAX_SRC = 10
_GGML_MAX_OP_PARAMS = 64
_GGML_MAX_NAME = 64
_GGML_TYPE_F32 = 0
#: llama-imatrix skips small products (< 16 rows): they are warm-up/odd shapes.
_MIN_ROWS = 16
#: Tokens per evaluated chunk, as llama-imatrix's default context.
CHUNK = 512


class _GgmlTensor(ctypes.Structure):
    pass


_GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * _GGML_MAX_DIMS),
    ("nb", ctypes.c_size_t * _GGML_MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * (_GGML_MAX_OP_PARAMS // 4)),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(_GgmlTensor) * _GGML_MAX_SRC),
    ("view_src", ctypes.POINTER(_GgmlTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * _GGML_MAX_NAME),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


class ImportanceMatrix:
    def __init__(self, sums: dict[str, np.ndarray], counts: dict[str, int], tokens: int, chunks: int,
                 source: Path):
        self.data = {k: (sums[k] / counts[k]).astype(np.float32) for k in sums if counts[k] > 0}
        self.tokens = tokens
        self.chunks = chunks
        self.source = source
        self._keep: list[Any] = []

    def describe(self) -> dict[str, Any]:
        return {"calibration": str(self.source), "tokens": self.tokens, "chunks": self.chunks,
                "entries": len(self.data), "method": "mean squared activation per input column"}

    def as_ctypes(self) -> Any:
        """A NULL-terminated `llama_model_imatrix_data` array (kept alive by this object)."""
        import llama_cpp

        entries = (llama_cpp.llama_model_imatrix_data * (len(self.data) + 1))()
        for i, (name, values) in enumerate(sorted(self.data.items())):
            arr = np.ascontiguousarray(values, dtype=np.float32)
            cname = ctypes.create_string_buffer(name.encode())
            self._keep += [arr, cname]
            entries[i].name = ctypes.cast(cname, ctypes.c_char_p)
            entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = arr.size
        entries[len(self.data)].name = None
        self._keep.append(entries)
        return ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))



def compute_imatrix(gguf: Path, calibration: Path, *, threads: int, ctx: Context) -> ImportanceMatrix:
    import llama_cpp

    text = read_text(calibration)
    ggml = _ggml_base()
    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(gguf).encode(), mparams)
    if not model:
        raise UserError(f"llama.cpp could not load {gguf} to compute the importance matrix")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    moe = [False]

    @llama_cpp.ggml_backend_sched_eval_callback
    def collect(t_ptr: int, ask: bool, user_data: int) -> bool:
        t = ctypes.cast(t_ptr, ctypes.POINTER(_GgmlTensor))
        op = ggml.ggml_op_name(t.contents.op)
        if op == b"MUL_MAT_ID":
            moe[0] = True
            return False
        if op != b"MUL_MAT":
            return not ask  # ask=False for a node we did not ask for: keep computing
        w, x = t.contents.src[0].contents, t.contents.src[1].contents
        name = w.name.split(b"#")[0].decode()
        if ask:
            return name.startswith("blk.") and x.type == _GGML_TYPE_F32 and x.ne[1] >= _MIN_ROWS
        shape = (x.ne[3], x.ne[2], x.ne[1], x.ne[0])
        strides = (x.nb[3], x.nb[2], x.nb[1], x.nb[0])
        span = sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 4
        buf = (ctypes.c_char * span).from_address(x.data)
        acts = np.ndarray(shape, dtype=np.float32, buffer=buf, strides=strides)
        sq = np.square(acts, dtype=np.float64).reshape(-1, x.ne[0]).sum(axis=0)
        if name in sums:
            sums[name] += sq
        else:
            sums[name] = sq
        counts[name] = counts.get(name, 0) + int(x.ne[1] * x.ne[2] * x.ne[3])
        return True

    vocab = llama_cpp.llama_model_get_vocab(model)
    tokens = _tokenize(llama_cpp, vocab, text)
    n_chunks = len(tokens) // CHUNK
    if n_chunks < 1:
        llama_cpp.llama_model_free(model)
        raise UserError(f"{calibration} has {len(tokens)} tokens; the importance matrix needs at least "
                        f"{CHUNK} (a few pages of representative text)")
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = CHUNK
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.cb_eval = collect
    cparams.cb_eval_user_data = None
    lctx = llama_cpp.llama_init_from_model(model, cparams)
    if not lctx:
        llama_cpp.llama_model_free(model)
        raise UserError(f"llama.cpp could not create a context for {gguf}")
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    bos = llama_cpp.llama_vocab_bos(vocab)
    batch = llama_cpp.llama_batch_init(CHUNK, 0, 1)
    try:
        mem = llama_cpp.llama_get_memory(lctx)
        for c in range(n_chunks):
            ctx.progress("computing importance matrix", c, n_chunks)
            chunk = tokens[c * CHUNK:(c + 1) * CHUNK]
            if add_bos:
                chunk[0] = bos  # as llama-imatrix: each chunk starts like a fresh document
            llama_cpp.llama_memory_clear(mem, True)
            batch.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                batch.token[i] = tok
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                # Outputs at every position, as llama-imatrix: otherwise llama.cpp prunes the
                # last layer's rows to the final token and its FFN would go unmeasured.
                batch.logits[i] = True
            rc = llama_cpp.llama_decode(lctx, batch)
            if rc != 0:
                raise UserError(f"llama.cpp failed (code {rc}) while computing the importance matrix")
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(lctx)
        llama_cpp.llama_model_free(model)
    if moe[0]:
        raise UserError("importance matrices for mixture-of-experts models are not supported by "
                        "edgesmith yet; quantize without --calibration")
    if not sums:
        raise UserError(f"no activations were collected from {gguf}; is it a decoder-only LLM?")
    return ImportanceMatrix(sums, counts, tokens=n_chunks * CHUNK, chunks=n_chunks, source=calibration)


def _tokenize(llama_cpp: Any, vocab: Any, text: str) -> list[int]:
    data = text.encode("utf-8")
    n_max = len(data) + 16
    buf = (llama_cpp.llama_token * n_max)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, n_max, False, False)
    if n < 0:
        raise UserError("the calibration text could not be tokenized")
    return list(buf[:n])


def _ggml_base() -> Any:
    """libggml-base from the llama_cpp package, for ggml_op_name."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll"):
        cand = lib_dir / name
        if cand.exists():
            lib = ctypes.CDLL(str(cand))
            lib.ggml_op_name.restype = ctypes.c_char_p
            lib.ggml_op_name.argtypes = [ctypes.c_int]
            return lib
    raise UserError(f"cannot find libggml-base in {lib_dir}; reinstall llama-cpp-python")
