"""Load a model file into a Predictor: a segcli checkpoint (.ckpt, torch) or an exported .onnx (onnxruntime)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from segcli.errors import ConfigError, DataError
from segcli.inference.predictor import Predictor

META_KEY = "segcli"  # ONNX metadata_props key holding the JSON self-description


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → cuda when available, else cpu."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available; use device=cpu")
    return torch.device(name)


def read_checkpoint(path: str | Path) -> dict:
    """torch.load a checkpoint safely (weights_only=True: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; pass --ckpt RUN_DIR/checkpoints/best.ckpt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: not a readable checkpoint ({type(err).__name__}); it may be truncated or not a segcli .ckpt") from None
    meta = (ckpt.get("hyper_parameters") or {}).get("meta") if isinstance(ckpt, dict) else None
    if not meta or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a segcli checkpoint (no segcli metadata); train it with `segcli train`")
    return ckpt


def load_torch_model(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network of a segcli checkpoint from its own metadata → (model in eval mode, meta)."""
    from segcli.models.factory import build_model

    ckpt = read_checkpoint(path)
    meta = ckpt["hyper_parameters"]["meta"]
    model = build_model(**meta["model"])
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(f"{path}: weights do not fit {meta['model']['arch']}/{meta['model']['encoder']} "
                        f"({str(err).splitlines()[0]})") from None
    return model.eval(), meta


def torch_predictor(path: str | Path, device: str = "auto", batch_size: int = 4) -> Predictor:
    dev = resolve_device(device)
    model, meta = load_torch_model(path)
    model = model.to(dev, memory_format=torch.channels_last)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return model(x.contiguous(memory_format=torch.channels_last))

    return Predictor(forward, meta, dev, batch_size)


def onnx_predictor(path: str | Path, batch_size: int = 4) -> Predictor:
    """An onnxruntime session behind the same Predictor (CPU provider; CUDA when available)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: ONNX model not found")
    try:
        session = ort.InferenceSession(str(path), providers=ort.get_available_providers())
    except Exception as err:
        raise DataError(f"{path}: onnxruntime cannot load it ({type(err).__name__}); re-export with `segcli export`") from None
    raw = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise DataError(f"{path}: ONNX file has no segcli metadata; export it with `segcli export`")
    meta = json.loads(raw)
    input_name = session.get_inputs()[0].name

    def forward(x: torch.Tensor) -> torch.Tensor:
        (out,) = session.run(None, {input_name: x.detach().cpu().contiguous().numpy()})
        return torch.from_numpy(out)

    return Predictor(forward, meta, "cpu", batch_size)


def load_predictor(path: str | Path, device: str = "auto", batch_size: int = 4) -> Predictor:
    """A Predictor for a .ckpt or .onnx file."""
    return onnx_predictor(path, batch_size) if str(path).lower().endswith(".onnx") else torch_predictor(path, device, batch_size)
