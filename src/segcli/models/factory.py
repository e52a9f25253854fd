"""Build smp models from plain config values, with errors that list valid choices (losses: models/losses.py).

`build_model(arch="unet", encoder="resnet18", encoder_weights=None, in_channels=3, classes=12)`
returns an smp SegmentationModel mapping (N, in_channels, H, W) float32 to (N, classes, H, W) logits.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from time import monotonic

import torch
from torch import nn

from segcli.config import did_you_mean
from segcli.errors import ConfigError, DataError, first_line

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")  # .ckpt: a segcli run's checkpoint


def _choices(word: str, options: list[str]) -> str:
    return f"{did_you_mean(word.lower(), options)}; choose from {', '.join(options)}"


def architectures() -> list[str]:
    import segmentation_models_pytorch as smp

    return list(smp.MODEL_ARCHITECTURES_MAPPING)


def _check_encoder(encoder: str) -> None:
    import segmentation_models_pytorch as smp

    if not isinstance(encoder, str) or not encoder.strip():  # model.encoder=null (or '') from the command line
        raise ConfigError(f"model.encoder is {encoder!r}, not an encoder name; give one, e.g. model.encoder=resnet18 "
                          "(smp's encoders, or a timm encoder as tu-<name>)")
    if encoder.startswith("tu-"):  # any timm model (a pretrained tag such as .a1_in1k allowed)
        import timm

        if not timm.is_model(encoder[3:]):
            close = did_you_mean(encoder[3:], timm.list_models()).replace("mean ", "mean tu-").replace(", ", ", tu-")
            raise ConfigError(f"unknown model.encoder '{encoder}': timm has no model '{encoder[3:]}'{close}; see "
                              "timm.list_models() for the names, or choose an smp encoder (resnet18, ...)")
        return
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        raise ConfigError(f"unknown model.encoder '{encoder}'{did_you_mean(encoder, names)}; see smp's encoder list, or use a timm encoder as tu-<name>")


TIMM_ONLY = {"dpt": "tu-vit_small_patch16_224"}  # smp architectures built on timm encoders only → an example


def _check_kwargs(arch: str, encoder: str, kwargs: dict) -> None:
    """model.kwargs must be arguments of the architecture: smp passes the others on to the encoder, where only a
    timm encoder (tu-<name>, and timm-<name> that smp maps to one) uses them; smp's own encoders drop them, so a
    misspelt key (decoder_atention_type) would change nothing without a word."""
    import inspect
    import re

    import segmentation_models_pytorch as smp

    cls = smp.MODEL_ARCHITECTURES_MAPPING[arch]
    taken = {"encoder_name": "set model.encoder", "encoder_weights": "set model.encoder_weights",
             "in_channels": "set model.in_channels", "classes": "the class count comes from the dataset card"}
    known = [p for p in inspect.signature(cls.__init__).parameters if p not in taken and p not in ("self", "kwargs")]
    known += re.findall(r'kwargs\.pop\(\s*"(\w+)"', inspect.getsource(cls.__init__))  # deprecated spellings
    timm = encoder.startswith("tu-") or smp.encoders.is_equivalent_to_timm_universal(encoder)
    for key in kwargs:
        if key in taken:
            raise ConfigError(f"model.kwargs.{key}: {taken[key]} instead")
        if key not in known and not timm:
            raise ConfigError(f"model.kwargs.{key} is not an argument of smp's {cls.__name__}"
                              f"{did_you_mean(key, known)}; its arguments: {', '.join(known)} (other keys reach only "
                              f"timm encoders, tu-<name>); remove it with ~model.kwargs.{key} (model.arch=X keeps the "
                              "kwargs of the model preset, e.g. unet_slim's decoder_channels), or choose model=X "
                              "(not with --from, which keeps its run's presets)")


def model_kwargs(model_cfg: dict, num_classes: int) -> dict:
    """The constructor arguments stored in checkpoints: enough to rebuild the network (model.in_channels checked by
    segcli.checks)."""
    for key in ("arch", "encoder"):
        if key not in model_cfg:  # an option file of one's own (--config-dir) that leaves it out
            raise ConfigError(f"config key 'model.{key}' is missing: set it (model.{key}=<name>), or start the option "
                              "file under --config-dir with `defaults: [<the packaged option>, _self_]` (e.g. [unet, "
                              "_self_] under model/) to inherit the packaged keys")
    return {"arch": str(model_cfg["arch"]).lower(), "encoder": model_cfg["encoder"],
            "in_channels": int(model_cfg.get("in_channels", 3)), "classes": int(num_classes),
            "kwargs": dict(model_cfg.get("kwargs") or {})}


def build_model(arch: str, encoder: str, classes: int, in_channels: int = 3, encoder_weights: str | None = None,
                kwargs: dict | None = None, check_kwargs: bool = True) -> nn.Module:
    """An smp model; `encoder_weights` is None, a named set (downloaded by smp), or a local weights file.
    check_kwargs=False rebuilds a checkpoint's model as it was trained, with whatever kwargs it recorded."""
    import segmentation_models_pytorch as smp

    archs = architectures()
    if not isinstance(arch, str) or arch.lower() in ("none", "null", ""):  # model.arch=null: str() made it 'none'
        raise ConfigError(f"model.arch is not set; choose one of {', '.join(archs)} (model=<name> or model.arch=<name>)")
    if arch.lower() not in archs:
        raise ConfigError(f"unknown model.arch '{arch}'{_choices(arch, archs)}")
    _check_encoder(encoder)
    if arch.lower() in TIMM_ONLY and not encoder.startswith("tu-"):  # before its timm-only kwargs are refused
        raise ConfigError(f"model.arch={arch.lower()} takes timm encoders only (model.encoder=tu-<name>, e.g. "
                          f"{TIMM_ONLY[arch.lower()]}); got model.encoder={encoder}")
    if check_kwargs:
        _check_kwargs(arch.lower(), encoder, kwargs or {})
    weights_file = local_weights(encoder_weights)
    local = weights_file is not None
    named = None if (encoder_weights is None or local) else str(encoder_weights)
    unreachable = hub_unreachable() if named is not None else None
    try:
        with _hub_cache_only(unreachable is not None):
            model = smp.create_model(arch.lower(), encoder_name=encoder, encoder_weights=named,
                                     in_channels=in_channels, classes=classes, **(kwargs or {}))
    except (KeyError, ValueError, TypeError, AssertionError) as err:  # timm asserts some arguments (output_stride)
        fix = _depth_fix(err, arch.lower(), kwargs or {}) or _refusal_fix(err, kwargs or {})
        raise ConfigError(f"cannot build {arch}/{encoder}: {_refusal(err)}; {fix}") from None
    except OSError as err:  # download failed (offline), hub unreachable, ...
        why = unreachable or type(err).__name__
        raise ConfigError(f"could not download encoder weights '{named}' for {encoder} ({why}); offline? "
                          f"pass a local file: model.encoder_weights=/path/to/{encoder}.pth, or model.encoder_weights=null") from None
    if local:
        load_encoder_weights(model, weights_file)
    return model


