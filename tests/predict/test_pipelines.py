"""predict in pipelines: globs, list files and stdin; --shard; unreadable inputs; kill and --skip-existing resume."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from predict_helpers import subprocess_cli, write_images


def _masks(folder: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(folder.rglob("*.png")):
        if "overlays" in path.parts:
            continue
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask is not None, f"{path} does not decode"
        found[str(path.relative_to(folder))] = mask
    return found


def test_glob_list_file_and_stdin(ckpt, cli, tmp_path):
    write_images(tmp_path / "in" / "a", 2)
    write_images(tmp_path / "in" / "b", 2, suffix=".jpg")
    code, out, err = cli("predict", str(tmp_path / "in" / "**" / "*.jpg"), "--ckpt", ckpt, "--out", tmp_path / "glob")
    assert code == 0, err
    assert sorted(_masks(tmp_path / "glob")) == ["b/img_000.png", "b/img_001.png"]
    listed = sorted((tmp_path / "in").rglob("img_00*"))
    (tmp_path / "list.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(map(str, listed)).encode() + b"\r\n")  # Notepad
    code, out, err = cli("predict", "--list", tmp_path / "list.txt", "--ckpt", ckpt, "--out", tmp_path / "list")
    assert code == 0, err
    assert sorted(_masks(tmp_path / "list")) == ["a/img_000.png", "a/img_001.png", "b/img_000.png", "b/img_001.png"]
    proc = subprocess_cli("predict", "-", "--ckpt", ckpt, "--out", tmp_path / "stdin", "--save", "mask",
                          cwd=tmp_path, stdin="\n".join(map(str, listed)))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 4
    assert sorted(_masks(tmp_path / "stdin")) == sorted(_masks(tmp_path / "list"))



def test_list_dash_reads_the_list_from_stdin(ckpt, cli, tmp_path, monkeypatch):
    """`--list -` was read as a file named '-' (exit 3, 'No such file or directory'), while a bare `-` reads stdin."""
    import io

    write_images(tmp_path / "in", 2, 32, 32)
    listed = "\n".join(str(p) for p in sorted((tmp_path / "in").iterdir()))
    monkeypatch.setattr(sys, "stdin", io.StringIO(listed))
    code, out, err = cli("predict", "--list", "-", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask")
    assert code == 0, err
    assert sorted(_masks(tmp_path / "out")) == ["img_000.png", "img_001.png"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(listed))
    code, out, err = cli("predict", "-", "--list", "-", "--ckpt", ckpt, "--out", tmp_path / "twice")
    assert code == 2 and "both read stdin" in err
    assert not (tmp_path / "twice").exists()

def test_shards_partition_the_inputs(ckpt, cli, tmp_path):
    write_images(tmp_path / "in", 7, 32, 32)
    seen = []
    for i in range(3):
        code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--shard", f"{i}/3",
                             "--save", "mask,areas", "workers=0")
        assert code == 0, err
        seen.append(set(out.split()))
        assert (tmp_path / "out" / f"areas.shard-{i}-of-3.csv").is_file()
    assert [len(s) for s in seen] == [3, 2, 2]
    assert set.union(*seen) == {str(tmp_path / "out" / f"img_{i:03d}.png") for i in range(7)}
    assert sum(map(len, seen)) == 7  # disjoint


def test_unreadable_input_skip_then_exit_3(ckpt, cli, tmp_path):
    write_images(tmp_path / "in", 3, 32, 32)
    (tmp_path / "in" / "img_001b.png").write_bytes(b"not an image")
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask")
    assert code == 3
    assert "img_001b.png" in err and "1 of 4 inputs" in err
    assert len(out.split()) == 3 and len(_masks(tmp_path / "out")) == 3  # the others were predicted
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "fail", "--save", "mask",
                         "--on-error", "fail", "inference.batch_size=1", "workers=0")
    assert code == 3 and "on_error=fail" in err
    assert len(_masks(tmp_path / "fail")) == 2  # stopped at once: the image after the bad one is not predicted


def test_killed_run_resumes_to_identical_masks(ckpt, cli, tmp_path):
    write_images(tmp_path / "in", 40, 160, 192)
    args = ["predict", tmp_path / "in", "--ckpt", ckpt, "--save", "mask,overlay", "inference.batch_size=2"]
    assert cli(*args, "--out", tmp_path / "full")[0] == 0
    full = _masks(tmp_path / "full")
    assert len(full) == 40

    out = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "segcli", *map(str, args), "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(out.glob("*.png"))) < 4:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _masks(out)  # every PNG there decodes: nothing half-written
    assert 4 <= len(partial) < 40
    for name, mask in partial.items():
        assert np.array_equal(mask, full[name])

    # an input counts as done only when every requested output (mask and overlay) was written before the kill
    done = sum(1 for name in partial if (out / "overlays" / name).is_file())  # name: relative path of the mask
    code, stdout, err = cli(*args, "--out", out, "--skip-existing")
    assert code == 0, err
    assert f"{done} skipped" in err
    resumed = _masks(out)
    assert resumed.keys() == full.keys()
    assert all(np.array_equal(resumed[name], full[name]) for name in full)
    assert len(stdout.split()) == 40


def test_a_device_torch_does_not_know_is_a_usage_error(ckpt, cli, tmp_path):
    """device=tpu was an internal error (exit 4) from torch; cuda:N past the last GPU is named too."""
    import pytest
    import torch

    from segcli.errors import ConfigError
    from segcli.inference.backends import resolve_device

    write_images(tmp_path / "in", 1)
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "device=tpu")
    assert code == 2 and err.strip().splitlines()[-1] == \
        "segcli: error: device=tpu: give auto, cpu, cuda or cuda:N (N: the GPU's index)"
    assert not (tmp_path / "out").exists()
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(ConfigError, match="cuda:99"):
        resolve_device("cuda:99")


def test_skip_existing_keeps_the_class_counts_of_areas_and_jsonl(ckpt, cli, tmp_path):
    """--save overlay,areas --skip-existing rewrote areas.csv with 0 pixels for every finished image (its counts
    are read back from the mask, which that run does not write): finished images are predicted again instead."""
    write_images(tmp_path / "in", 2, 32, 48)
    args = ["predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "overlay,areas"]
    assert cli(*args)[0] == 0
    first = (tmp_path / "out" / "areas.csv").read_text()
    code, out, err = cli(*args, "--skip-existing", "--jsonl")
    assert code == 0, err
    assert (tmp_path / "out" / "areas.csv").read_text() == first
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and all(sum(row["pixels"].values()) == 32 * 48 for row in rows)
    assert "add mask to --save" in err


def test_skip_existing_on_a_subset_keeps_the_tables_rows_of_the_other_inputs(ckpt, cli, tmp_path):
    """A run with --skip-existing on some of the inputs (another --list, a subset) rewrote areas.csv and
    uncertainty.csv with its own inputs only: the rows of the images finished before were lost, without a word. They
    are kept now (a note says so); a run without --skip-existing replaces them and says so too."""
    images = write_images(tmp_path / "in", 4, 32, 32)
    out = tmp_path / "out"
    args = ["--ckpt", ckpt, "--out", out, "--save", "mask,uncertainty,areas", "workers=0"]
    assert cli("predict", tmp_path / "in", *args)[0] == 0
    full = {name: (out / name).read_text() for name in ("areas.csv", "uncertainty.csv")}
    (tmp_path / "list.txt").write_text(f"{images[1]}\n{images[3]}\n")
    code, stdout, err = cli("predict", "--list", tmp_path / "list.txt", *args, "--skip-existing")
    assert code == 0 and "0 predicted, 2 skipped" in err, err
    assert "/s)" not in err  # no rate of nothing predicted ('(0.0/s)')
    assert f"{out / 'areas.csv'} keeps the rows of 2 input(s) of an earlier run" in err
    assert sorted((out / "areas.csv").read_text().splitlines()) == sorted(full["areas.csv"].splitlines())
    assert (out / "uncertainty.csv").read_text() == full["uncertainty.csv"]  # all four, ranked as before
    code, stdout, err = cli("predict", images[0], *args, "--skip-existing")  # a new image: predicted, others kept
    assert code == 0 and len((out / "areas.csv").read_text().splitlines()) == 1 + 4 * 4, err

    code, stdout, err = cli("predict", images[0], *args)  # no --skip-existing: this run's table, and a note
    assert code == 0, err
    assert {row.split(",")[0] for row in (out / "areas.csv").read_text().splitlines()[1:]} == {str(images[0])}
    assert "held the rows of 3 input(s) of an earlier run" in err and "add --skip-existing to keep them" in err


def test_skip_existing_shards_keep_no_rows_another_shard_now_has(ckpt, cli, tmp_path):
    """A job array run again with --skip-existing after an image was added: the images moved to the other shard, and
    each shard's table kept the rows of those it had before, so the merged tables held them twice."""
    import shutil

    images = write_images(tmp_path / "in", 4, 32, 32)
    out = tmp_path / "out"
    args = ["--ckpt", ckpt, "--out", out, "--save", "mask,areas", "--skip-existing", "workers=0"]
    for shard in ("0/2", "1/2"):
        assert cli("predict", tmp_path / "in", *args, "--shard", shard)[0] == 0
    shutil.copy(images[0], images[0].with_name(images[0].stem + "a" + images[0].suffix))  # sorts second
    for shard in ("0/2", "1/2"):
        code, stdout, err = cli("predict", tmp_path / "in", *args, "--shard", shard)
        assert code == 0, err
    names = [row.split(",")[0] for shard in ("0-of-2", "1-of-2")
             for row in (out / f"areas.shard-{shard}.csv").read_text().splitlines()[1:]]
    assert len(names) == 5 * 4 and len(set(names)) == 5  # each image's rows once, in one shard's table


