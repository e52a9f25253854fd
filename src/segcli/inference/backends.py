"""Load a model file into a Predictor, whatever it is: a segcli checkpoint (.ckpt, torch eager),
an exported TorchScript file (.pt, torch.jit) or an exported ONNX file (.onnx, onnxruntime).

Exported files carry the same self-description as checkpoints (see segcli.export.metadata):
as JSON in ONNX metadata_props["segcli"] or in the TorchScript extra file "segcli.json".
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import torch

from segcli.errors import ConfigError, DataError, first_line
from segcli.inference.predictor import Predictor

META_KEY = "segcli"  # ONNX metadata_props key holding the JSON self-description
TORCHSCRIPT_META = "segcli.json"  # TorchScript extra file holding the same JSON
ORT_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                    "all": "ORT_ENABLE_ALL"}  # config value → onnxruntime GraphOptimizationLevel


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → cuda when available, else cpu."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = str(name).strip().lower()
    if name not in ("cpu", "cuda", "mps") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ConfigError(f"device={name}: give auto, cpu, cuda or cuda:N (N: the GPU's index)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device=mps but Apple's MPS backend is not available here; use device=cpu")
    return torch.device(name)


def model_kind(path: str | Path) -> str:
    """'onnx', 'torchscript' or 'checkpoint', from the suffix (.onnx) or the archive's content."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found; pass a .ckpt checkpoint or a file written by `segcli export`")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("/constants.pkl") for name in archive.namelist()):
                return "torchscript"
    return "checkpoint"


def read_checkpoint(path: str | Path) -> dict:
    """torch.load a checkpoint safely (weights_only=True: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; pass --ckpt RUN_DIR/checkpoints/best.ckpt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        refused = unsafe_global(err)
        if refused:
            raise DataError(f"{path}: refused to load: it pickles {refused}, which could run code (segcli loads only "
                            "tensors and plain data); use a checkpoint written by `segcli train`") from None
        raise DataError(f"{path}: not a readable checkpoint ({type(err).__name__}); it may be truncated or not a segcli .ckpt") from None
    meta = (ckpt.get("hyper_parameters") or {}).get("meta") if isinstance(ckpt, dict) else None
    if not meta or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a segcli checkpoint (no segcli metadata); train it with `segcli train`")
    return ckpt


def unsafe_global(err: Exception) -> str | None:
    """The name of the Python object a weights_only torch.load refused to unpickle, or None for other failures."""
    import re

    match = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    return match.group(1) if match else None


def load_torch_model(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network of a segcli checkpoint from its own metadata → (model in eval mode, meta)."""
    from segcli.models.factory import build_model

    ckpt = read_checkpoint(path)
    meta = ckpt["hyper_parameters"]["meta"]
    model = build_model(**meta["model"], check_kwargs=False)  # as trained, even with kwargs smp ignored
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(f"{path}: weights do not fit {meta['model']['arch']}/{meta['model']['encoder']} "
                        f"({first_line(err)})") from None
    return model.eval(), meta


def eager_predictor(model: torch.nn.Module, meta: dict, device: str | torch.device = "cpu", batch_size: int = 4) -> Predictor:
    """A Predictor over an eager torch model, moved (in place) to `device` and channels-last (faster convolutions)."""
    dev = torch.device(device)
    model = model.eval().to(dev, memory_format=torch.channels_last)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x.contiguous(memory_format=torch.channels_last))

    return Predictor(forward, meta, dev, batch_size)


def torch_predictor(path: str | Path, device: str = "auto", batch_size: int = 4) -> Predictor:
    """A Predictor for a segcli checkpoint (.ckpt)."""
    model, meta = load_torch_model(path)
    return eager_predictor(model, meta, resolve_device(device), batch_size)


def _half_device(path: Path, meta: dict, device: torch.device) -> None:
    if meta.get("dtype") == "float16" and device.type != "cuda":
        raise ConfigError(f"{path}: a float16 (--half) export runs on a CUDA device only, and none is selected or "
                          "available; use device=cuda, or export without --half")