def _refusal(err: Exception) -> str:
    """smp's or timm's refusal in one line: a KeyError's text without its quotes, a bare assert's source line."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    if not text.strip() and err.__traceback__ is not None:
        import traceback

        text = f"timm refused it ({(traceback.extract_tb(err.__traceback__)[-1].line or '').strip()})"
    return first_line(RuntimeError(text)).rstrip(".")


def _depth_fix(err: Exception, arch: str, kwargs: dict) -> str:
    """For smp's "Model depth is N, but you provide `decoder_channels` for M blocks" (Unet, Unet++, MAnet with
    model.kwargs.encoder_depth other than 5 and their default five decoder widths): the decoder_channels to give,
    N widths (the last N of those given or of the architecture's default); '' for any other refusal."""
    import inspect
    import re

    import segmentation_models_pytorch as smp

    match = re.search(r"Model depth is (\d+), but you provide `decoder_channels`", str(err))
    if not match or arch not in smp.MODEL_ARCHITECTURES_MAPPING:
        return ""
    depth = int(match.group(1))
    widths = kwargs.get("decoder_channels")
    if widths is None:
        parameter = inspect.signature(smp.MODEL_ARCHITECTURES_MAPPING[arch].__init__).parameters.get("decoder_channels")
        widths = parameter.default if parameter is not None else None
    if not isinstance(widths, (list, tuple)) or not widths or depth < 1:
        return ""
    widths = list(widths)
    chosen = widths[len(widths) - depth:] if depth <= len(widths) else widths + [widths[-1]] * (depth - len(widths))
    plus = "" if "decoder_channels" in kwargs else "+"
    return (f"give one decoder width per encoder stage, e.g. {plus}model.kwargs.decoder_channels="
            f"[{','.join(str(int(w)) for w in chosen)}] for encoder_depth={depth}")


def _refusal_fix(err: Exception, kwargs: dict) -> str:
    """What to change for a refused model: the named weights, or the architecture's arguments."""
    if isinstance(err, KeyError) and "pretrained weights" in str(err):
        return "set model.encoder_weights to one of those, a local .pth/.safetensors file, or null"
    import re

    unknown = re.search(r"unexpected keyword argument '(\w+)'", str(err))
    if unknown and unknown.group(1) in kwargs:  # e.g. model=dpt's dynamic_img_size, a ViT's, with tu-regnetx_002
        key = unknown.group(1)
        return (f"this encoder takes no {key}: remove it with ~model.kwargs.{key} (a preset's model.kwargs stay "
                "when model.kwargs={} is given), or choose another model.encoder")
    given = ", ".join(f"model.kwargs.{k}={v}" for k, v in kwargs.items())
    if given:
        return f"change {given} (see smp's arguments of the architecture), or choose another model.encoder or model=ARCH"
    return "choose another model.encoder or model=ARCH, or set model.kwargs (see smp's arguments of the architecture)"


HUB_TIMEOUT_S = 5.0  # a connection to the Hub that takes longer counts as offline


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub, where smp and timm download named encoder weights, cannot be reached (one connection
    attempt, at most HUB_TIMEOUT_S seconds), or None: reached, or not tried (HF_HUB_OFFLINE already set, or a proxy,
    which only the download client goes through). Offline, the client retries for about 40 s before it fails."""
    import os
    import socket
    import threading
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.is_offline_mode() or any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                                                                        "all_proxy", "HTTP_PROXY", "http_proxy")):
        return None
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{host} unreachable: {err.strerror or err or type(err).__name__}")

    # The name lookup inside create_connection has no timeout of its own (a resolver that never answers holds it
    # for minutes): the attempt runs in a daemon thread, and no answer within HUB_TIMEOUT_S counts as offline.
    thread = threading.Thread(target=attempt, name="segcli-hub-check", daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT_S)
    return outcome[0] if outcome else f"{host} unreachable: no answer within {HUB_TIMEOUT_S:g} s (name lookup)"


@contextmanager
def _hub_cache_only(offline: bool):
    """With `offline`, the Hugging Face client reads its cache only (weights downloaded before still load), failing
    at once instead of retrying the network."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def local_weights(encoder_weights) -> Path | None:
    """model.encoder_weights as a local file's path, or None for null and a named set (imagenet, ...): a value with
    a weights suffix, one that names something that exists, or one that looks like a path (a folder separator,
    ~), which no named set does."""
    if encoder_weights is None:
        return None
    text = str(encoder_weights)
    path = Path(text).expanduser()
    if path.suffix in WEIGHT_SUFFIXES or path.exists() or "/" in text or "\\" in text or text.startswith("~"):
        return path
    return None


def load_encoder_weights(model: nn.Module, path: Path) -> None:
    """Load a local .pth/.safetensors state dict (or a segcli checkpoint's encoder) into model.encoder, reporting
    matched/missing keys on stderr."""
    if path.is_dir():
        run_ckpt = next((c for c in (path / "checkpoints" / "best.ckpt", path / "best.ckpt") if c.is_file()), None)
        fix = (f"give model.encoder_weights={run_ckpt} (that run's checkpoint)" if run_ckpt is not None
               else "give model.encoder_weights a .pth, .safetensors or .ckpt file in it")
        raise DataError(f"{path}: is a folder, not an encoder weights file; {fix}")
    if not path.is_file():
        raise DataError(f"{path}: encoder weights file not found; check model.encoder_weights")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        from segcli.inference.backends import unsafe_global

        refused = unsafe_global(err)
        if refused:
            raise DataError(f"{path}: refused to load: it pickles {refused}, which could run code; give a plain "
                            "state-dict .pth (tensors only) or a .safetensors file") from None
        raise DataError(f"{path}: cannot load encoder weights ({type(err).__name__}); give a state-dict .pth or .safetensors file") from None
    for key in ("state_dict", "model"):  # Lightning's and timm's training checkpoints; {"model": …} (DeiT, MAE, …)
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise DataError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors; give a state-dict .pth "
                        "or .safetensors file")
    own = model.encoder.state_dict()
    total = sum(1 for v in state.values() if isinstance(v, torch.Tensor))
    renamed = _encoder_keys(state, own)
    adapted = _adapt_input_channels(renamed, own)
    matched = {k: v for k, v in renamed.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise DataError(f"{path}: none of its {total} tensors match encoder '{type(model.encoder).__name__}'; "
                        "is it for the same model.encoder?")
    reshaped = [k for k, v in renamed.items() if k in own and own[k].shape != v.shape]
    if len(reshaped) > MAX_RESHAPED * (len(matched) + len(reshaped)):  # e.g. resnet50's weights for resnet18
        first = reshaped[0]
        raise DataError(f"{path}: {len(reshaped)} of its tensors have another shape than encoder "
                        f"'{type(model.encoder).__name__}' has under the same name (e.g. {first}: "
                        f"{list(renamed[first].shape)} in the file, {list(own[first].shape)} here), so they are "
                        "weights of another encoder; give the weights of this model.encoder, or set model.encoder "
                        "to the one they were trained for")
    # nn.Module's own method: the keys are the encoder's already, and smp's mit_b*, densenet* and xception encoders
    # replace load_state_dict with one that takes no `strict` (TypeError, exit 4)
    nn.Module.load_state_dict(model.encoder, matched, strict=False)
    missing = len(own) - len(matched)
    other = f" ({len(reshaped)} of another shape, e.g. {reshaped[0]})" if reshaped else ""
    sys.stderr.write(f"encoder weights {path.name}: {len(matched)} tensors loaded, {missing} missing{other}, "
                     f"{total - len(matched)} unused{adapted}\n")
    extra = _extra_layers(renamed, own)
    if len(extra) > MAX_RESHAPED * len(own):  # resnet34's weights in resnet18: 96 unused, each name one it could have
        sys.stderr.write(f"encoder weights {path.name}: note: {len(extra)} of its tensors belong to layers this encoder "
                         f"lacks (e.g. {extra[0]}), so they are weights of a deeper encoder; set model.encoder to "
                         "the one they were trained for to use them all\n")
    lacking = _extra_layers(own, renamed)
    if len(lacking) > MAX_RESHAPED * len(own):  # resnet18's in resnet34: 96 of its tensors keep their random start
        sys.stderr.write(f"encoder weights {path.name}: note: {len(lacking)} of this encoder's tensors belong to "
                         f"layers the file lacks (e.g. {lacking[0]}), so they are weights of a shallower encoder and "
                         "those layers start random; set model.encoder to the one they were trained for to load "
                         "the whole encoder\n")


def _extra_layers(state: dict, own: dict) -> list[str]:
    """Tensors of `state` that `own` lacks but whose top-level module it has (layer1.2.conv1.weight where only
    layer1.0 and layer1.1 exist): layers of a deeper variant of the encoder, not a classifier or a decoder."""
    def top(key: str) -> str:  # a timm encoder's keys all start "model.": its modules are one level down
        return key.removeprefix("model.").split(".", 1)[0]

    tops = {top(key) for key in own}  # a stage encoder_depth < 5 leaves out is not among them: not "deeper"
    return [key for key, value in state.items() if isinstance(value, torch.Tensor) and key not in own
            and top(key) in tops]


MAX_RESHAPED = 0.05  # share of the tensors found by name that may differ in shape (a resized pos_embed, an input conv)


KEY_PREFIXES = ("", "module.", "model.", "encoder.", "backbone.", "model.encoder.", "module.encoder.")


def _encoder_keys(state: dict, own: dict) -> dict:
    """`state` with its keys named as the encoder's own: it may be a plain encoder state dict, a whole smp model's
    ("encoder.…"), a segcli checkpoint's ("model.encoder.…"), a DDP one's ("module.…"), or, for a timm encoder
    (tu-<name>, whose keys start "model."), timm's own. Of the prefix changes, the one that matches most tensors."""
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    best, best_hits = tensors, -1
    for drop in KEY_PREFIXES:
        for add in ("", "model."):
            renamed = {add + k[len(drop):]: v for k, v in tensors.items() if k.startswith(drop)}
            hits = sum(1 for k, v in renamed.items() if k in own and own[k].shape == v.shape)
            if hits > best_hits:
                best, best_hits = renamed, hits
    return best


def _adapt_input_channels(state: dict, own: dict) -> str:
    """Weights for 3-channel (RGB) input, loaded into an encoder for another channel count: each first convolution
    whose only difference is its input channels is adapted in `state` (in place), as smp adapts its named weights:
    summed over RGB for one channel; for more, RGB repeated across the channels and scaled by 3/C. Returns ''
    or ', first convolution adapted from 3 to C input channels'."""
    names = []
    for key, weight in state.items():
        target = own.get(key)
        if (target is None or weight.ndim != 4 or target.ndim != 4 or target.shape == weight.shape
                or weight.shape[1] != 3 or (target.shape[0], *target.shape[2:]) != (weight.shape[0], *weight.shape[2:])):
            continue
        channels = target.shape[1]
        if channels == 1:
            state[key] = weight.sum(1, keepdim=True)
        else:
            state[key] = weight[:, [i % 3 for i in range(channels)]] * (3 / channels)
        names.append(channels)
    return (f", first convolution adapted from 3 to {names[0]} input channel{'s' if names[0] > 1 else ''}"
            if names else "")


def size_multiple(model: nn.Module) -> int:
    """Input height and width must be multiples of this: the encoder's output stride; for DPT also of the coarsest
    scale its decoder reassembles the patch grid to (1/4, 1/8, … of the input, one per block: 1/32 with smp's four
    blocks, whatever the patch size: a patch-8 ViT needs multiples of 32 as a patch-16 one does)."""
    import math

    stride = int(getattr(getattr(model, "encoder", None), "output_stride", 32) or 32)
    if type(model).__name__ == "DPT":
        return math.lcm(stride, 2 ** (len(model.decoder.reassemble_blocks) + 1))
    return stride


def _probe(model: nn.Module, channels: int, h: int, w: int) -> tuple[int, int] | str:
    """The logits' (H, W) for zeros of size h×w (eval mode, no grad), or the first line of the error it raised."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return tuple(model(torch.zeros(1, channels, h, w)).shape[-2:])
    except (RuntimeError, AssertionError, ValueError) as err:  # timm's ViTs assert their fixed input size
        return first_line(err, 160)
    finally:
        model.train(was_training)


def _refuse_fixed_size(label: str, error: str) -> None:
    if "doesn't match model" in error:  # a timm ViT or Swin built for one input size (e.g. 224x224)
        raise ConfigError(f"{label} takes only the input size its timm encoder was built for ({error}); add "
                          "+model.kwargs.dynamic_img_size=true (model=dpt sets it) or choose another model")


PROBE_SECONDS = 30.0  # min_input_size tries larger sides only while its failed passes have taken less than this


def _refuse_dpt_patch(model: nn.Module, label: str) -> None:
    """smp's DPT resizes block i's patch grid by stride / 2**(i + 2) (to 1/4, 1/8, 1/16, 1/32 of the input) with
    whole-number (transposed) convolution strides, so a patch size that is not a power of 2 (14: ×3.5 made ×3) gives
    grids that never line up, at any input size; unrefused, the probe tried ever larger sides for many minutes."""
    if type(model).__name__ != "DPT":
        return
    strides = [int(s) for s in getattr(model.encoder, "output_strides", None) or []]
    for i, stride in enumerate(strides):
        factor = stride / 2 ** (i + 2)
        if factor != (int(factor) if factor >= 1 else 1 / int(1 / factor)):
            raise ConfigError(f"{label}: smp's DPT needs a ViT whose patch size is a power of 2 (8, 16, 32), and this "
                              f"encoder's patches are {stride} px, which its decoder cannot resize to 1/{2 ** (i + 2)} "
                              "of the input; choose a patch-16 ViT (e.g. model.encoder=tu-vit_small_patch16_224)")


def min_input_size(model: nn.Module, kwargs: dict) -> int:
    """The smallest square input side (a multiple of the size multiple) `model` runs on, found before anything
    is written rather than as exit 4 from inside training: training and inference pad smaller inputs up to it
    (meta["min_size"]). PAN pools its 1/32 grid three more times, so it needs 128×128 with resnet18. smp
    sizes some combinations wrongly at any size (FPN with encoder_depth=3 returns 4× the input): a
    ConfigError."""
    multiple, channels = size_multiple(model), int(kwargs.get("in_channels", 3))
    extra = ", ".join(f"{k}={v}" for k, v in (kwargs.get("kwargs") or {}).items())
    label = f"{kwargs['arch']}/{kwargs['encoder']}" + (f" with {extra}" if extra else "")
    _refuse_dpt_patch(model, label)
    got: tuple[int, int] | str = ""
    start = monotonic()
    for side in range(multiple, 17 * multiple, multiple):
        got = _probe(model, channels, side, side)
        if isinstance(got, tuple):
            break
        if monotonic() - start > PROBE_SECONDS:  # a ViT's pass grows as side**4: the larger sides take minutes
            break
    if not isinstance(got, tuple):
        _refuse_fixed_size(label, got)
        raise ConfigError(f"{label} cannot run on inputs from {multiple}x{multiple} up to {side}x{side} ({got}); "
                          "choose another model")
    other = _probe(model, channels, side + multiple, side + 2 * multiple)  # images are rarely square or that small
    if isinstance(other, str):
        _refuse_fixed_size(label, other)
        raise ConfigError(f"{label} runs on {side}x{side} inputs but not on {side + multiple}x{side + 2 * multiple} "
                          f"({other}); choose another model")
    if got != (side, side):
        raise ConfigError(f"{label} gives {got[0]}x{got[1]} logits for a {side}x{side} input (smp does not size "
                          f"this combination back to the input); {_resize_fix(model, kwargs, side / got[0])}")
    return side


def _resize_fix(model: nn.Module, kwargs: dict, factor: float) -> str:
    """How to bring an architecture's logits back to the input size, `factor` off: its `upsampling` argument
    (FPN's 4 for encoder_depth=5 is 2 for depth 4, 1 for depth 3) where it takes one, else a generic fix."""
    import inspect

    parameter = inspect.signature(type(model).__init__).parameters.get("upsampling")
    if parameter is None or not isinstance(parameter.default, int):
        return "change model.kwargs"
    given = (kwargs.get("kwargs") or {}).get("upsampling", parameter.default)
    fixed = given * factor
    if fixed < 1 or fixed != int(fixed):
        return "change model.kwargs"
    return f"add +model.kwargs.upsampling={int(fixed)} (it is {given}), or change model.kwargs"
