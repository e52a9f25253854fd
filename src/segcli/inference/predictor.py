"""The shared predictor used by eval, predict, export verification and training validation.

Preprocess: (H, W, 3) uint8 RGB → (N, 3, H, W) float32, x/255 normalised by mean/std.
Scale: a model trained at a fraction of the dataset's resolution (meta["input_scale"], e.g. 0.5) sees
its input resized by that factor, and its logits are resized back to the input's size.
Forward: pad bottom/right with zeros to the model's size multiple, run the backend, crop back
(`inference.mode=whole`), or do that per overlapping window and blend (`inference.mode=slide`,
see segcli.inference.sliding). With TTA (horizontal flip) and/or several scales, the softmax
probabilities of all passes are averaged. Where only class ids are wanted (Predictor.ids: eval, predict's masks and
overlays), a single sliding pass is argmaxed band by band as its rows are finished, never holding (N, K, H, W) scores;
at input_scale × scale != 1 each band is resized to the input's size as it is finished (sliding.resized_ids).
NaN or infinite logits are an error, checked at the network's size (before they are resized back).
Postprocess: (N, K, H, W) float32 logits → argmax → (H, W) uint8/uint16 class ids.
A model exported with the argmax baked in (meta["output"] == "ids") returns (N, H, W) ids directly.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from segcli.errors import ConfigError, DataError
from segcli.inference.options import InferenceOptions
from segcli.inference.sliding import bilinear_arithmetic, resized_ids, slide_bands, slide_logits

Forward = Callable[[torch.Tensor], torch.Tensor]
# Network input pixels batched into one forward pass (4 frames of 1448×1448): larger images go fewer at a time.
# Batching 6000×4000 images 4 at a time, U-Net/resnet18 took more than a 23 GB machine has, and the kernel killed
# predict (exit 137, no message).
MAX_BATCH_PIXELS = 1 << 23
# Class scores (classes × pixels at the input size) batched into one pass: the (N, K, H, W) float32 logits and what
# is made of them (the finite check, the argmax) take about three times their size, whatever the network. A
# 1,000-class model batched four 400×512 images into 10 GB (0.8 GB of logits each; 3.3 GB one at a time).
MAX_BATCH_SCORES = 1 << 28


def normalize(images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
              ) -> torch.Tensor:
    """(N, C, H, W) uint8 (or float in 0..255) → float32 (x/255 - mean) / std. mean/std: lists, or (C,) tensors
    already on the images' device (no copy per call)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t


def padding(h: int, w: int, multiple: int, min_size: int = 0) -> tuple[int, int]:
    """Rows and columns to add (bottom, right) so that an h×w input becomes multiples of `multiple`, at least
    `min_size` on each side (meta["min_size"]: the smallest input the network runs on, e.g. 128 for PAN)."""
    return (max((-h) % multiple, min_size - h) if h < min_size else (-h) % multiple,
            max((-w) % multiple, min_size - w) if w < min_size else (-w) % multiple)


def forward_padded(forward: Forward, x: torch.Tensor, multiple: int, min_size: int = 0) -> torch.Tensor:
    """Run `forward` on (N, C, H, W) x zero-padded (padding()) to multiples of `multiple`, at least `min_size`
    per side; return (N, K, H, W) logits."""
    h, w = x.shape[-2:]
    pad_h, pad_w = padding(h, w, multiple, min_size)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    logits = forward(x)
    return logits[..., :h, :w]


