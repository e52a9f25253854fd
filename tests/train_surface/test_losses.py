"""Every loss term ignores ignore_index pixels (value and gradient); class weights; errors list choices."""

from __future__ import annotations

import re

import pytest
import torch
from helpers_surface import QUICK, segcli

from segcli.errors import ConfigError
from segcli.models.losses import TERMS, WeightedLoss, build_loss

IGNORE = 255


def _case():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    target[0, :3] = IGNORE
    target[1, :, :2] = IGNORE
    return logits, target


@pytest.mark.parametrize("term", [*TERMS, "sum"])
def test_ignored_pixels_contribute_nothing(term):
    terms = {t: 1.0 for t in TERMS} if term == "sum" else {term: 1.0}
    loss_fn = WeightedLoss(terms, IGNORE, class_weights=[1.0, 2.0, 0.5, 1.0])
    logits, target = _case()
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)
    changed = torch.where(ignored, torch.randn_like(logits) * 10, logits)
    values, grads = [], []
    for x in (logits, changed):
        x = x.clone().requires_grad_(True)
        value = loss_fn(x, target)
        value.backward()
        values.append(value.detach())
        grads.append(x.grad)
    assert torch.isfinite(values[0]) and values[0] > 0
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0][ignored].abs().max() == 0  # no gradient flows into ignored pixels


@pytest.mark.parametrize("term", [*TERMS, "sum"])
def test_a_batch_with_nothing_labelled_is_skipped_not_nan(term):
    """A crop of unlabelled pixels only gave NaN for ce and focal (a mean over no pixels) and a non-scalar for
    lovasz; one NaN step makes every weight NaN. Now 0 with zero, finite gradients."""
    terms = {t: 1.0 for t in TERMS} if term == "sum" else {term: 1.0}
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    value = WeightedLoss(terms, IGNORE, class_weights=[1.0, 2.0, 0.5, 1.0])(logits, torch.full((2, 8, 8), IGNORE))
    value.backward()
    assert value.shape == () and value.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("terms", [{"lovasz": 1.0}, {"ce": 1.0, "lovasz": 1.0}])
def test_per_image_lovasz_leaves_out_an_image_with_nothing_labelled(terms):
    """loss.params.lovasz.per_image=true with one image of ignore_index pixels only in the batch (an unlabelled
    frame, or a crop inside an ignored region) failed the step, exit 4: 'Boolean value of Tensor with no values is
    ambiguous'. The per-image mean is over the images that have labels, and the unlabelled one gets no gradient."""
    logits, target = _case()
    target = torch.cat([target, torch.full((1, 8, 8), IGNORE)])
    logits = torch.cat([logits, torch.randn(1, 4, 8, 8)]).requires_grad_(True)
    params = {"lovasz": {"per_image": True}}
    value = WeightedLoss(terms, IGNORE, params=params)(logits, target)
    value.backward()
    labelled = WeightedLoss(terms, IGNORE, params=params)(logits[:2], target[:2])
    torch.testing.assert_close(value, labelled)
    assert logits.grad[2].abs().max() == 0 and logits.grad[:2].abs().max() > 0


