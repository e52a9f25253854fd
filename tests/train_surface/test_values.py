"""Numeric training settings and switches are checked before anything is built or written: a one-line usage error naming the
key, instead of an internal error from inside training or a value silently truncated."""

from __future__ import annotations

import pytest

from segcli.checks import check_values
from segcli.config import compose, conf_dir, to_container
from segcli.errors import ConfigError

# override → what the message must name. Each of these was an internal error (exit 4) from inside training, or
# trained with the value truncated or ignored, before the checks.
BAD = {
    "data.batch_size=0": "data.batch_size=0",
    "data.batch_size=2.5": "data.batch_size=2.5: give a whole number",
    "augment.crop_size=[0,10]": "augment.crop_size",
    "augment.scale=[2,1]": r"augment.scale=\[2, 1\]: give the low end first",
    "augment.hue=0.9": "augment.hue",
    "augment.hflip=2": "augment.hflip",
    "augment.cat_max_ratio=0": "augment.cat_max_ratio=0",  # passed as 1.0, i.e. off
    "augment.jpeg.p=0.5 augment.jpeg.quality=[0,200]": "augment.jpeg.quality",
    "optim.lr=-1": "optim.lr=-1",
    "optim.weight_decay=-1": "optim.weight_decay",
    "optim.betas=[0.9,1.5]": "optim.betas",
    "sched.warmup_steps=-5": "sched.warmup_steps",
    "trainer.max_epochs=0": "trainer.max_epochs=0.*-1 for no limit",
    "trainer.max_time=12": "trainer.max_time=12: give days:hours:minutes:seconds",
    "trainer.max_time=00:12:00": "trainer.max_time",
    # Lightning's Timer: exit 4 (timedelta(minute=1)), a Lightning refusal after the run directory was made (one
    # digit for the hours), or a run that trained nothing and exited 0 (no budget)
    "trainer.max_time={minute:1}": r"trainer.max_time=\{'minute': 1\}: give days:hours:minutes:seconds",
    "trainer.max_time=0:0:10:00": "trainer.max_time='0:0:10:00': give days:hours:minutes:seconds",
    "trainer.max_time=00:00:00:00": "trainer.max_time='00:00:00:00' trains nothing",
    "trainer.max_time={minutes:0}": "trains nothing",
    "trainer.max_time={minutes:-1}": "trainer.max_time",
    "trainer.check_val_every_n_epoch=0": "trainer.check_val_every_n_epoch",
    "trainer.accumulate_grad_batches=0": "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val=-1": "trainer.gradient_clip_val",
    "save_every_n_steps=0": "save_every_n_steps",
    "save_min_interval_s=-1": "save_min_interval_s",
    "data.repeat=0": "data.repeat",
    "trainer.limit_train_batches=0": "trainer.limit_train_batches=0 trains nothing",
    "early_stopping.patience=2.5": "early_stopping.patience=2.5: give a number of validations",
    "early_stopping.patience=abc": "early_stopping.patience",
    "early_stopping.min_delta=-0.1": "early_stopping.min_delta",
    # switches: "maybe" counted as true wherever the setting is tested for truth
    "final_eval=maybe": "final_eval='maybe': give true or false",
    "channels_last=yes": "channels_last='yes': give true or false",
    "model.compile=1": "model.compile=1: give true or false",
    "data.cache=sometimes": "data.cache='sometimes': give auto, true or false",
    "optim.fused=yes": "optim.fused='yes': give auto, true or false",
    "data.num_workers=2.5": "data.num_workers=2.5: give auto or a whole number",
    # loss settings: exit 4 from torch (label_smoothing, 'abc'), or a loss that trains the wrong way (negative)
    "loss.terms.ce=-1": "loss.terms.ce=-1: give a weight >= 0",
    "loss.terms.ce=abc": "loss.terms.ce='abc'",
    "loss.params.ce.label_smoothing=1.5": "loss.params.ce.label_smoothing=1.5",
    "loss=focal loss.params.focal.gamma=-2": "loss.params.focal.gamma=-2",
    "loss=tversky loss.params.tversky.alpha=-1": "loss.params.tversky.alpha=-1",
    "loss.class_weight_power=-1": r"loss.class_weight_power=-1: give a number in \[0, 4\]",
    "loss.class_weight_power=5": r"loss.class_weight_power=5: give a number in \[0, 4\]",  # also without auto
    # a term's argument added with '+': 'no' was kept as text (true), a negative smooth trained on a 3.6e8 loss
    "loss=tversky +loss.params.tversky.log_loss=no": "loss.params.tversky.log_loss='no': give true or false",
    "loss=lovasz loss.params.lovasz.per_image=off": "loss.params.lovasz.per_image='off': give true or false",
    "loss=focal +loss.params.focal.normalized=1": "loss.params.focal.normalized=1: give true or false",
    "loss=tversky +loss.params.tversky.smooth=-50": "loss.params.tversky.smooth=-50: give a number >= 0",
    # the index is then 1 for any prediction: every step's loss was exactly 0, and the run exited 0, trained on nothing
    "loss=tversky loss.params.tversky.alpha=0 loss.params.tversky.beta=0": "tversky.alpha and beta are both 0",
    "seed=abc": "seed='abc': give a whole number from 0 to 4294967295",
    "seed=-1": "seed=-1",
    "trainer.devices=abc": "trainer.devices='abc': give auto",
    "trainer.devices=0": "trainer.devices=0",
}


