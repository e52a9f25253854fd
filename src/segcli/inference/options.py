"""How the shared predictor runs a model over an image: whole or sliding window, with or without TTA.

`InferenceOptions.from_config(cfg.inference, meta)` turns the `inference` config group into
options, filling the sliding-window tile from the crop the model was trained on (`meta["train_crop"]`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from segcli.checks import finite_number
from segcli.errors import ConfigError

MODES = ("whole", "slide")
BLENDS = ("gaussian", "constant")
TTAS = ("none", "flip")
AMPS = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class InferenceOptions:
    """mode: whole | slide; tile: (h, w) window of `slide`; overlap: fraction of the tile shared by
    neighbouring windows, in [0, 1); blend: gaussian | constant weights of overlapping windows;
    tta: none | flip (horizontal); scales: input scales whose probabilities are averaged;
    amp: none | bf16 | fp16 autocast of the forward pass on CUDA (ignored on the CPU)."""

    mode: str = "whole"
    tile: tuple[int, int] | None = None
    overlap: float = 0.5
    blend: str = "gaussian"
    tta: str = "none"
    scales: tuple[float, ...] = field(default=(1.0,))
    amp: str = "none"

    @property
    def plain(self) -> bool:
        """True when inference is one whole-image forward pass (raw logits come back unchanged)."""
        return self.mode == "whole" and self.tta == "none" and self.scales == (1.0,)

    def stride(self) -> tuple[int, int]:
        """Step between sliding windows, (sh, sw) >= 1."""
        assert self.tile is not None
        return tuple(max(1, int(round(t * (1.0 - self.overlap)))) for t in self.tile)  # type: ignore[return-value]

    def cost_note(self) -> str | None:
        """A note when the sliding windows overlap so much (above 0.9) that each pixel is run through dozens of
        windows or more: the command then seems to hang (0.99 on 512-px tiles: 5-px steps, about 10,000 windows
        per pixel). None otherwise."""
        if self.mode != "slide" or self.tile is None or self.overlap <= 0.9:
            return None
        (th, tw), (sh, sw) = self.tile, self.stride()
        per_pixel = (th / sh) * (tw / sw)
        usual = (th / max(1, round(th * 0.5))) * (tw / max(1, round(tw * 0.5)))
        return (f"inference.overlap={self.overlap:g} steps the {th}x{tw} windows by {sh}x{sw} px: in an image "
                f"larger than a window, each pixel is in about {per_pixel:,.0f} windows, {per_pixel / usual:,.0f}x "
                "the work of overlap 0.5 (0.5-0.75 is usual)")

    def describe(self) -> dict:
        """Plain dict for reports."""
        out = asdict(self)
        out["tile"] = list(self.tile) if self.tile else None
        out["scales"] = list(self.scales)
        return out

    @classmethod
    def from_config(cls, cfg, meta: dict | None = None) -> "InferenceOptions":
        """Options from the `inference` config group (mode, tile, overlap, blend, tta, scales)."""
        get = (lambda k, d=None: cfg.get(k, d)) if cfg is not None else (lambda k, d=None: d)
        mode = str(get("mode", "whole"))
        _choice("inference.mode", mode, MODES)
        blend = str(get("blend", "gaussian"))
        _choice("inference.blend", blend, BLENDS)
        tta = str(get("tta", "none") or "none")
        _choice("inference.tta", tta, TTAS)
        overlap = finite_number(get("overlap", 0.5))
        if overlap is None or not 0.0 <= overlap < 1.0:
            raise ConfigError(f"inference.overlap={get('overlap', 0.5)} must be a number in [0, 1), e.g. 0.5")
        scales = get("scales", None)
        scales = [1.0] if scales is None or (_listed(scales) and not len(scales)) else scales
        scales = tuple(finite_number(s) for s in (scales if _listed(scales) else [scales]))
        if any(s is None or s <= 0 for s in scales):
            raise ConfigError(f"inference.scales={_shown(get('scales'))} must all be numbers > 0, e.g. [0.75,1.0,1.25]")
        tile = get("tile", None)  # checked in whole mode too (unused there, but it is reported)
        tile = _tile(tile, meta) if mode == "slide" else (None if tile is None else _size(tile))
        amp = str(get("amp", "none") or "none")
        _choice("inference.amp", amp, AMPS)
        return cls(mode=mode, tile=tile, overlap=overlap, blend=blend, tta=tta, scales=scales, amp=amp)


def _listed(value) -> bool:
    """A list of values (a list, tuple or OmegaConf ListConfig), not a single number or string."""
    return not isinstance(value, (str, bytes)) and hasattr(value, "__len__")


def _shown(value) -> str:
    """A config value as the user wrote it: [0.5, 1.0] for a list (OmegaConf's ListConfig prints the same)."""
    return str(list(value)) if _listed(value) else str(value)


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        from segcli.config import did_you_mean

        raise ConfigError(f"unknown {key} '{value}'{did_you_mean(value, list(choices))}; choose from {', '.join(choices)}")


def _tile(tile, meta: dict | None) -> tuple[int, int]:
    """The sliding-window size: inference.tile if given, else the model's training crop."""
    given = tile is not None
    if not given:
        tile = (meta or {}).get("train_crop")
        if not tile:
            raise ConfigError("inference.mode=slide needs a tile size, and this model records no training crop; "
                              "set inference.tile=[H,W], e.g. inference.tile=[512,512]")
    tile = _size(tile)
    meta = meta or {}
    smallest = max(int(meta.get("size_multiple") or 1), int(meta.get("min_size") or 0))
    if min(tile) < smallest:  # every window would be padded up to it: many windows, each mostly padding
        where = "" if given else " (the model's training crop, the default)"
        raise ConfigError(f"inference.tile={list(tile)}{where} is smaller than this model's smallest input ({smallest} "
                          f"px: its size multiple or minimum size); give at least inference.tile=[{smallest},{smallest}]")
    return tile


def _size(tile) -> tuple[int, int]:
    """inference.tile as (h, w): [H, W] of whole numbers >= 1, or one number for a square."""
    sizes = [finite_number(v) for v in (tile if _listed(tile) else [tile, tile])]
    if len(sizes) != 2 or any(v is None or v < 1 or v != int(v) for v in sizes):
        raise ConfigError(f"inference.tile={_shown(tile)} must be [H, W] with whole positive sizes, e.g. [512,512]")
    return int(sizes[0]), int(sizes[1])
