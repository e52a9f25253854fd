"""Segmentation losses from config: a weighted sum of smp / torch terms, all honouring ignore_index.

`build_loss({"terms": {"ce": 1.0, "dice": 1.0}, "class_weights": None, "params": {}}, num_classes, ignore_index, root)`
→ a module mapping (N, C, H, W) float logits and (N, H, W) int64 targets to a scalar loss. Pixels whose
target is ignore_index contribute nothing to any term (value or gradient).

Terms (multiclass mode): ce (torch's cross entropy, see CrossEntropy), focal and lovasz (smp.losses; see Lovasz),
dice, tversky and jaccard (models/region_losses.py: smp's formulas and keyword arguments, computed 3.5–4× faster).
class_weights reach the terms that weight per class pixel-wise: ce and focal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from segcli.config import did_you_mean
from segcli.errors import ConfigError

TERMS = ("ce", "dice", "focal", "lovasz", "tversky", "jaccard")
WEIGHTED_TERMS = ("ce", "focal")  # the terms that use loss.class_weights


# Arguments of the terms' classes that segcli gives itself → what to do instead (as loss.params.<term>.<key> they
# were dropped without a word (ce's reduction), or collided with segcli's own value).
OWNED = {"ignore_index": "the dataset card's ignore_index is used (set it with prepare --ignore-index)",
         "reduction": "every term is averaged over the labelled pixels, so that the terms' weights compare",
         "mode": "segcli's losses are multiclass (one label per pixel)"}
OWNED_WEIGHTED = {"weight": "give per-class weights as loss.class_weights=[...] or auto",
                  "class_weights": "give per-class weights as loss.class_weights=[...] or auto"}


class CrossEntropy(nn.Module):
    """torch's CrossEntropyLoss (weighted mean over the labelled pixels; `params` such as label_smoothing), except
    that a batch whose labelled pixels all have class weight 0 gives 0 with zero gradients, not 0/0 = NaN
    (loss.class_weights=[0, 1, 1] and a crop of class 0 only)."""

    def __init__(self, weight: torch.Tensor | None, ignore_index: int, **params):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = int(ignore_index)
        self.params = dict(params)
        # unknown or bad params fail here (a TypeError/ValueError at build time, not in the first step)
        nn.functional.cross_entropy(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), **self.params)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = nn.functional.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index,
                                                reduction="none", **self.params)
        labelled = target != self.ignore_index
        if self.weight is None:
            total = labelled.sum()
        else:
            total = (self.weight[torch.where(labelled, target, 0)] * labelled).sum()
        # with label_smoothing the other classes' weights still reach per_pixel: 0 there too, not a huge number
        return torch.where(total > 0, per_pixel.sum() / total.clamp_min(1e-12), per_pixel.sum() * 0.0)


def _term(name: str, ignore_index: int, weights: list[float] | None, params: dict) -> nn.Module:
    import segmentation_models_pytorch as smp

    mode = "multiclass"
    if name == "ce":
        weight = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
        return CrossEntropy(weight, ignore_index, **params)
    if name == "focal":
        return smp.losses.FocalLoss(mode, ignore_index=ignore_index, class_weights=weights, **params)
    if name == "lovasz":
        return Lovasz(ignore_index, **params)
    from segcli.models import region_losses

    makers = {"dice": region_losses.DiceLoss, "tversky": region_losses.TverskyLoss,
              "jaccard": region_losses.JaccardLoss}
    return makers[name](ignore_index=ignore_index, **params)


class Lovasz(nn.Module):
    """smp's LovaszLoss, except that per_image=true averages over the images that have labelled pixels: smp's
    per-image mean took an image of ignore_index pixels only (a frame left unlabelled, or a crop inside an ignored
    region) as an empty tensor, and the step failed ('Boolean value of Tensor with no values is ambiguous')."""

    def __init__(self, ignore_index: int, per_image: bool = False, **params):
        import segmentation_models_pytorch as smp

        super().__init__()
        self.loss = smp.losses.LovaszLoss("multiclass", ignore_index=ignore_index, **params)
        self.per_image = bool(per_image)
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.per_image:
            return self.loss(logits, target)
        labelled = (target != self.ignore_index).flatten(1).any(1).tolist()  # WeightedLoss: one image at least
        losses = [self.loss(logits[i:i + 1], target[i:i + 1]) for i, has in enumerate(labelled) if has]
        return torch.stack(losses).mean()


class WeightedLoss(nn.Module):
    """Weighted sum of segmentation losses on (N, C, H, W) logits and (N, H, W) int64 targets.

    terms: term name → weight (terms with weight 0 are dropped); class_weights: per-class weights of
    the ce and focal terms (None = unweighted); params: term name → extra keyword arguments of its class
    (e.g. {"focal": {"gamma": 2.0}, "tversky": {"alpha": 0.3, "beta": 0.7}}).
    """

    def __init__(self, terms: dict[str, float], ignore_index: int, class_weights: list[float] | None = None,
                 params: dict[str, dict] | None = None):
        super().__init__()
        params = dict(params or {})
        for name in [*terms, *params]:
            if name not in TERMS:
                raise ConfigError(f"unknown loss term '{name}'{did_you_mean(name, list(TERMS))}; choose from {', '.join(TERMS)}")
        unused = [name for name in params if name not in terms]
        if unused:  # the shipped loss configs give params only for their own terms: these come from the user
            raise ConfigError(f"loss.params.{unused[0]}: '{unused[0]}' is not a term of this loss (terms: "
                              f"{', '.join(terms)}), so they would be unused; remove them with "
                              f"~loss.params.{unused[0]} (a term deleted with ~loss.terms.{unused[0]} leaves its "
                              f"params), or add the term with +loss.terms.{unused[0]}=WEIGHT")
        self.weights = {name: float(w) for name, w in terms.items() if float(w) != 0.0}
        if not self.weights:
            raise ConfigError("loss.terms gives every term weight 0; give at least one a positive weight")
        for name, given in params.items():
            for key in given or {}:
                fix = OWNED.get(key) or (OWNED_WEIGHTED.get(key) if name in WEIGHTED_TERMS else None)
                if fix:
                    raise ConfigError(f"loss.params.{name}.{key}: segcli sets this itself; {fix}")
        modules = {}
        for name in self.weights:
            try:
                modules[name] = _term(name, int(ignore_index), class_weights, dict(params.get(name) or {}))
            except TypeError as err:
                raise ConfigError(f"loss.params.{name}: {err}") from None
        self.terms = nn.ModuleDict(modules)
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, labelled: bool | None = None) -> torch.Tensor:
        """labelled: whether any target pixel is labelled, when known on the host (asked of a CUDA tensor, it
        makes the host wait for the step's forward pass)."""
        logits = logits.float()  # the smp terms' softmax and sums are fragile in half precision
        if labelled is None:
            labelled = bool((target != self.ignore_index).any())
        if not labelled:
            # Nothing labelled (a crop of unlabelled pixels only): ce and focal would give NaN (a mean over no
            # pixels), which would poison every weight; a zero loss with zero gradients skips the batch instead.
            return logits.sum() * 0.0
        return sum(w * self.terms[name](logits, target) for name, w in self.weights.items())


def resolve_class_weights(spec, num_classes: int, dataset_root: str | None, power: float = 1.0) -> list[float] | None:
    """loss.class_weights → one weight per class, or None.

    spec: null (unweighted), 'auto' (the dataset card's median-frequency weights, stats.class_weights, 1 for a
    class absent from the train split (0 on the card), each raised to `power`), or a list of num_classes
    non-negative numbers.
    """
    if spec is None or (isinstance(spec, str) and spec.lower() in ("none", "null", "")):
        return None
    if isinstance(spec, str):
        if spec.lower() != "auto":
            raise ConfigError(f"loss.class_weights={spec!r}: give auto, null, or a list of {num_classes} numbers")
        from segcli.data.card import load_card

        card = load_card(dataset_root)
        weights = (card.stats or {}).get("class_weights")
        if not weights:
            raise ConfigError(f"loss.class_weights=auto: {card.path} has no stats.class_weights; "
                              "re-run `segcli prepare` to compute them")
        try:
            exponent = float(power)
        except (TypeError, ValueError):
            exponent = -1.0
        if not 0.0 <= exponent <= 4.0:
            raise ConfigError(f"loss.class_weight_power={power!r}: give a number in [0, 4] (1 = median frequency, 0.5 = softer)")
        # The card gives a class without train pixels weight 0. Focal's term of a class covers every pixel (one
        # against the rest), so at 0 that class's logit was never trained and eval predicted it on half of the val
        # pixels (a class named but absent, focal + auto). It weighs 1, the median class's weight, instead.
        spec = [(float(w) if float(w) > 0 else 1.0) ** exponent for w in weights]
    try:
        weights = [float(w) for w in spec]
    except (TypeError, ValueError):
        raise ConfigError(f"loss.class_weights={spec!r}: give auto, null, or a list of {num_classes} numbers") from None
    if len(weights) != num_classes:
        raise ConfigError(f"loss.class_weights has {len(weights)} values for {num_classes} classes; give one "
                          "non-negative weight per class (not all 0), or auto")
    if not all(w >= 0 for w in weights) or not any(weights) or not all(math.isfinite(w) for w in weights):
        raise ConfigError(f"loss.class_weights={weights}: every weight must be a finite number >= 0, and not all "
                          "0; or give auto")
    return weights


def _check_class_params(params: dict, num_classes: int) -> None:
    """loss.params.<term>.classes (class ids) and .class_weights (one per class) against the dataset's classes: out of
    range, they failed only in the first training step (IndexError, a size mismatch: exit 4)."""
    for name, given in (params or {}).items():
        given = given or {}
        ids = given.get("classes")
        if ids is not None:
            listed = list(ids) if isinstance(ids, (list, tuple)) or hasattr(ids, "__len__") else None
            if not listed or isinstance(ids, str) or not all(
                    not isinstance(i, bool) and isinstance(i, (int, float)) and float(i) == int(i)
                    and 0 <= int(i) < num_classes for i in listed):
                raise ConfigError(f"loss.params.{name}.classes={ids!r}: give a list of class ids from 0 to "
                                  f"{num_classes - 1} (the dataset has {num_classes} classes), or null for all")
        if given.get("class_weights") is not None:
            try:
                resolve_class_weights(list(given["class_weights"]), num_classes, None)
            except (ConfigError, TypeError):
                raise ConfigError(f"loss.params.{name}.class_weights={given['class_weights']!r}: give "
                                  f"{num_classes} numbers >= 0 (one per class, not all 0), or null") from None


def build_loss(loss_cfg: dict, num_classes: int, ignore_index: int, dataset_root: str | None) -> WeightedLoss:
    """The `loss` config group → WeightedLoss."""
    weights = resolve_class_weights(loss_cfg.get("class_weights"), num_classes, dataset_root,
                                    loss_cfg.get("class_weight_power", 1.0))
    _check_class_params(loss_cfg.get("params") or {}, num_classes)
    if not isinstance(loss_cfg.get("terms"), Mapping) or not loss_cfg["terms"]:  # loss.terms=null, or {}
        raise ConfigError(f"loss.terms is {loss_cfg.get('terms')!r}, not a mapping of term names to weights; choose a "
                          f"loss (loss=ce_dice), or give its terms one by one, e.g. loss.terms.ce=1.0 "
                          f"(+loss.terms.focal=1.0 adds a term)")
    loss = WeightedLoss(dict(loss_cfg["terms"]), ignore_index, class_weights=weights, params=loss_cfg.get("params"))
    if weights is not None and not any(name in WEIGHTED_TERMS for name in loss.weights):
        from segcli.console import first_process, info

        if first_process():  # a note, not an error: experiment=camvid loss=dice keeps the recipe's class_weights=auto
            plus = "" if "ce" in loss_cfg["terms"] else "+"
            info(f"train: note: loss.class_weights is unused: only the {' and '.join(WEIGHTED_TERMS)} terms weight "
                 f"classes, and this loss has {', '.join(loss.weights)}; give one a weight ({plus}loss.terms.ce=1.0) "
                 "or set loss.class_weights=null")
    return loss