@pytest.mark.parametrize("override", sorted(BAD))
def test_bad_values_name_the_key(override):
    with pytest.raises(ConfigError, match=BAD[override]):
        check_values(to_container(compose("train", override.split())))


@pytest.mark.parametrize("override", ["augment=robust augment.jpeg.p=0.1", "optim=sgd optim.momentum=0 optim.nesterov=false",
                                      "trainer.max_epochs=-1 trainer.max_time=00:00:01:00",
                                      "trainer.max_time={minutes:1.5}", "trainer.max_time=01:00:00:00", "augment.crop_size=null",
                                      "trainer.gradient_clip_val=1.0", "data.batch_size=2.0", "augment.scale=[1,1]",
                                      "data.cache=true data.num_workers=3", "data.cache=AUTO data.num_workers=auto",
                                      "trainer.devices=[0,1]", "trainer.devices='0,'", "trainer.devices=-1",
                                      "loss=focal loss.params.focal.alpha=0.25", "seed=4294967295",
                                      "loss=tversky loss.params.tversky.alpha=0 loss.params.tversky.beta=1",
                                      "loss=tversky loss.params.tversky.alpha=0 loss.params.tversky.beta=0 "
                                      "loss.terms.tversky=0 +loss.terms.ce=1",
                                      "loss=tversky +loss.params.tversky.log_loss=true +loss.params.tversky.smooth=1"])
def test_good_values_pass(override):
    check_values(to_container(compose("train", override.split())))


def test_every_shipped_config_passes():
    for group in ("experiment", "augment", "optim", "sched", "trainer", "loss", "model"):
        for path in sorted((conf_dir() / group).glob("*.yaml")):
            check_values(to_container(compose("train", [f"{group}={path.stem}"])))