def test_skip_existing_keeps_the_rows_of_a_table_saved_again_by_excel(ckpt, cli, tmp_path):
    """areas.csv opened and saved again as 'CSV UTF-8' by Excel starts with a byte-order mark and ends lines with
    CRLF: its header no longer matched, and a --skip-existing run on new images dropped every earlier row silently."""
    images = write_images(tmp_path / "in", 3, 32, 32)
    out = tmp_path / "out"
    args = ["--ckpt", ckpt, "--out", out, "--save", "mask,areas", "--skip-existing", "workers=0"]
    assert cli("predict", images[0], images[1], *args)[0] == 0
    table = out / "areas.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_text().replace("\r\n", "\n").replace("\n", "\r\n").encode())
    code, stdout, err = cli("predict", images[2], *args)
    assert code == 0, err
    assert "keeps the rows of 2 input(s) of an earlier run" in err
    assert {row.split(",")[0] for row in table.read_text().splitlines()[1:]} == {str(p) for p in images}


def test_skip_existing_over_another_models_masks_is_refused_not_miscounted(ckpt, cli, tmp_path):
    """A mask left by a model of more classes: its ids beyond this model's were dropped from areas.csv and --jsonl
    without a word, so an image's class fractions no longer summed to 1."""
    from predict_helpers import CLASSES

    write_images(tmp_path / "in", 2, 32, 48)
    args = ["predict", tmp_path / "in", "--ckpt", ckpt, "--out", tmp_path / "out", "--save", "mask,areas"]
    assert cli(*args)[0] == 0
    other = tmp_path / "out" / "img_001.png"
    cv2.imwrite(str(other), np.full((32, 48), len(CLASSES) + 1, np.uint8))  # as a 9-class model would have written
    first = (tmp_path / "out" / "areas.csv").read_text()
    code, out, err = cli(*args, "--skip-existing", "--jsonl")
    assert code == 3 and not out, err
    assert err.strip() == (f"segcli: error: {other}: holds class id {len(CLASSES) + 1}, but the model has "
                           f"{len(CLASSES)} classes: an earlier run with another model wrote it; predict into a new "
                           "--out, or without --skip-existing")
    assert (tmp_path / "out" / "areas.csv").read_text() == first


