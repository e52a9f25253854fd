"""Synthetic corruptions: deterministic, shape-preserving, stronger with severity."""

import numpy as np
import pytest

from segcli.errors import ConfigError
from segcli.evaluation.corruptions import (CORRUPTIONS, corrupter, motion_kernel, parse_corruptions, parse_severities,
                                           plasma_fractal)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:45, 0:70]
    base = np.stack([xx * 3, yy * 5, (xx + yy) * 2], axis=-1) % 256
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


def change(before: np.ndarray, after: np.ndarray, name: str) -> float:
    """How much a corruption changed an image: mean absolute difference, or for fog (a new random
    haze pattern per image and severity, renormalised) the loss of correlation with the original."""
    if name == "fog":
        return 1.0 - float(np.corrcoef(before.ravel(), after.ravel())[0, 1])
    return float(np.abs(after.astype(int) - before).mean())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_deterministic_shape_and_severity(name, image):
    outs = []
    for severity in range(1, 6):
        a = corrupter(name, severity, seed=0)(image, 3)
        b = corrupter(name, severity, seed=0)(image, 3)
        assert a.shape == image.shape and a.dtype == np.uint8
        assert np.array_equal(a, b)  # same (seed, index, corruption, severity) → same pixels
        assert not np.array_equal(a, image)
        outs.append(np.mean([change(image, corrupter(name, severity)(image, i), name) for i in range(8)]))
    # averaged over 8 images, severity 5 changes an image more than severity 1
    assert outs[-1] > outs[0], outs


def test_random_parts_depend_on_the_image_index(image):
    noise = corrupter("gaussian_noise", 3)
    assert not np.array_equal(noise(image, 0), noise(image, 1))


def test_motion_kernel_and_fractal():
    k = motion_kernel(5, 2.0, 0.0)
    assert k.shape == (11, 11) and k.sum() == pytest.approx(1.0) and k[5, 5:].sum() == pytest.approx(1.0)
    f = plasma_fractal(64, 2.0, np.random.default_rng(0))
    assert f.shape == (64, 64) and f.min() == 0.0 and f.max() == pytest.approx(1.0)


def test_parsing():
    assert parse_corruptions("fog,jpeg") == ["fog", "jpeg"]
    assert parse_corruptions(["all"]) == list(CORRUPTIONS)
    assert parse_corruptions([]) == []
    with pytest.raises(ConfigError, match="did you mean gaussian_noise"):
        parse_corruptions("gausian_noise")
    assert parse_severities(3) == [3] and parse_severities("5,1,3") == [1, 3, 5]
    for bad in ("0", "6", "x"):
        with pytest.raises(ConfigError, match="1..5"):
            parse_severities(bad)


@pytest.mark.parametrize("override, line", [
    ("severity=3.0", "--severity 3.0: give integers 1..5, e.g. --severity 3 or --severity 1,3,5"),
    ("severity=null", "severity=null: give integers 1..5, e.g. --severity 3 or --severity 1,3,5"),
    ("corruptions=3", "unknown corruption '3'; choose from brightness, contrast, gaussian_noise, motion_blur, jpeg, "
                      "fog (or all)"),
    ("corruptions=true", "unknown corruption 'True'; choose from brightness, contrast, gaussian_noise, motion_blur, "
                         "jpeg, fog (or all)"),
])
def test_a_number_or_null_given_as_hydra_override_is_a_usage_error(crafted, capsys, override, line):
    """`severity=3.0`, `severity=null`, `corruptions=3` (Hydra gives a float, None, an int or a bool, not a string or a
    list) were exit 4: "internal error: TypeError: 'float' object is not iterable"."""
    from helpers_eval import run_cli

    root, preds = crafted
    code, out, err = run_cli(["eval", "--predictions", preds, "--data", root, override], capsys)
    assert code == 2 and out == "" and err.strip().splitlines() == [f"segcli: error: {line}"], err
    with pytest.raises(ConfigError):
        parse_corruptions(1.5)
    with pytest.raises(ConfigError):
        parse_severities(None)


@pytest.mark.parametrize("shape", [(3, 5, 1), (1, 1, 2), (3, 5, 4), (9, 1, 5)])
def test_per_channel_corruptions_keep_any_channel_count_and_tiny_sizes(shape):
    """motion_blur returned an (H, W) image for an (H, W, 1) one (OpenCV drops a single channel)."""
    image = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    for name in (n for n in CORRUPTIONS if n not in ("brightness", "jpeg")):
        for severity in (1, 5):
            out = corrupter(name, severity)(image, 0)
            assert out.shape == image.shape and out.dtype == np.uint8, (name, severity)


def test_corruptions_that_name_none_are_a_usage_error(trained, capsys):
    """`--corruptions ","` (or an empty value from a script's variable) evaluated no corruption and exited 0 without
    a word: the robustness run the user asked for silently did not happen."""
    from helpers_eval import run_cli

    for given in (",", ""):
        code, out, err = run_cli(["eval", "--ckpt", trained["ckpt"], "--corruptions", given], capsys)
        assert code == 2 and out == "" and err.strip().splitlines() == [
            f"segcli: error: --corruptions '{given}': names no corruption; give one or more of brightness, contrast, "
            "gaussian_noise, motion_blur, jpeg, fog, or all"], err