def test_training_tells_the_loss_on_the_host_whether_a_batch_has_labels():
    """Asking a CUDA mask whether any pixel is labelled made the host wait for every step's forward pass; the
    loader workers now answer it when they collate the batch, and the loss skips the same batches with it."""
    from segcli.data.datamodule import PadCollate
    from segcli.models.module import SegModule

    meta = {"classes": ["a", "b"], "ignore_index": IGNORE, "mean": [0.5] * 3, "std": [0.25] * 3, "size_multiple": 32,
            "model": {"arch": "fpn", "encoder": "resnet18", "in_channels": 3, "classes": 2, "kwargs": {}},
            "dataset": {"root": None}}
    module = SegModule(meta, {"terms": {"ce": 1.0}}, {"name": "adamw", "lr": 1e-3}, {"name": "poly"})
    module.log = lambda *a, **k: None
    image = torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
    blank = {"image": image, "mask": torch.full((32, 32), IGNORE)}
    some = torch.full((32, 32), IGNORE)
    some[5, 5] = 1
    empty = PadCollate(IGNORE)([blank, blank])
    labelled = PadCollate(IGNORE)([blank, {"image": image, "mask": some}])
    assert empty["labelled"] is False and labelled["labelled"] is True
    assert module.training_step(empty, 0).item() == 0.0
    assert module.training_step(labelled, 0).item() > 0.0

    logits = torch.randn(2, 2, 32, 32)
    full = torch.randint(0, 2, (2, 32, 32))
    loss = WeightedLoss({"ce": 1.0}, IGNORE)
    assert loss(logits, full, labelled=False).item() == 0.0  # the collated answer is the one used
    torch.testing.assert_close(loss(logits, full, labelled=True), loss(logits, full))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_matches_torch_and_zero_weight_classes_give_no_nan(smoothing):
    logits, target = _case()
    weights = [0.5, 1.0, 3.0, 0.0]
    ours = WeightedLoss({"ce": 1.0}, IGNORE, class_weights=weights, params={"ce": {"label_smoothing": smoothing}})
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights), ignore_index=IGNORE, label_smoothing=smoothing)
    torch.testing.assert_close(ours(logits, target), ref(logits, target))
    only_zero_weight = torch.full((2, 8, 8), 3)  # every labelled pixel has class weight 0: torch gives 0/0
    assert ref(logits, only_zero_weight).isnan()
    assert ours(logits, only_zero_weight).item() == 0.0


def test_class_weights_reach_ce_and_focal():
    logits, target = _case()
    for term in ("ce", "focal"):
        plain = WeightedLoss({term: 1.0}, IGNORE)(logits, target)
        weighted = WeightedLoss({term: 1.0}, IGNORE, class_weights=[0.0, 0.0, 0.0, 1.0])(logits, target)
        assert not torch.isclose(plain, weighted), term


def test_weighted_sum_is_the_sum_of_terms():
    logits, target = _case()
    ce = WeightedLoss({"ce": 1.0}, IGNORE)(logits, target)
    lovasz = WeightedLoss({"lovasz": 1.0}, IGNORE)(logits, target)
    both = WeightedLoss({"ce": 0.5, "lovasz": 2.0}, IGNORE)(logits, target)
    torch.testing.assert_close(both, 0.5 * ce + 2.0 * lovasz)


def test_params_reach_the_term():
    logits, target = _case()
    gamma0 = WeightedLoss({"focal": 1.0}, IGNORE, params={"focal": {"gamma": 0.0}})(logits, target)
    gamma2 = WeightedLoss({"focal": 1.0}, IGNORE, params={"focal": {"gamma": 2.0}})(logits, target)
    assert gamma2 < gamma0


def test_errors_list_the_choices():
    with pytest.raises(ConfigError, match="choose from ce, dice, focal, lovasz, tversky, jaccard"):
        WeightedLoss({"lovaz": 1.0}, IGNORE)
    with pytest.raises(ConfigError, match="loss.params.focal"):
        WeightedLoss({"focal": 1.0}, IGNORE, params={"focal": {"gama": 2.0}})
    with pytest.raises(ConfigError, match="weight 0"):
        WeightedLoss({"ce": 0.0}, IGNORE)


@pytest.mark.parametrize("term, key, value, fix", [
    ("ce", "reduction", "sum", "averaged over the labelled pixels"), ("focal", "reduction", "none", "averaged"),
    ("dice", "ignore_index", 0, "prepare --ignore-index"), ("ce", "weight", [1.0, 2.0], "loss.class_weights"),
    ("lovasz", "mode", "binary", "multiclass")])
def test_params_segcli_sets_itself_are_refused(term, key, value, fix):
    """`+loss.params.ce.reduction=sum` was dropped without a word; focal's reduction=none gave a per-pixel map the
    weighted sum could not use; weight and ignore_index collided with segcli's own ('multiple values')."""
    with pytest.raises(ConfigError, match=rf"^loss.params.{term}.{key}: segcli sets this itself; .*{re.escape(fix)}"):
        WeightedLoss({term: 1.0}, IGNORE, params={term: {key: value}})
    WeightedLoss({"dice": 1.0}, IGNORE, params={"dice": {"class_weights": [1.0, 2.0, 1.0]}})  # a region term's own


