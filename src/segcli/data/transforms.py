"""Label-safe training transforms on torchvision.transforms.v2: geometry hits image and mask alike.

Input/output: image (3, H, W) uint8 tv_tensors.Image, mask (H, W) tv_tensors.Mask of ids.
Geometry (scale, rotation, crop, flip) goes through v2's kernels, which resample a Mask with
nearest-neighbour only and fill it with the ignore index where there is no source pixel.
Photometric changes and corruptions are declared for tv_tensors.Image only: masks pass through.
The presets are conf/augment/{none,light,strong,robust}.yaml.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(float(low), float(high)))


class RandomScale(v2.Transform):
    """Rescale image (bilinear, antialiased) and mask (nearest) by a factor drawn from [low, high]."""

    def __init__(self, scale: tuple[float, float]):
        super().__init__()
        self.low, self.high = float(scale[0]), float(scale[1])

    def make_params(self, flat_inputs: list) -> dict:
        if self.low == self.high == 1.0:
            return {"size": None}
        h, w = v2.query_size(flat_inputs)
        factor = _uniform(self.low, self.high)
        return {"size": [max(1, round(h * factor)), max(1, round(w * factor))]}

    def transform(self, inpt, params: dict):
        if params["size"] is None:
            return inpt
        # NEAREST_EXACT samples at pixel centres like bilinear does; v2's default for masks (NEAREST)
        # would shift a downscaled mask by up to (factor - 1) / 2 pixels against its image.
        mode = v2.InterpolationMode.NEAREST_EXACT if isinstance(inpt, tv_tensors.Mask) else v2.InterpolationMode.BILINEAR
        return self._call_kernel(TF.resize, inpt, params["size"], interpolation=mode, antialias=True)


class RandomScaleCrop(v2.Transform):
    """Random rescale by a factor in `scale`, then a random (H, W) crop: what RandomScale followed by a
    crop gives, computed by cutting the matching window out of the source and resizing only that window
    (image bilinear, mask nearest at pixel centres). Where the window leaves the image, it is padded
    with 0 (image) / ignore_index (mask).

    With cat_max_ratio < 1, up to `tries` positions are drawn until no single class covers more
    than cat_max_ratio of the window's labelled pixels (and at least two classes are in it), as
    mmsegmentation's cat_max_ratio; if none qualifies, the least dominated one is kept. Crops that
    show rare classes next to dominant ones are favoured.
    """

    def __init__(self, size: tuple[int, int], ignore_index: int, cat_max_ratio: float = 1.0,
                 scale: tuple[float, float] = (1.0, 1.0), tries: int = 10):
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.ignore_index = int(ignore_index)
        self.cat_max_ratio = float(cat_max_ratio)
        self.low, self.high = float(scale[0]), float(scale[1])
        self.tries = int(tries)

    def _dominance(self, mask: np.ndarray) -> float:
        """Largest single-class share of the labelled pixels (1.0 when fewer than two classes)."""
        counts = np.bincount(mask.ravel())
        if self.ignore_index < len(counts):
            counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return float(counts.max() / counts.sum()) if len(counts) > 1 else 1.0

    def make_params(self, flat_inputs: list) -> dict:
        h, w = v2.query_size(flat_inputs)
        factor = 1.0 if self.low == self.high == 1.0 else _uniform(self.low, self.high)
        ch, cw = (max(1, round(side / factor)) for side in self.size)  # the window, in source pixels
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        pad_top, pad_left = int(torch.randint(pad_h + 1, ())), int(torch.randint(pad_w + 1, ()))
        mask = next((x for x in flat_inputs if isinstance(x, tv_tensors.Mask)), None)
        check = self.cat_max_ratio < 1.0 and mask is not None
        array = mask.numpy() if check else None
        best, best_share = None, 2.0
        for _ in range(self.tries if check else 1):
            top = int(torch.randint(h + pad_h - ch + 1, ()))
            left = int(torch.randint(w + pad_w - cw + 1, ()))
            if not check:
                best = (top, left)
                break
            y0, x0 = max(top - pad_top, 0), max(left - pad_left, 0)
            share = self._dominance(array[..., y0:top - pad_top + ch, x0:left - pad_left + cw])
            if share < best_share:
                best, best_share = (top, left), share
            if share < self.cat_max_ratio:
                break
        return {"padding": [pad_left, pad_top, pad_w - pad_left, pad_h - pad_top], "top": best[0],
                "left": best[1], "window": (ch, cw)}

    def transform(self, inpt, params: dict):
        is_mask = isinstance(inpt, tv_tensors.Mask)
        if any(params["padding"]):
            inpt = self._call_kernel(TF.pad, inpt, padding=params["padding"], fill=self.ignore_index if is_mask else 0)
        inpt = self._call_kernel(TF.crop, inpt, params["top"], params["left"], *params["window"])
        if params["window"] == self.size:
            return inpt
        mode = v2.InterpolationMode.NEAREST_EXACT if is_mask else v2.InterpolationMode.BILINEAR
        return self._call_kernel(TF.resize, inpt, list(self.size), interpolation=mode, antialias=True)


class _ImageOnly(v2.Transform):
    """Base of the photometric corruptions below: they touch tv_tensors.Image only."""

    _transformed_types = (tv_tensors.Image,)

    @staticmethod
    def _to_uint8(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return tv_tensors.wrap(values.round_().clamp_(0, 255).to(torch.uint8), like=like)


class GaussianNoise(_ImageOnly):
    """Additive gaussian sensor noise with std drawn from [low, high] grey levels (0-255 scale)."""

    def __init__(self, std: tuple[float, float]):
        super().__init__()
        self.low, self.high = float(std[0]), float(std[1])

    def make_params(self, flat_inputs: list) -> dict:
        return {"std": _uniform(self.low, self.high)}

    def transform(self, inpt, params: dict):
        values = inpt.float()
        return self._to_uint8(values.add_(torch.randn_like(values), alpha=params["std"]), inpt)


class BandJitter(_ImageOnly):
    """Brightness and contrast for an image of any band count (torchvision's ColorJitter takes 1 or 3 channels):
    one brightness factor from [1 - b, 1 + b] scales every band; one contrast factor from [1 - c, 1 + c] blends
    every band towards the image's mean over all bands (ColorJitter's rules, with the mean of the bands in place
    of RGB's luma), in a random order of the two as ColorJitter draws its own."""

    def __init__(self, brightness: float, contrast: float):
        super().__init__()
        self.brightness, self.contrast = float(brightness), float(contrast)

    def make_params(self, flat_inputs: list) -> dict:
        def factor(amount: float) -> float:
            return _uniform(max(0.0, 1 - amount), 1 + amount) if amount > 0 else 1.0

        return {"brightness": factor(self.brightness), "contrast": factor(self.contrast),
                "contrast_first": bool(torch.rand(1) < 0.5)}

    def transform(self, inpt, params: dict):
        values = inpt.float()
        for step in (("contrast", "brightness") if params["contrast_first"] else ("brightness", "contrast")):
            if step == "brightness":
                values = values.mul_(params["brightness"]).clamp_(0, 255)
            else:
                mean = values.mean(dim=(-3, -2, -1), keepdim=True)
                values = values.mul_(params["contrast"]).add_(mean * (1 - params["contrast"])).clamp_(0, 255)
        return self._to_uint8(values, inpt)


class GaussianBlur(_ImageOnly):
    """Gaussian blur (defocus) with sigma drawn from [low, high] pixels; the kernel spans ±3 sigma, cut to what
    the image can hold (its reflected border must be smaller than the image: a tiny image or crop is blurred
    with a shorter kernel rather than failing)."""

    def __init__(self, sigma: tuple[float, float]):
        super().__init__()
        self.low, self.high = float(sigma[0]), float(sigma[1])

    def make_params(self, flat_inputs: list) -> dict:
        h, w = v2.query_size(flat_inputs)
        sigma = _uniform(self.low, self.high)
        kernel = min(2 * int(np.ceil(3 * sigma)) + 1, 2 * min(h, w) - 1)
        return {"sigma": sigma, "kernel": max(kernel, 1)}

    def transform(self, inpt, params: dict):
        if params["kernel"] == 1:
            return inpt
        return TF.gaussian_blur(inpt, [params["kernel"]] * 2, [params["sigma"]] * 2)


class Fog(_ImageOnly):
    """Haze: blend towards a bright airlight, image' = image·(1 − t) + A·t, with a smooth random density t.

    t = density · (0.6 + 0.4 · a low-frequency random field), thicker towards the top of the image
    (farther away in a typical scene); density is drawn from [low, high].
    """

    def __init__(self, density: tuple[float, float]):
        super().__init__()
        self.low, self.high = float(density[0]), float(density[1])

    def make_params(self, flat_inputs: list) -> dict:
        h, w = v2.query_size(flat_inputs)
        field = F.interpolate(torch.rand(1, 1, 3, 4), size=(h, w), mode="bicubic", align_corners=False)[0]
        depth = torch.linspace(1.0, 0.7, h).view(1, h, 1)
        t = (_uniform(self.low, self.high) * (0.6 + 0.4 * field.clamp(0, 1)) * depth).clamp_(0, 1)
        return {"t": t, "airlight": _uniform(200.0, 250.0)}

    def transform(self, inpt, params: dict):
        t = params["t"]
        return self._to_uint8(inpt.float() * (1 - t) + params["airlight"] * t, inpt)


class JpegArtefacts(_ImageOnly):
    """Re-encode the image as JPEG (OpenCV) with a quality drawn from [low, high]."""

    def __init__(self, quality: tuple[int, int]):
        super().__init__()
        self.low, self.high = int(quality[0]), int(quality[1])

    def make_params(self, flat_inputs: list) -> dict:
        return {"quality": int(torch.randint(self.low, self.high + 1, ()))}

    def transform(self, inpt, params: dict):
        import cv2

        pixels = np.ascontiguousarray(inpt.permute(1, 2, 0).numpy())
        grey = pixels.shape[2] == 1  # a grayscale model's image: encoded as grey JPEG, so it keeps its one channel
        source = pixels[..., 0] if grey else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", source, [cv2.IMWRITE_JPEG_QUALITY, params["quality"]])
        decoded = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR) if ok else source
        out = decoded[..., None] if grey else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
        return tv_tensors.wrap(torch.from_numpy(out).permute(2, 0, 1), like=inpt)


