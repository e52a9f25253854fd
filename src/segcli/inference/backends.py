"""Load a model file into a Predictor, whatever it is: a segcli checkpoint (.ckpt, torch eager),
an exported TorchScript file (.pt, torch.jit) or an exported ONNX file (.onnx, onnxruntime).

Exported files carry the same self-description as checkpoints (see segcli.export.metadata):
as JSON in ONNX metadata_props["segcli"] or in the TorchScript extra file "segcli.json".
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from segcli.errors import ConfigError, DataError, first_line
from segcli.inference.model_files import (  # noqa: F401 - also imported from here
    check_checkpoint_there, model_kind, model_paths, refuse_folder)
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








def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """torch.load a checkpoint safely (weights_only=True: no pickled code runs); `mmap` maps the file instead of
    reading it, for a caller that needs only its meta."""
    path = Path(path)
    check_checkpoint_there(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        refused = unsafe_global(err)
        if refused:
            raise DataError(f"{path}: refused to load: it pickles {refused}, which could run code (segcli loads only "
                            "tensors and plain data); use a checkpoint written by `segcli train`") from None
        raise DataError(f"{path}: not a readable checkpoint ({type(err).__name__}); it may be truncated or not a segcli .ckpt") from None
    meta = (ckpt.get("hyper_parameters") or {}).get("meta") if isinstance(ckpt, dict) else None
    if not meta or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a segcli checkpoint (no segcli metadata); train it with `segcli train`")
    _older_meta(meta, path)
    check_meta(path, meta, "hyper_parameters['meta']", "use a checkpoint written by `segcli train`", checkpoint=True)
    return ckpt


def _older_meta(meta, path: Path) -> None:
    """Fill in place what an older segcli's checkpoint meta may lack and has a default: the palette (the colours
    `prepare folder` gives classes without one), model.in_channels (3, build_model's default) and train_crop (the
    run's augment.crop_size, where the checkpoint still lies in its run's checkpoints/ beside config.yaml)."""
    from segcli.data.formats.folder import default_palette

    if isinstance(meta, dict) and "palette" not in meta and isinstance(meta.get("classes"), list):
        meta["palette"] = default_palette(len(meta["classes"]))
    if isinstance(meta, dict) and isinstance(meta.get("model"), dict):
        meta["model"].setdefault("in_channels", 3)
    if isinstance(meta, dict) and "train_crop" not in meta:  # an early segcli's checkpoint
        crop = _run_crop(path)
        if crop:
            meta["train_crop"] = crop


def _run_crop(path: Path) -> list[int] | None:
    """[H, W] of augment.crop_size in RUN_DIR/config.yaml for RUN_DIR/checkpoints/X.ckpt; None where there is no such
    file or it holds no such size (inference.mode=slide then asks for inference.tile)."""
    import yaml

    path = Path(path).resolve()
    config = path.parent.parent / "config.yaml"
    if path.parent.name != "checkpoints" or not config.is_file():
        return None
    try:
        saved = yaml.safe_load(config.read_text(encoding="utf-8"))
        crop = saved["augment"]["crop_size"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return None
    if isinstance(crop, int) and not isinstance(crop, bool):
        crop = [crop, crop]
    if not (isinstance(crop, list) and len(crop) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in crop)):
        return None
    return crop


def check_meta(path: Path, meta, where: str, fix: str, checkpoint: bool = False) -> dict:
    """`meta` (a checkpoint's or an exported file's self-description) checked for what eval, predict and export
    read from it, so that a file from an older segcli or edited by hand is one error naming the key, not a
    KeyError (exit 4) at first use, or masks of ids the classes do not have. Returns meta."""
    def bad(what: str):
        raise DataError(f"{path}: {where}: {what} (an older segcli's file, or edited); {fix}")

    if not isinstance(meta, dict):
        bad("not a mapping")
    for key in ("classes", "palette", "ignore_index", "mean", "std", "size_multiple") + (("model",) if checkpoint else ()):
        if key not in meta:
            bad(f"'{key}' is missing")
    classes, palette, mean, std = meta["classes"], meta["palette"], meta["mean"], meta["std"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        bad(f"'classes' is {classes!r}, not a list of class names")
    if not isinstance(palette, list) or len(palette) != len(classes) or not all(
            isinstance(c, list) and len(c) == 3 for c in palette):
        bad(f"'palette' is not one [r, g, b] colour for each of the {len(classes)} classes")
    if isinstance(meta["ignore_index"], bool) or not isinstance(meta["ignore_index"], int):
        bad(f"'ignore_index' is {meta['ignore_index']!r}, not a whole number")
    for key, values in (("mean", mean), ("std", std)):
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) or len(values) != len(mean):
            bad(f"'{key}' is {values!r}, not a list of numbers, one per input channel")
    if not str(meta["size_multiple"]).isdigit() or int(meta["size_multiple"]) < 1:
        bad(f"'size_multiple' is {meta['size_multiple']!r}, not a whole number >= 1")
    scale = meta.get("input_scale")  # absent (None) in a file from before data.input_scale: the image's own size
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 4):
        bad(f"'input_scale' is {scale!r}, not a number in (0, 4] (data.input_scale of the training run)")
    if checkpoint:
        model = meta["model"]
        if not isinstance(model, dict) or any(k not in model for k in ("arch", "encoder", "classes")):
            bad("'model' does not hold the smp arguments arch, encoder and classes")
        channels = model["in_channels"]
        if model["classes"] != len(classes) or channels != len(mean):
            bad(f"'model' is a network for {model['classes']} classes and {channels} input channels, but 'classes' "
                f"names {len(classes)} and 'mean' has {len(mean)} values")
    return meta


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
    # "_orig_mod.": the weights of a torch.compile'd network, saved through its wrapper
    state = {k.removeprefix("model.").removeprefix("_orig_mod."): v for k, v in ckpt["state_dict"].items()
             if k.startswith("model.")}
    misfit = _misfit(model.state_dict(), state)
    if misfit:
        raise DataError(f"{path}: weights do not fit {meta['model']['arch']}/{meta['model']['encoder']} ({misfit}); "
                        "use the checkpoint as `segcli train` wrote it")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(f"{path}: weights do not fit {meta['model']['arch']}/{meta['model']['encoder']} "
                        f"({first_line(err)})") from None
    return model.eval(), meta


def _misfit(expected: dict, state: dict) -> str:
    """What keeps `state` from loading into a model whose state_dict is `expected`: '' when it fits, else the
    number of missing, unexpected and reshaped tensors, with the first of each."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k}: {tuple(state[k].shape)} for {tuple(expected[k].shape)}" for k in expected
                if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = [f"{len(found)} {what}, e.g. {found[0]}" for what, found in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if found]
    return "; ".join(parts)


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
        try:
            out = module(x.to(dtype))
        except Exception as err:
            raise _failed_run(path, x, err) from None
        _check_logits(path, meta, out.shape)
        return out.float() if out.is_floating_point() else out

    return Predictor(forward, meta, dev, batch_size)