def test_params_of_a_term_the_loss_does_not_have_are_refused(tiny_data, tmp_path):
    """`loss=ce_dice +loss.params.focal.gamma=3` trained on ce + dice with the focal settings unused, silently."""
    with pytest.raises(ConfigError, match=r"loss.params.focal: 'focal' is not a term of this loss \(terms: ce, dice\)"):
        WeightedLoss({"ce": 1.0, "dice": 1.0}, IGNORE, params={"focal": {"gamma": 3.0}})
    WeightedLoss({"ce": 1.0, "dice": 0.0}, IGNORE, params={"dice": {"smooth": 1.0}})  # dice weighted 0: its params stay
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "+loss.params.focal.gamma=3", "--run-dir", tmp_path / "r")
    assert proc.returncode == 2 and "remove them with ~loss.params.focal" in proc.stderr, proc.stderr[-2000:]
    assert "add the term with +loss.terms.focal=WEIGHT" in proc.stderr  # `--from RUN ~loss.terms.dice` was told
    # only that, or to choose a loss, which --from refuses
    assert not (tmp_path / "r").exists()


def test_a_term_the_preset_lacks_is_added_as_the_refusal_advises(tiny_data, tmp_path):
    """`+loss.terms.focal=W`, the fix the refusal above names (and README's 'any weighted sum via loss.terms'), was
    itself refused: "+loss.terms.focal: 'segcli train' reads no such key"."""
    import yaml

    run = tmp_path / "r"
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "final_eval=false", "+loss.terms.focal=0.5",
                  "+loss.params.focal.gamma=3", "loss.terms.dice=0", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = yaml.safe_load((run / "config.yaml").read_text())["loss"]
    assert saved["terms"] == {"ce": 1.0, "dice": 0, "focal": 0.5} and saved["params"]["focal"] == {"gamma": 3}
    hparams = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["hyper_parameters"]["loss"]
    assert hparams["terms"]["focal"] == 0.5
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "+loss.terms.focall=1", "--run-dir", tmp_path / "bad")
    assert proc.returncode == 2 and "unknown loss term 'focall' (did you mean focal?)" in proc.stderr


def test_class_weights_that_no_term_uses_are_noted(capsys):
    """loss=dice loss.class_weights=[...] trained unweighted without a word (only ce and focal weight classes)."""
    weights = [1.0, 2.0, 0.5, 1.0]
    for terms, noted in (({"dice": 1.0}, True), ({"ce": 0.0, "lovasz": 1.0}, True), ({"ce": 1.0, "dice": 1.0}, False),
                         ({"focal": 1.0}, False)):
        build_loss({"terms": terms, "class_weights": weights}, 4, IGNORE, None)
        err = capsys.readouterr().err
        assert ("loss.class_weights is unused" in err) == noted, (terms, err)
    build_loss({"terms": {"dice": 1.0}, "class_weights": None}, 4, IGNORE, None)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("preset", ["ce", "dice", "focal", "lovasz", "tversky", "jaccard", "ce_dice", "ce_lovasz",
                                    "focal_dice"])
def test_every_loss_preset_builds(preset):
    from segcli.config import compose, to_container

    cfg = compose("train", [f"loss={preset}"])
    loss_fn = build_loss(to_container(cfg.loss), 4, IGNORE, None)
    logits, target = _case()
    assert torch.isfinite(loss_fn(logits, target))


def test_class_weight_errors_say_what_is_wrong():
    from segcli.models.losses import resolve_class_weights

    with pytest.raises(ConfigError, match="has 2 values for 4 classes"):
        resolve_class_weights([1, 2], 4, None)
    for bad in ([1, 2, 3, -1], [1, 2, 3, float("nan")], [1, 2, 3, float("inf")], [0, 0, 0, 0]):
        with pytest.raises(ConfigError, match="every weight must be a finite number >= 0, and not all 0"):
            resolve_class_weights(bad, 4, None)
    assert resolve_class_weights([0, 1, 2, 3], 4, None) == [0.0, 1.0, 2.0, 3.0]


