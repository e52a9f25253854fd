"""What an unsharded predict refuses, every --shard refuses too (shards share OUT); listed names keep their spaces;
a folder where an output file goes is named before any work; a listed earlier output under --out is named as the
file at risk."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
from predict_helpers import scene


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(scene(40, 56, seed), cv2.COLOR_RGB2BGR))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_shard_refuses_an_output_that_would_overwrite_another_shards_input(ckpt, cli, tmp_path):
    """`predict D --out D --shard 1/2`: x.jpg's overlay is D/overlays/x.png, an input of shard 0: it was replaced
    (exit 0), where the unsharded run refuses."""
    folder = tmp_path / "D"
    _image(folder / "x.jpg", 1)
    blocked = _image(folder / "overlays" / "x.png", 2)
    before = _digest(blocked)
    for spec in ("0/2", "1/2"):
        code, _, err = cli("predict", folder, "--ckpt", ckpt, "--out", folder, "--shard", spec)
        assert code == 2 and "would overwrite this input" in err, (spec, err)
    assert _digest(blocked) == before


def test_every_shard_refuses_two_inputs_writing_one_file(ckpt, cli, tmp_path):
    """An image clip/000000.png beside a video clip.avi with --frame-masks: both write OUT/clip/000000.png; each
    shard had one of them, so the second shard replaced the first's mask without a word."""
    folder = tmp_path / "V"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (56, 40))
    for seed in range(3):
        writer.write(cv2.cvtColor(scene(40, 56, seed), cv2.COLOR_RGB2BGR))
    writer.release()
    _image(folder / "clip" / "000000.png", 4)
    for spec in ("0/2", "1/2"):
        code, _, err = cli("predict", folder, "--ckpt", ckpt, "--out", tmp_path / "o", "--frame-masks", "--shard", spec)
        assert code == 2 and "would both write" in err, (spec, err)


def test_listed_names_that_begin_or_end_with_spaces_are_read(ckpt, cli, tmp_path, monkeypatch):
    """`find` prints ' lead.png' as it is; each line was stripped, so the file was 'not found' under the stripped
    name. Spaces around a name no file has are still dropped (an editor's indentation)."""
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / " lead.png", 1)
    _image(tmp_path / "trail.png ", 2)
    _image(tmp_path / "plain.png", 3)
    (tmp_path / "l.txt").write_text(" lead.png\ntrail.png \n   plain.png  \n")
    code, _, err = cli("predict", "--list", "l.txt", "--ckpt", ckpt, "--out", "o", "--save", "mask")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [" lead.png", "plain.png", "trail.png"]


def test_a_folder_where_an_output_file_goes_is_named_before_any_work(ckpt, cli, tmp_path):
    """OUT/areas.csv or OUT/x.png as a folder failed after predicting, as 'cannot write it (Is a directory); check
    free space and permissions'."""
    _image(tmp_path / "in" / "x.png")
    for blocker, save in (("areas.csv", "mask,areas"), ("x.png", "mask")):
        out = tmp_path / f"o-{save}"
        (out / blocker).mkdir(parents=True)
        code, _, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", out, "--save", save)
        lines = [line for line in err.splitlines() if line.startswith("segcli: error")]
        assert code == 3 and lines == [f"segcli: error: --out {out}: {out / blocker} is a folder, but predict writes "
                                       "a file of that name; move the folder away, or give another --out"], err
        assert sorted(p.name for p in out.iterdir()) == [blocker]


def test_a_listed_earlier_output_under_out_is_named_as_the_file_at_risk(ckpt, cli, tmp_path, monkeypatch):
    """`find in -name '*.png' | segcli predict - --out in/pred` run twice: the second run lists in/pred/a.png too,
    and the error named in/a.png (not at risk) as 'this input'."""
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "in" / "a.png")
    shutil.copy(tmp_path / "in" / "a.png", tmp_path / "in" / "b.png")
    (tmp_path / "in" / "pred").mkdir()
    _image(tmp_path / "in" / "pred" / "a.png", 5)
    (tmp_path / "l.txt").write_text("in/a.png\nin/b.png\nin/pred/a.png\n")
    code, _, err = cli("predict", "--list", "l.txt", "--ckpt", ckpt, "--out", "in/pred", "--save", "mask")
    assert code == 2
    assert ("segcli: error: in/pred/a.png: --out in/pred would overwrite this input with the prediction of in/a.png; "
            "give an --out folder that holds no inputs (an earlier run's output? leave --out's files out of the list)"
            ) in err


def test_a_symlinked_input_file_is_not_overwritten_through_its_link(ckpt, cli, tmp_path):
    """`predict links --out photos`, links/x.png a symlink to photos/x.png (as DVC, git-annex and datalad keep data):
    the mask replaced the original photo (exit 0). Refused as for the file itself."""
    photo = _image(tmp_path / "photos" / "x.png", 3)
    before = _digest(photo)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "x.png").symlink_to(Path("..") / "photos" / "x.png")
    code, _, err = cli("predict", tmp_path / "links", "--ckpt", ckpt, "--out", tmp_path / "photos")
    assert code == 2 and "would overwrite this input" in err, err
    assert _digest(photo) == before