def _failed_run(path: Path, x: torch.Tensor, err: Exception) -> Exception:
    """An exported model failing on an input (a file whose tracing baked in one input size, e.g. one exported before
    `segcli export` verified at a second size): a DataError naming the file and the size, with the error's last line
    (TorchScript puts its whole serialized traceback in the message); out-of-memory errors are returned as they are,
    for the command's memory hint."""
    from segcli.errors import out_of_memory

    if out_of_memory(err):
        return err
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    why = f"{type(err).__name__}: {lines[-1][:200]}" if lines else type(err).__name__
    failed = DataError(f"{path}: the exported model fails on a {x.shape[-2]}x{x.shape[-1]} input ({why}); it may run "
                       "at its export's example size only: re-export it with `segcli export`, which verifies a second size")
    failed.cause = err  # export's verification names the library's error itself
    return failed


def _check_logits(path: Path, meta: dict, shape) -> None:
    """A logits output (N, K, H, W) must have one channel per class of the metadata: a K beyond it gave masks of
    ids no class has (palette, areas and metrics then wrong or failing), a smaller K silently unused classes."""
    if meta.get("output", "logits") == "logits" and len(shape) == 4 and isinstance(shape[1], int) \
            and shape[1] != len(meta["classes"]):
        raise DataError(f"{path}: the model outputs {shape[1]} channels, but its segcli metadata names "
                        f"{len(meta['classes'])} classes; re-export with `segcli export`")