def test_from_the_command_line_nothing_is_left(tiny_data, tmp_path):
    from helpers_surface import QUICK, segcli

    # ours; Lightning's when it builds the Trainer; Lightning's inside fit (0.1 of 2 batches: "internal error")
    for override in ("trainer.max_time=12", "trainer.devices=0", "trainer.limit_train_batches=0.1"):
        run = tmp_path / "run"
        proc = segcli("train", f"data.root={tiny_data}", *QUICK, override, "--run-dir", run)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith("segcli: error: trainer")
        assert not run.exists(), override  # Lightning's refusal left config.yaml in it
    # the final evaluation's settings: found only after training, with both checkpoints written (exit 4 or 2)
    for override in ("inference.overlap=abc", "inference.mode=slid", "final_eval=false inference.mode=slid"):
        proc = segcli("train", f"data.root={tiny_data}", *QUICK, *override.split(), "--run-dir", tmp_path / "run")
        assert proc.returncode == 2 and not (tmp_path / "run").exists(), proc.stderr[-2000:]
        assert "inference." in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_a_sweep_checks_every_job_before_the_first(tiny_data, tmp_path):
    from helpers_surface import QUICK, segcli

    proc = segcli("train", "-m", f"data.root={tiny_data}", *QUICK, "optim.lr=1e-3,-1", "--run-dir", tmp_path / "sweep")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "sweep job 1" in proc.stderr and "optim.lr=-1" in proc.stderr
    assert not (tmp_path / "sweep").exists()


def test_the_last_epoch_is_validated(tiny_data, tmp_path):
    """With validation every other epoch and one epoch to train, no validation ran: no best.ckpt, no final
    evaluation (experiment=camvid trainer.max_epochs=1)."""
    from helpers_surface import QUICK, segcli

    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tiny_data}", *QUICK, "trainer.check_val_every_n_epoch=2", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "eval" / "report.json").is_file()


def test_a_dataset_under_a_path_with_odd_characters(tiny_data, tmp_path):
    """data.root with non-ASCII letters, a space and parentheses, and ~ (which the shell leaves alone inside
    data.root=~/...), trains; the checkpoint records the expanded path."""
    import shutil

    import torch

    from helpers_surface import QUICK, segcli

    home = tmp_path / "home"
    shutil.copytree(tiny_data, home / "Bilder" / "Straße (2)")
    run = tmp_path / "rün 1"
    proc = segcli("train", "data.root=~/Bilder/Straße (2)", *QUICK, "--run-dir", run, env={"HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)["hyper_parameters"]["meta"]
    assert meta["dataset"]["root"] == str(home / "Bilder" / "Straße (2)")


def test_data_root_naming_the_card_file(tiny_data, tmp_path):
    """data.root=DIR/dataset.yaml trained, but the checkpoint recorded the file as the dataset's folder, and
    `segcli export` then said the dataset was not available to verify on."""
    import torch

    from helpers_surface import QUICK, segcli

    run = tmp_path / "run"
    proc = segcli("train", f"data.root={tiny_data / 'dataset.yaml'}", *QUICK, "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    best = run / "checkpoints" / "best.ckpt"
    assert torch.load(best, weights_only=False)["hyper_parameters"]["meta"]["dataset"]["root"] == str(tiny_data)
    proc = segcli("export", "--ckpt", best, "--out", tmp_path / "m.onnx", "verify_max_images=1")
    assert proc.returncode == 0 and (tmp_path / "m.onnx").is_file(), proc.stderr[-2000:]


def test_a_run_ended_by_max_steps_mid_epoch_validates_the_weights_it_ends_with(tiny_data, tmp_path):
    """+trainer.max_steps ends training inside an epoch, where Lightning validates only on a stop request: no
    validation ran, so no best.ckpt and no final evaluation (with validation every epoch or every fifth)."""
    import csv

    from helpers_surface import QUICK, segcli

    run = tmp_path / "run"
    quick = [arg for arg in QUICK if not arg.startswith("trainer.max_epochs=")]
    proc = segcli("train", f"data.root={tiny_data}", *quick, "trainer.max_epochs=3", "+trainer.max_steps=4",
                  "trainer.check_val_every_n_epoch=5", "trainer.log_every_n_steps=1", "--run-dir", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert (run / "eval" / "report.json").is_file()
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    steps = [int(r["step"]) for r in rows if r.get("train/loss_step")]
    val = [int(r["step"]) for r in rows if r.get("val/mIoU")]
    assert max(steps) == 3 and val == [3]  # the 4th and last optimiser step's weights were scored