def _maybe(transform: v2.Transform, p: float) -> list[v2.Transform]:
    return [v2.RandomApply([transform], p=float(p))] if float(p) > 0 else []


def _corruptions(augment: dict) -> list[v2.Transform]:
    """The domain-shift corruptions (robust preset): fog, blur, noise, JPEG, each with its own probability."""
    steps: list[v2.Transform] = []
    fog, blur, noise, jpeg = (dict(augment.get(k) or {}) for k in ("fog", "blur", "noise", "jpeg"))
    if fog.get("p"):
        steps += _maybe(Fog(tuple(fog["density"])), fog["p"])
    if blur.get("p"):
        steps += _maybe(GaussianBlur(tuple(blur["sigma"])), blur["p"])
    if noise.get("p"):
        steps += _maybe(GaussianNoise(tuple(noise["std"])), noise["p"])
    if jpeg.get("p"):
        steps += _maybe(JpegArtefacts(tuple(jpeg["quality"])), jpeg["p"])
    return steps


def _rotation_window(crop: tuple[int, int], degrees: float) -> tuple[int, int]:
    """(H, W) of the smallest window that contains an (h, w) crop rotated by up to ±degrees about its centre.

    The extent a·|cos θ| + b·|sin θ| grows with θ up to the crop's diagonal, reached at θ = atan(b / a), and
    shrinks beyond it: a range of angles that passes that point needs the diagonal, not the extent at its end."""
    h, w = crop
    angle = np.deg2rad(min(abs(degrees), 180.0))

    def extent(a: float, b: float) -> float:
        return float(np.hypot(a, b)) if angle >= np.arctan2(b, a) else a * np.cos(angle) + b * np.sin(angle)

    return int(np.ceil(extent(h, w))) + 2, int(np.ceil(extent(w, h))) + 2


