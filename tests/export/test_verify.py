"""segcli.export.verify on hand-made predictors: no model, no files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segcli.export.verify import compare
from segcli.inference.predictor import Predictor

META = {"classes": ["a", "b", "c"], "palette": [[0, 0, 0]] * 3, "ignore_index": 255, "mean": [0, 0, 0],
        "std": [1, 1, 1], "size_multiple": 1}


def _predictor(logits: torch.Tensor, output: str = "logits") -> Predictor:
    """A Predictor whose backend ignores its input and returns `logits` (or their argmax as ids)."""
    result = logits.argmax(1).to(torch.uint8) if output == "ids" else logits
    return Predictor(lambda x: result, {**META, "output": output})


def test_identical_models_agree_fully():
    logits = torch.randn(1, 3, 4, 5)
    parity = compare(_predictor(logits), _predictor(logits.clone()), [np.zeros((4, 5, 3), np.uint8)])
    assert parity.max_abs_logit_diff == 0 and parity.argmax_agreement == 1 and parity.miou == 1
    assert parity.failures(0.0, 1.0, 1.0) == []


def test_one_flipped_pixel():
    ref = torch.zeros(1, 3, 2, 2)
    ref[0, 0] = 1.0  # every pixel is class 0
    cand = ref.clone()
    cand[0, 1, 0, 0] = 2.0  # one pixel becomes class 1: diff 2, 3 of 4 pixels agree
    parity = compare(_predictor(ref), _predictor(cand), [np.zeros((2, 2, 3), np.uint8)])
    assert parity.max_abs_logit_diff == pytest.approx(2.0)
    assert parity.argmax_agreement == pytest.approx(0.75)
    assert parity.miou == pytest.approx(0.75)  # class 0 IoU 3/4; class 1 (only the candidate predicts it) is left out
    failed = parity.failures(1e-4, 0.9999, 0.99)
    assert len(failed) == 3 and failed[0].startswith("max |logit diff|")


def test_the_logit_difference_is_judged_relative_to_the_logits():
    """An untrained-looking model with logits up to 25 differed by 1.03e-4 in onnxruntime (100% argmax agreement)
    and the export was refused by an absolute 1e-4 limit."""
    ref = torch.zeros(1, 3, 2, 2)
    ref[0, 0] = 25.0
    cand = ref.clone()
    cand[0, 0, 0, 0] += 1.03e-4
    parity = compare(_predictor(ref), _predictor(cand), [np.zeros((2, 2, 3), np.uint8)])
    assert parity.logit_scale == pytest.approx(25.0)
    assert parity.relative_logit_diff == pytest.approx(1.03e-4 / 25, rel=1e-2)
    assert parity.failures(1e-4, 0.9999, 0.99) == []
    assert parity.failures(1e-6, 0.9999, 0.99)[0].startswith("max |logit diff|")
    small = torch.full((1, 3, 2, 2), 0.01)  # logits below 1: the limit is absolute
    small[0, 0] = 0.02
    off = small.clone()
    off[0, 1, 0, 0] += 2e-4
    parity = compare(_predictor(small), _predictor(off), [np.zeros((2, 2, 3), np.uint8)])
    assert parity.relative_logit_diff == pytest.approx(2e-4, rel=1e-2)
    assert len(parity.failures(1e-4, 0.0, 0.0)) == 1


def test_ids_output_skips_the_logit_check():
    logits = torch.randn(1, 3, 4, 5)
    parity = compare(_predictor(logits), _predictor(logits, "ids"), [np.zeros((4, 5, 3), np.uint8)])
    assert parity.max_abs_logit_diff is None and parity.argmax_agreement == 1
    assert parity.failures(-1.0, 1.0, 1.0) == []  # no logits to compare, so no logit tolerance applies
    assert "n/a" in parity.summary()


def test_nan_or_infinite_exported_logits_fail_verification():
    """An export whose logits overflowed to NaN/inf on some pixels (float16) was verified as 'max |logit diff| 0, argmax
    agreement 100%': Python's max() drops a NaN difference, and all-NaN logits have argmax 0, torch's class there.
    The predictor now refuses such logits, so verification fails on that image, naming them."""
    from segcli.export.verify import CandidateFailed

    ref = torch.zeros(1, 3, 10, 10)
    ref[0, 0] = 1.0  # every pixel is class 0
    cand = ref.clone()
    cand[0, :, 0, 1] = float("nan")
    cand[0, :, 5, 5] = float("inf")
    with pytest.raises(CandidateFailed, match=r"fails on a 10x10 image \(the model: its logits are NaN or infinite "
                                              r"\(6 of 300 values\)"):
        compare(_predictor(ref), _predictor(cand), [np.zeros((10, 10, 3), np.uint8)])

def test_a_failure_shows_enough_digits_to_be_beyond_its_limit():
    """1.0005e-4 of the largest logit against a limit of 1e-4 read "1.00e-04 of the largest |logit| 20.1, > 0.0001":
    a value that looked within the limit it failed."""
    ref = torch.zeros(1, 3, 2, 2)
    ref[0, 0] = 20.0
    cand = ref.clone()
    cand[0, 0, 0, 0] += 20.0 * 1.0005e-4
    parity = compare(_predictor(ref), _predictor(cand), [np.zeros((2, 2, 3), np.uint8)])
    (failed,) = parity.failures(1e-4, 0.0, 0.0)
    shown = failed.split(", ")[1].split(" of the largest")[0]
    assert float(shown) > 1e-4, failed