def _fixed_size(run, path: Path, shape):
    """`run` wrapped for an ONNX input whose dimensions are partly fixed (shape: N, C, H, W; a name or None where
    dynamic), as files re-saved with static shapes have: a fixed batch is run chunk by chunk (zeros fill the
    last), a fixed height or width is reached by zero padding at the bottom or right (the output cropped back,
    as the predictor pads to the size multiple); a larger input is an error naming sliding-window inference."""
    batch, _, height, width = [d if isinstance(d, int) and d > 0 else None for d in (list(shape) + [None] * 4)[:4]]

    def forward(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if (height and h > height) or (width and w > width):
            raise DataError(f"{path}: its input is fixed at {height or 'any'}x{width or 'any'} pixels and cannot take "
                            f"a {h}x{w} input; use inference.mode=slide inference.tile=[{height or h},{width or w}], or "
                            "export the model with dynamic sizes (`segcli export` does)")
        if (height or h) > h or (width or w) > w:
            x = torch.nn.functional.pad(x, (0, (width or w) - w, 0, (height or h) - h))
        if not batch or n == batch:
            return run(x)[..., :h, :w]
        parts = []
        for start in range(0, n, batch):
            part = x[start:start + batch]
            filled = torch.cat([part, part.new_zeros((batch - len(part), *part.shape[1:]))])
            parts.append(run(filled)[:len(part)])
        return torch.cat(parts)[..., :h, :w]

    return forward


def _parse_meta(path: Path, raw: str | bytes | None, where: str) -> dict:
    if not raw:
        raise DataError(f"{path}: no segcli metadata ({where} is missing), so its classes, palette and normalisation "
                        "are unknown; export the model with `segcli export --ckpt CKPT`")
    try:
        meta = json.loads(raw)
    except (ValueError, TypeError) as err:
        raise DataError(f"{path}: its segcli metadata ({where}) is invalid ({type(err).__name__}: {err}); "
                        "re-export with `segcli export`") from None
    return check_meta(path, meta, f"its segcli metadata ({where})", "re-export with `segcli export`")


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
    channels = list(model_input.shape)[1:2]
    if channels and isinstance(channels[0], int) and channels[0] != len(meta["mean"]):
        raise DataError(f"{path}: the model takes {channels[0]} input channels, but its segcli metadata has "
                        f"{len(meta['mean'])} mean values (one per channel); re-export with `segcli export`")
    _check_logits(path, meta, session.get_outputs()[0].shape)

    def run(x: torch.Tensor) -> torch.Tensor:
        try:
            (out,) = session.run(None, {model_input.name: x.detach().cpu().contiguous().numpy().astype(np_dtype,
                                                                                                    copy=False)})
        except Exception as err:
            raise _failed_run(path, x, err) from None
        out = torch.from_numpy(out)
        _check_logits(path, meta, out.shape)
        return out.float() if out.is_floating_point() else out

    return Predictor(_fixed_size(run, path, model_input.shape), meta, "cpu", batch_size)




def load_predictor(path: str | Path, device: str = "auto", batch_size: int = 4) -> Predictor:
    """A Predictor for a segcli checkpoint (.ckpt), an exported .onnx or an exported TorchScript file."""
    kind = model_kind(path)
    loader = {"onnx": onnx_predictor, "torchscript": torchscript_predictor}.get(kind, torch_predictor)
    predictor = loader(path, device, batch_size)
    predictor.source = str(path)
    return predictor