_REGION_CASES = [  # (term, keyword arguments) as a user gives them in loss.params.<term>
    ("dice", {}), ("dice", {"log_loss": True, "smooth": 1.0}), ("dice", {"classes": [1, 2], "class_weights": [1, 2, 3, 4]}),
    ("jaccard", {}), ("jaccard", {"smooth": 0.5, "eps": 1e-5}),
    ("tversky", {"alpha": 0.3, "beta": 0.7, "gamma": 1.5}), ("tversky", {"from_logits": False}),
]


@pytest.mark.parametrize("term,params", _REGION_CASES)
def test_region_terms_equal_smp_in_value_and_gradient(term, params):
    """dice/jaccard/tversky are segcli's own per-class-sum implementation (3.5–4× faster than smp's): same value and
    gradient as smp.losses' classes in multiclass mode, with ignored pixels, a class absent from the target and
    every keyword argument smp takes."""
    import segmentation_models_pytorch as smp

    smp_class = {"dice": smp.losses.DiceLoss, "jaccard": smp.losses.JaccardLoss, "tversky": smp.losses.TverskyLoss}[term]
    logits, target = _case()
    logits = (logits * 3).double()
    target[target == 3] = 0  # class 3 absent: its term is 0 in both
    if params.get("from_logits") is False:
        logits = logits.softmax(1)
    ours = WeightedLoss({term: 1.0}, IGNORE, params={term: params}).terms[term]  # the term itself: float64 here
    ref = smp_class("multiclass", ignore_index=IGNORE, **params)
    grads, values = [], []
    for fn in (ours, ref):
        x = logits.clone().requires_grad_(True)
        value = fn(x, target)
        value.backward()
        values.append(value.detach())
        grads.append(x.grad)
    torch.testing.assert_close(values[0], values[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def test_region_terms_refuse_unknown_params():
    with pytest.raises(ConfigError, match="loss.params.dice"):
        WeightedLoss({"dice": 1.0}, IGNORE, params={"dice": {"smoth": 1.0}})


def test_class_ids_and_weights_in_term_params_are_checked_against_the_classes(tiny_data, tmp_path):
    """loss.params.dice.classes=[0,99] or a class_weights list of the wrong length failed in the first training step,
    after the run directory was made: IndexError / a size mismatch, exit 4."""
    for params, message in (({"classes": [0, 99]}, r"loss.params.dice.classes=\[0, 99\]: give a list of class ids "
                                                   r"from 0 to 3 \(the dataset has 4 classes\)"),
                            ({"classes": [1.5]}, "give a list of class ids"),
                            ({"class_weights": [1, 2]}, r"loss.params.dice.class_weights=\[1, 2\]: give 4 numbers")):
        with pytest.raises(ConfigError, match=message):
            build_loss({"terms": {"dice": 1.0}, "params": {"dice": params}}, 4, IGNORE, None)
    build_loss({"terms": {"tversky": 1.0}, "params": {"tversky": {"classes": [0, 3], "class_weights": [0, 1, 1, 1]}}},
               4, IGNORE, None)
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "+loss.params.dice.classes=[0,99]", "--run-dir",
                  tmp_path / "r")
    assert proc.returncode == 2 and "loss.params.dice.classes=[0, 99]: give a list of class ids from 0 to" in \
        proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("gamma", [0.75, 1.5])
def test_focal_tversky_of_a_batch_without_its_classes_has_finite_gradients(gamma):
    """Focal Tversky (gamma < 1) on a batch where the scored class is absent: the loss is 0 and 0 ** 0.75 has an
    infinite slope, so every gradient was nan and training stopped as 'diverged: lower optim.lr'."""
    loss_fn = build_loss({"terms": {"tversky": 1.0}, "params": {"tversky": {"gamma": gamma, "classes": [1]}}}, 2,
                         IGNORE, None)
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    background = torch.zeros(2, 8, 8, dtype=torch.long)
    value = loss_fn(logits, background)
    value.backward()
    assert float(value) == 0.0 and torch.isfinite(logits.grad).all()
    logits.grad = None
    target = background.clone()
    target[:, 2:5, 2:5] = 1  # the class present: a positive loss, and gradients that move its logits
    value = loss_fn(logits, target)
    value.backward()
    assert float(value) > 0 and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