def test_the_same_file_by_two_paths_is_predicted_once(ckpt, cli, tmp_path, monkeypatch):
    """./in/a.png and /abs/in/a.png were refused as two inputs writing one mask (exit 2)."""
    write_images(tmp_path / "in", 1, 32, 32)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("predict", "in/img_000.png", tmp_path / "in" / "img_000.png", "--ckpt", ckpt, "--out", "out",
                         "--save", "mask")
    assert code == 0, err
    assert out.split() == ["out/img_000.png"]


def test_an_out_that_is_a_file_is_named(ckpt, cli, tmp_path):
    write_images(tmp_path / "in", 1, 32, 32)
    (tmp_path / "taken").write_text("notes")
    for out_dir in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        code, out, err = cli("predict", tmp_path / "in", "--ckpt", ckpt, "--out", out_dir, "--save", "areas")
        assert code == 3 and not out
        assert err.strip() == f"segcli: error: --out {out_dir}: {tmp_path / 'taken'} is a file, not a folder; " \
                              "give a folder for the outputs"
    assert (tmp_path / "taken").read_text() == "notes"


def test_a_pipe_as_an_input_says_to_save_the_image_to_a_file(ckpt, cli, tmp_path):
    """`segcli predict <(curl ...)` hands over /dev/fd/N, a pipe: it was 'input not found', which it is not."""
    fifo = tmp_path / "stream"
    os.mkfifo(fifo)
    code, out, err = cli("predict", fifo, "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 3 and not out and not (tmp_path / "out").exists()
    assert err.strip() == f"segcli: error: {fifo}: not a file or folder (a pipe or a device); save the image or " \
                          "video to a file and pass its path (`-` reads a list of paths from stdin, not image data)"


def test_a_list_of_paths_relative_to_itself_says_where_they_are_read_from(ckpt, cli, tmp_path, monkeypatch):
    """A list written for its own folder (imgs/img_000.png), run from elsewhere: every input failed 'cannot read
    file' with no hint that relative paths are read from the current folder."""
    write_images(tmp_path / "lst" / "imgs", 1)
    (tmp_path / "lst" / "list.txt").write_text("imgs/img_000.png\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("predict", "--list", "lst/list.txt", "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 3 and not out and not (tmp_path / "out").exists()
    assert err.strip() == (f"segcli: error: lst/list.txt: its relative paths are read from the current folder "
                           f"({tmp_path}), where imgs/img_000.png does not exist; it does beside the list: run segcli "
                           f"from {tmp_path / 'lst'}, or write absolute paths in the list")
    monkeypatch.chdir(tmp_path / "lst")  # as the message says
    code, out, err = cli("predict", "--list", "list.txt", "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 0 and len(out.split()) == 1, err


def test_a_missing_input_with_an_equals_sign_in_its_name_is_not_found_not_an_unknown_key(ckpt, cli, tmp_path):
    """`photos/img=1.png` (a name with '=') was read as the override photos/img: 'unknown config key'."""
    write_images(tmp_path / "photos", 1)
    named = tmp_path / "photos" / "img=1.png"
    code, out, err = cli("predict", named, "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 3 and not out and f"{named}: input not found" in err, err
    (tmp_path / "photos" / "img_000.png").rename(named)  # once it exists it is predicted
    code, out, err = cli("predict", named, "--ckpt", ckpt, "--out", tmp_path / "out")
    assert code == 0 and out.split() == [str(tmp_path / "out" / "img=1.png")], err


def test_a_folder_or_a_wildcard_in_a_list_is_named_as_such(ckpt, cli, tmp_path):
    """A list line naming a folder failed as 'cannot read file (Is a directory); check the path and permissions'
    (a wildcard: 'No such file or directory'), pointing at permissions rather than at what a list holds."""
    write_images(tmp_path / "in" / "sub", 1)
    for line, what in ((tmp_path / "in" / "sub", "a folder"), (tmp_path / "in" / "sub" / "*.png", "a wildcard")):
        (tmp_path / "list.txt").write_text(f"{tmp_path / 'in' / 'sub' / 'img_000.png'}\n{line}\n")
        dest = tmp_path / what.split()[1]
        code, out, err = cli("predict", "--list", tmp_path / "list.txt", "--ckpt", ckpt, "--out", dest)
        assert code == 3 and not out and not dest.exists(), err
        assert err.strip() == (f"segcli: error: {tmp_path / 'list.txt'}: {line} is {what}; a list names one image or "
                               f"video file per line: give {line} as an input instead (segcli predict "
                               f"{shlex.quote(str(line))} …), or list its files")
        code, out, err = cli("predict", line, "--ckpt", ckpt, "--out", dest)  # as the message says
        assert code == 0 and len(out.split()) == 1, err


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_exported_model_that_runs_at_one_size_only_is_named_not_an_internal_error(cli, tmp_path, fmt):
    """A file whose tracing baked in its example size (a reshape to 32x32): predict and eval --model on another size
    were exit 4 'internal error', for TorchScript with its whole serialized traceback on one line."""
    import torch

    from predict_helpers import CLASSES, PALETTE

    class Bound(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Conv2d(3, len(CLASSES), 1)

        def forward(self, x):
            return self.head(x).reshape(1, len(CLASSES), 32, 32)

    meta = {"classes": CLASSES, "palette": PALETTE, "ignore_index": 255, "mean": [0.5] * 3, "std": [0.25] * 3,
            "size_multiple": 32, "output": "logits", "format": fmt}
    example, path = torch.zeros(1, 3, 32, 32), tmp_path / ("bound.pt" if fmt == "torchscript" else "bound.onnx")
    if fmt == "torchscript":
        torch.jit.save(torch.jit.trace(Bound().eval(), example), str(path), _extra_files={"segcli.json": json.dumps(meta)})
    else:
        import onnx

        torch.onnx.export(Bound().eval(), example, str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {2: "height", 3: "width"}}, dynamo=False)
        model = onnx.load(str(path))
        model.metadata_props.add(key="segcli", value=json.dumps(meta))
        onnx.save(model, str(path))
    write_images(tmp_path / "in", 1, 32, 32)
    code, out, err = cli("predict", tmp_path / "in", "--model", path, "--out", tmp_path / "ok")
    assert code == 0, err  # at its own size it runs
    write_images(tmp_path / "other", 1, 64, 64)
    code, out, err = cli("predict", tmp_path / "other", "--model", path, "--out", tmp_path / "out")
    assert code == 3 and not out, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"segcli: error: {path}: the exported model fails on a 64x64 input (") and len(line) < 600
    assert line.endswith("it may run at its export's example size only: re-export it with `segcli export`, which "
                         "verifies a second size")