def scaled_size(h: int, w: int, scale: float) -> tuple[int, int]:
    """(H, W) of an h×w image resized by `scale` (resize): each side rounded, at least 1."""
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, C, H, W) float → resized by `scale` (bilinear, antialiased when shrinking); unchanged for scale 1."""
    if scale == 1.0:
        return x
    size = scaled_size(*x.shape[-2:], scale)
    if scale < 1.0 and min(size) <= 2:  # torch's antialiased kernel on a channels-last tensor is wrong for such
        x = x.contiguous()  # outputs (a 300x1 image at 0.5: off by up to 0.74 of the 0..1 range); NCHW is exact
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1.0)


def at_scale(run: Forward, x: torch.Tensor, scale: float, check: Forward | None = None) -> torch.Tensor:
    """`run` on (N, C, H, W) x resized by `scale`, its output resized back to H, W (bilinear) → (N, K, H, W).
    `check` (e.g. a finite check) sees, and may replace, the output at the network's size, before it is resized."""
    out = run(resize(x, scale))
    if check is not None:
        out = check(out)
    if out.shape[-2:] != x.shape[-2:]:
        out = F.interpolate(out.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return out


def forward_scaled(forward: Forward, x: torch.Tensor, multiple: int, scale: float = 1.0,
                   min_size: int = 0) -> torch.Tensor:
    """forward_padded at `scale` × the input size, logits resized back: (N, C, H, W) → (N, K, H, W)."""
    return at_scale(lambda t: forward_padded(forward, t, multiple, min_size), x, scale)


def min_size(meta: dict) -> int:
    """The smallest input side the model runs on (meta["min_size"]; 0 when absent: checkpoints before it)."""
    return int(meta.get("min_size") or 0)


def input_scale(meta: dict) -> float:
    """The factor a model's input is resized by (meta["input_scale"], 1.0 when absent)."""
    scale = meta.get("input_scale")
    return 1.0 if scale is None else float(scale)


def read_channels(meta: dict) -> int:
    """Channels to read images with for the model `meta` describes (its mean has one entry per input channel):
    RGB for RGB and grayscale models (Predictor.preprocess converts), else the model's count, as stored."""
    channels = len(meta["mean"])
    return 3 if channels in (1, 3) else channels


def image_range(meta: dict) -> list[float] | None:
    """[low, high]: how images deeper than 8 bits map onto 0..255 for this model (the training card's
    image_range, segcli.data.depth); None: 16-bit scaled by 1/257 (models of 8-bit data, and older ones)."""
    return meta.get("image_range")


def _finite(logits: torch.Tensor, amp: str, source: str, half: bool = False) -> torch.Tensor:
    """`logits`, or a DataError when some are NaN or infinite: their argmax is arbitrary (class 0 where all are NaN),
    so masks and scores of such a model were silently wrong."""
    if bool(torch.isfinite(logits).all()):
        return logits
    raise _not_finite(int((~torch.isfinite(logits)).sum()), logits.numel(), amp, source, half)


def _not_finite(bad: int, total: int, amp: str, source: str, half: bool = False) -> DataError:
    """The error of _finite for `bad` NaN or infinite values out of `total` logits."""
    if amp == "fp16":
        cause = "inference.amp=fp16 overflows in this model: use inference.amp=bf16 or none"
    elif half:
        cause = "this float16 model (exported with --half) overflows: export it without --half"
    else:
        cause = "its weights hold NaN or infinite values (a run that diverged), or its input does: use another model"
    return DataError(f"{source}: its logits are NaN or infinite ({bad} of {total} values); {cause}")


def ids_dtype(classes: int) -> type:
    """The dtype of class ids of `classes` classes: uint8, uint16 when there are more than 256."""
    return np.uint8 if classes <= 256 else np.uint16


def to_ids(logits: torch.Tensor) -> np.ndarray:
    """(N, K, H, W) logits → (N, H, W) uint8 ids (uint16 when K > 256)."""
    return logits.argmax(1).cpu().numpy().astype(ids_dtype(logits.shape[1]))


class Predictor:
    """Images in, logits or class ids out, for any backend that maps (N, C, H, W) float32 → logits
    ((N, K, H, W) float) or, when meta["output"] == "ids", → class ids ((N, H, W) integer).

    meta: the self-description stored in checkpoints and exported models
    (classes, palette, ignore_index, mean, std, size_multiple, output, ...).
    options: whole/slide, TTA and scales (default: one whole-image pass, raw logits).
    """

    def __init__(self, forward: Forward, meta: dict, device: torch.device | str = "cpu", batch_size: int = 4,
                 options: InferenceOptions | None = None):
        self.forward = forward
        self.meta = meta
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.options = options or InferenceOptions()
        self.source = "the model"  # how errors name it: load_predictor gives the file's path

    def configure(self, inference_cfg) -> "Predictor":
        """Set `options` from an `inference` config group (tile defaults to meta's training crop); returns self."""
        self.options = InferenceOptions.from_config(inference_cfg, self.meta)
        if self.outputs_ids and not self.options.plain:  # ids() runs one whole pass: these would be ignored
            asked = [f"{k}={v}" for k, v, default in (("inference.mode", self.options.mode, "whole"),
                                                       ("inference.tta", self.options.tta, "none"),
                                                       ("inference.scales", list(self.options.scales), [1.0]))
                     if v != default]
            raise ConfigError(f"{self.source}: this model returns class ids (exported with --argmax), and "
                              f"{', '.join(asked)} combines logits; export without --argmax, or leave inference at its "
                              "defaults")
        return self

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in self.meta["palette"]]

    @property
    def ignore_index(self) -> int:
        return int(self.meta["ignore_index"])

    @property
    def channels(self) -> int:
        """Input channels of the model (one normalisation mean per channel): 3 RGB, 1 grayscale, C multispectral."""
        return len(self.meta["mean"])

    @property
    def read_channels(self) -> int:
        """Channels to read images with: RGB for RGB and grayscale models (preprocess converts), else as stored."""
        return read_channels(self.meta)

    @property
    def image_range(self) -> list[float] | None:
        """How images deeper than 8 bits are read for this model (see image_range(meta))."""
        return image_range(self.meta)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Same-size (H, W, C) uint8 images (RGB, or the model's channel count) → (N, C, H, W) normalised
        float32 on the device; RGB becomes luma for a grayscale model (segcli.inference.io.to_channels)."""
        from segcli.inference.io import to_channels

        batch = torch.from_numpy(np.stack([to_channels(image, self.channels) for image in images]))
        batch = batch.to(self.device).permute(0, 3, 1, 2)
        return normalize(batch, self.meta["mean"], self.meta["std"])

    @property
    def _half(self) -> bool:
        return self.meta.get("dtype") == "float16"

    @property
    def outputs_ids(self) -> bool:
        """True for a model that returns class ids (exported with the argmax baked in), not logits."""
        return self.meta.get("output", "logits") == "ids"

    def images_per_batch(self, shape: tuple) -> int:
        """How many images of `shape` (H, W, ...) go into one forward pass: batch_size, fewer of large ones, so that
        a batch holds at most MAX_BATCH_PIXELS of network input and MAX_BATCH_SCORES of logits (at least one image)."""
        scale = input_scale(self.meta)
        pixels = max(1, round(shape[0] * scale) * round(shape[1] * scale))
        limit = min(self.batch_size, MAX_BATCH_PIXELS // pixels)
        if not self.outputs_ids:  # logits come back (not class ids): at the input size and at the network's
            largest = max(1.0, scale * max(self.options.scales, default=1.0)) ** 2  # input_scale × largest scale
            scores = max(1, round(shape[0] * shape[1] * largest) * len(self.meta["classes"]))
            limit = min(limit, MAX_BATCH_SCORES // scores)
        return max(1, limit)

    @torch.inference_mode()
    def logits(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Same-size images → (N, K, H, W) float32 scores at the input resolution whose argmax is the prediction:
        the model's logits for a single pass (whole or slide), log of the averaged probabilities with TTA/scales."""
        if self.outputs_ids:
            raise ConfigError("this model returns class ids (exported with --argmax), not logits; "
                              "export without --argmax to get logits")
        x = self.preprocess(images)
        opts = self.options
        base = input_scale(self.meta)
        passes = [(s * base, flip) for s in opts.scales for flip in ((False, True) if opts.tta == "flip" else (False,))]
        # NaN/inf checked at the network's size: resizing finite logits keeps them finite, and NaN/inf spread
        finite = lambda t: _finite(t.float(), opts.amp, self.source, self._half)  # noqa: E731
        if len(passes) == 1 and not passes[0][1]:  # one pass, whole or slide: the model's logits (at the input size)
            return at_scale(self._run, x, passes[0][0], finite).float()
        mirrored = lambda t: self._run(t.flip(-1)).flip(-1)  # noqa: E731
        probs = None
        for scale, flip in passes:
            out = at_scale(mirrored if flip else self._run, x, scale, finite).float()
            p = out.softmax(1)
            probs = p if probs is None else probs.add_(p)
        return (probs / len(passes)).clamp_min_(1e-12).log_()

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """One pass over a normalised (N, C, H, W) batch: whole image or sliding window → (N, K, H, W) logits.

        With inference.amp=bf16|fp16 on a CUDA device the forward pass runs under torch.autocast."""
        with self._autocast():
            out = self._run_once(x)
        return out.float() if self._autocasting else out

    @property
    def _autocasting(self) -> bool:
        return self.options.amp != "none" and self.device.type == "cuda"

    def _autocast(self):
        """torch.autocast for inference.amp=bf16|fp16 on a CUDA device, else a context that does nothing."""
        import contextlib

        if not self._autocasting:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if self.options.amp == "bf16" else torch.float16)

    def _run_once(self, x: torch.Tensor) -> torch.Tensor:
        if self.options.mode == "slide":
            return self._slide(slide_logits, x)
        return forward_padded(self.forward, x, int(self.meta["size_multiple"]), min_size(self.meta))

    def _slide(self, blend, x: torch.Tensor):
        """`blend` (sliding.slide_logits or slide_bands) over normalised (N, C, H, W) x with this predictor's tile,
        stride and blending, each batch of windows zero-padded to the model's size multiple as forward_padded pads."""
        multiple, smallest = int(self.meta["size_multiple"]), min_size(self.meta)
        run = lambda crop: forward_padded(self.forward, crop, multiple, smallest)  # noqa: E731
        return blend(run, x, self.options.tile, self.options.stride(), self.options.blend,
                     max(1, self.batch_size // x.shape[0]))

    @torch.inference_mode()
    def ids(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Same-size images → (N, H, W) uint8 class ids (uint16 when there are more than 256 classes)."""
        if not self.outputs_ids:
            if self._bandwise(images[0].shape):
                return self._slide_ids(self.preprocess(images))
            return to_ids(self.logits(images))
        x = self.preprocess(images)
        ids = forward_padded(self.forward, resize(x, input_scale(self.meta)), int(self.meta["size_multiple"]),
                             min_size(self.meta))
        if ids.shape[-2:] != x.shape[-2:]:  # a model run at input_scale != 1: nearest-neighbour back to the input size
            ids = F.interpolate(ids[:, None].float(), size=x.shape[-2:], mode="nearest-exact")[:, 0].long()
        return ids.cpu().numpy().astype(ids_dtype(len(self.meta["classes"])))

    def _bandwise(self, shape: tuple) -> bool:
        """True when ids() of images of `shape` (H, W, ...) can argmax sliding-window logits band by band, as
        to_ids(logits()) would, bit for bit: one slide pass (no TTA, one scale). Averaged probabilities need the whole
        map. At input_scale × scale != 1 the bands are resized as F.interpolate resizes the whole map
        (sliding.resized_ids), where its kernel is the one resized_ids follows (its generic CPU kernel: H + W > 128,
        not 3 classes on one thread, not a 1×1 map of more than 3) and its rounding on this device is known
        (sliding.bilinear_arithmetic)."""
        opts = self.options
        if opts.mode != "slide" or opts.tta != "none" or len(opts.scales) != 1:
            return False
        scale = opts.scales[0] * input_scale(self.meta)
        h, w = shape[:2]
        network = scaled_size(h, w, scale)
        if scale == 1.0 or network == (h, w):
            return True
        classes = len(self.meta["classes"])
        if h + w <= 128 or (classes == 3 and torch.get_num_threads() == 1):  # the kernel's channels-last variant
            return False
        if network == (1, 1) and classes > 3:
            return False  # a 1×1 map is channels-last contiguous too, so F.interpolate takes that variant for it
        return bilinear_arithmetic(str(self.device)) is not None

    def _slide_ids(self, x: torch.Tensor) -> np.ndarray:
        """Normalised (N, C, H, W) x → (N, H, W) uint8/uint16 ids of one sliding pass, argmaxed band by band
        (segcli.inference.sliding.slide_bands), each band resized to H × W first where the pass runs at another size
        (sliding.resized_ids); NaN or infinite logits raise as in logits(), counted over all at the network's size."""
        scale = self.options.scales[0] * input_scale(self.meta)
        small = resize(x, scale)  # resampled as logits() resamples it
        n, _, h, w = x.shape
        tally = [0, 0]  # NaN or infinite logits, all logits (at the network's size)

        def finite_bands():
            """slide_bands' bands while all are finite; after a NaN or inf, only counted (the message's count)."""
            for top, band in self._slide(slide_bands, small):
                finite = torch.isfinite(band)
                if tally[0] or not bool(finite.all()):
                    tally[0] += int((~finite).sum())
                tally[1] += band.numel()
                del finite
                if not tally[0]:
                    yield top, band
                del band  # the band is a view of the rolling buffer: let it go before the next one

        if small.shape[-2:] == x.shape[-2:]:
            parts = ((top, band.argmax(1)) for top, band in finite_bands())
        else:
            parts = resized_ids(finite_bands(), tuple(small.shape[-2:]), (h, w), bilinear_arithmetic(str(self.device)))
        ids = np.empty((n, h, w), ids_dtype(len(self.meta["classes"])))
        with self._autocast():
            for top, part in parts:
                ids[:, top: top + part.shape[1]] = part.cpu().numpy()
                del part
        if tally[0]:
            raise _not_finite(tally[0], tally[1], self.options.amp, self.source, self._half)
        return ids

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Same-size images → list of (H, W) class-id arrays."""
        return list(self.ids(images))

    def predict_stream(self, items: Iterable[tuple[object, np.ndarray]]) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
        """(key, image) pairs → (key, image, ids), batching consecutive same-size images."""
        pending: list[tuple[object, np.ndarray]] = []
        for key, image in items:
            full = pending and len(pending) >= self.images_per_batch(image.shape)
            if pending and (full or pending[0][1].shape != image.shape):
                yield from self._flush(pending)
                pending = []
            pending.append((key, image))
        if pending:
            yield from self._flush(pending)

    def _flush(self, pending):
        masks = self.predict([image for _, image in pending])
        for (key, image), mask in zip(pending, masks):
            yield key, image, mask


_SHARED = (("classes", "classes"), ("input channels", "read_channels"), ("image_range", "image_range"))  # (said, attr)


class Ensemble(Predictor):
    """Several models of the same classes as one (a k-fold ensemble, as nnU-Net predicts with its folds): the mean
    of the members' softmax probabilities, each member with its own normalisation, input scale, size multiple and
    inference options (TTA and scales average inside each member first). meta, palette and the report's options are
    the first member's."""

    def __init__(self, members: Sequence[Predictor]):
        first = members[0]
        super().__init__(first.forward, first.meta, first.device, first.batch_size, first.options)
        self.members = list(members)
        self.source = " + ".join(m.source for m in self.members)
        for member in self.members:
            if member.outputs_ids:
                raise ConfigError(f"{member.source}: this model returns class ids (exported with --argmax), and an "
                                  "ensemble averages class probabilities; export it without --argmax")
        _refuse_exports_of_one_checkpoint(self.members)
        _refuse_copies(self.members)
        for member in self.members[1:]:
            differs = [f"{label} {getattr(member, attr)} vs {getattr(first, attr)}" for label, attr in _SHARED
                       if getattr(member, attr) != getattr(first, attr)]
            if differs:
                raise ConfigError(f"{member.source}: it differs from {first.source} in {', '.join(differs)}; an "
                                  "ensemble's models must share their classes and the kind of image they read")

    def _bandwise(self, shape: tuple) -> bool:
        return False  # the members' probabilities are averaged: ids need the whole map

    def configure(self, inference_cfg) -> "Ensemble":
        for member in self.members:
            member.configure(inference_cfg)
        self.options = self.members[0].options
        return self

    @torch.inference_mode()
    def logits(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Same-size images → (N, K, H, W) log of the members' averaged probabilities."""
        probs = None
        for member in self.members:  # on the first member's device: an ONNX member runs on the CPU beside a CUDA one
            p = member.logits(images).softmax(1)
            probs = p if probs is None else probs.add_(p.to(probs.device))
        return (probs / len(self.members)).clamp_min_(1e-12).log_()


def _refuse_exports_of_one_checkpoint(members: Sequence[Predictor]) -> None:
    """Two exports of one checkpoint, or a checkpoint beside its own export (each flag takes either kind of file),
    are that model given twice: an exported file's meta holds its checkpoint's sha256, compared with the others'
    and with the checkpoint files' own (hashed only when an exported member is there to match)."""
    import os

    from segcli.export.metadata import sha256_file

    exports = any(m.meta.get("checkpoint_sha256") for m in members)
    seen: dict[str, Predictor] = {}  # the checkpoint's sha256 → the first member of that checkpoint
    for member in members:
        exported = member.meta.get("checkpoint_sha256")
        sha = exported or (sha256_file(member.source) if exports and os.path.isfile(member.source) else None)
        other = seen.setdefault(sha, member) if sha else member
        if other is member:
            continue
        if exported and other.meta.get("checkpoint_sha256"):
            how = f"exported from the same checkpoint as {other.source}"
        elif exported:
            how = f"exported from {other.source}"
        else:
            how = f"the checkpoint that {other.source} was exported from"
        raise ConfigError(f"{member.source}: {how} (its checkpoint_sha256), so it is that model given twice; an "
                          "ensemble names each model once")


def _refuse_copies(members: Sequence[Predictor]) -> None:
    """A member read from a byte copy of another member's file (`cp a.ckpt b.ckpt`) is that model given twice: it
    would weigh double without a word. filecmp compares sizes first and reads two files of one size only up to
    their first difference (the first tensor's bytes, for two checkpoints of one architecture), so a large model
    is read whole only when it is a copy."""
    import filecmp
    import os

    files: list[Predictor] = []  # members read from a file so far
    for member in members:
        if not os.path.isfile(member.source):  # a Predictor built in Python: no file to compare
            continue
        other = next((m for m in files if filecmp.cmp(m.source, member.source, shallow=False)), None)
        if other is not None:
            raise ConfigError(f"{member.source}: given twice (a byte copy of {other.source}); an ensemble names each "
                              "model once")
        files.append(member)


def ensemble(members: Sequence[Predictor]) -> Predictor:
    """One Predictor for `members`: the member itself when there is one, else their Ensemble."""
    return members[0] if len(members) == 1 else Ensemble(members)