def train_transform(augment: dict, ignore_index: int, input_scale: float = 1.0, channels: int = 3) -> v2.Transform:
    """(image, mask) → (image, mask) callable for the training split, from an augment preset.

    input_scale: the model's working resolution as a fraction of the dataset's (data.input_scale); it
    multiplies the preset's random scale range, so crops are cut from the image at that resolution."""
    steps: list[v2.Transform] = []
    scale = tuple(float(f) * float(input_scale) for f in augment.get("scale") or (1.0, 1.0))
    degrees = float(augment.get("rotate") or 0)
    rotate = v2.RandomRotation(degrees, interpolation=v2.InterpolationMode.BILINEAR,
                               fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}) if degrees > 0 else None
    crop = tuple(int(c) for c in augment.get("crop_size") or ())
    ratio = augment.get("cat_max_ratio")
    ratio = 1.0 if ratio is None else float(ratio)  # 0 is a ratio (keep the least dominated of the tries), not "off"
    if crop and rotate:
        # Scale and rotate only a window that holds every rotation of the crop, then cut the crop from
        # its centre: the same result as transforming the whole image first, at a fraction of the cost.
        steps += [RandomScaleCrop(_rotation_window(crop, degrees), ignore_index, ratio, scale), rotate,
                  v2.CenterCrop(crop)]
    elif crop:
        steps.append(RandomScaleCrop(crop, ignore_index, ratio, scale))
    else:
        if scale != (1.0, 1.0):
            steps.append(RandomScale(scale))
        if rotate:
            steps.append(rotate)
    if float(augment.get("hflip") or 0) > 0:
        steps.append(v2.RandomHorizontalFlip(float(augment["hflip"])))
    jitter = {k: float(augment.get(k) or 0) for k in ("brightness", "contrast", "saturation", "hue")}
    if any(jitter.values()) and channels in (1, 3):
        steps.append(v2.ColorJitter(**jitter))
    elif jitter["brightness"] or jitter["contrast"]:  # multispectral (saturation and hue: refused by check_augment)
        steps.append(BandJitter(jitter["brightness"], jitter["contrast"]))
    steps += _corruptions(augment)
    return v2.Compose(steps) if steps else v2.Identity()
