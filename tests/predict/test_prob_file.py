"""probs/*.npz: written at a fast zlib level, but holding exactly what np.savez_compressed would store."""

from __future__ import annotations

import io
import zipfile

import numpy as np


def test_prob_npz_holds_what_savez_compressed_stores(tmp_path):
    from segcli.inference.outputs import write_prob

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 37, 53)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(0)
    probs[0, 0, 0] = 1.2  # clipped to 1 → 255
    classes = ["sky", "road", "café", "道路", "x" * 60]
    path = tmp_path / "a.npz"
    write_prob(path, probs, classes)

    reference = io.BytesIO()
    np.savez_compressed(reference, prob=np.round(np.clip(probs, 0, 1) * 255).astype(np.uint8),
                        classes=np.array(classes))
    with zipfile.ZipFile(path) as written, zipfile.ZipFile(reference) as expected:
        assert written.namelist() == expected.namelist() == ["prob.npy", "classes.npy"]
        for name in expected.namelist():  # the .npy members byte for byte: np.load gives the same arrays
            assert written.read(name) == expected.read(name)
        assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in written.infolist())
    with np.load(path) as stored:  # as README documents it (no allow_pickle needed)
        assert stored["prob"].dtype == np.uint8 and stored["prob"].shape == (5, 37, 53)
        assert stored["prob"][0, 0, 0] == 255
        assert stored["classes"].tolist() == classes
    again = tmp_path / "b.npz"
    write_prob(again, probs, classes)
    assert again.read_bytes() == path.read_bytes()  # deterministic, as np.savez_compressed's files are