def torchscript_predictor(path: str | Path, device: str = "auto", batch_size: int = 4) -> Predictor:
    """A Predictor for a TorchScript file written by `segcli export --format torchscript`."""
    path = Path(path)
    dev = resolve_device(device)
    extra = {TORCHSCRIPT_META: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": not actionable for our users
            module = torch.jit.load(str(path), map_location=dev, _extra_files=extra)
    except Exception as err:
        raise DataError(f"{path}: torch.jit cannot load it ({type(err).__name__}); re-export with `segcli export`") from None
    meta = _parse_meta(path, extra[TORCHSCRIPT_META], f"extra file '{TORCHSCRIPT_META}'")
    _half_device(path, meta, dev)
    dtype = torch.float16 if meta.get("dtype") == "float16" else torch.float32

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = module(x.to(dtype))
        return out.float() if out.is_floating_point() else out

    return Predictor(forward, meta, dev, batch_size)


def _parse_meta(path: Path, raw: str | bytes | None, where: str) -> dict:
    if not raw:
        raise DataError(f"{path}: no segcli metadata ({where} is missing), so its classes, palette and normalisation "
                        "are unknown; export the model with `segcli export --ckpt CKPT`")
    try:
        meta = json.loads(raw)
        for key in ("classes", "palette", "ignore_index", "mean", "std", "size_multiple"):
            meta[key]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: its segcli metadata ({where}) is invalid ({type(err).__name__}: {err}); "
                        "re-export with `segcli export`") from None
    return meta


def ort_session(path: str | Path, device: str = "cpu", graph_optimization: str = "all", intra_op_threads: int = 0):
    """An onnxruntime InferenceSession on the CPU provider, or CUDA (+ CPU fallback) when device is cuda.

    intra_op_threads: 0 keeps onnxruntime's default (one thread per physical core).
    """
    import onnxruntime as ort

    path = Path(path)
    if graph_optimization not in ORT_OPTIMIZATION:
        raise ConfigError(f"unknown onnxruntime graph optimisation '{graph_optimization}'; choose from {', '.join(ORT_OPTIMIZATION)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_OPTIMIZATION[graph_optimization])
    options.intra_op_num_threads = int(intra_op_threads)
    options.log_severity_level = 4  # fatal only: its errors reach the user as exceptions, its warnings are not for them
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"device={device} but onnxruntime has no CUDA provider; install onnxruntime-gpu or use device=cpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:
        first = first_line(err)
        raise DataError(f"{path}: onnxruntime cannot load it ({type(err).__name__}: {first}); re-export with `segcli export`") from None


def onnx_predictor(path: str | Path, device: str = "auto", batch_size: int = 4, graph_optimization: str = "all",
                   intra_op_threads: int = 0) -> Predictor:
    """An onnxruntime session behind the same Predictor (CUDA provider when device is cuda, or auto and present)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: ONNX model not found")
    if device in (None, "auto"):
        device = "cuda" if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available() else "cpu"
    device = str(resolve_device(device))  # a name torch does not know is a usage error here too
    session = ort_session(path, device, graph_optimization, intra_op_threads)
    meta = _parse_meta(path, session.get_modelmeta().custom_metadata_map.get(META_KEY), f"metadata_props['{META_KEY}']")
    _half_device(path, meta, torch.device("cuda" if str(device).startswith("cuda") else "cpu"))
    model_input = session.get_inputs()[0]
    np_dtype = "float16" if model_input.type == "tensor(float16)" else "float32"

    def forward(x: torch.Tensor) -> torch.Tensor:
        (out,) = session.run(None, {model_input.name: x.detach().cpu().contiguous().numpy().astype(np_dtype, copy=False)})
        out = torch.from_numpy(out)
        return out.float() if out.is_floating_point() else out

    return Predictor(forward, meta, "cpu", batch_size)


def load_predictor(path: str | Path, device: str = "auto", batch_size: int = 4) -> Predictor:
    """A Predictor for a segcli checkpoint (.ckpt), an exported .onnx or an exported TorchScript file."""
    kind = model_kind(path)
    if kind == "onnx":
        return onnx_predictor(path, device, batch_size)
    if kind == "torchscript":
        return torchscript_predictor(path, device, batch_size)
    return torch_predictor(path, device, batch_size)
