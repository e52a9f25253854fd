"""Where outputs go when things go wrong: an unwritable --out, inputs whose output names would leave --out (..,
absolute paths, symlinks, list files, eval --worst keys), non-UTF-8 and spaced file names. A full disk:
test_full_disk.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_reliability import (assert_clean, files_under, noise, only_error, output_commands, write_image,
                                 write_inputs)


# ----------------------------------------------------------------------------- unwritable --out
@pytest.mark.parametrize("command", ["predict", "eval", "train"])
def test_output_at_a_symbolic_link_to_nothing(cli, model_ckpt, tiny_data, tmp_path, monkeypatch, command):
    """A dangling link as --out/--run-dir: 'File exists; check the path, permissions and free space' (eval: 'cannot
    write the report files there (File exists)'; predict after its first image), as if the disk were at fault."""
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere" / "deep")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*output_commands(tmp_path, model_ckpt, tiny_data, link)[command])
    line = only_error(code, err, 3, link)
    assert f"{link} is a symbolic link to {tmp_path / 'nowhere' / 'deep'}, which does not exist; create that " \
           "folder, or give another path" in line
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["predict", "eval", "export", "prepare", "train"])
def test_output_under_a_regular_file(cli, model_ckpt, tiny_data, tmp_path, monkeypatch, command):
    """--out below a regular file cannot be created (works as root too): exit 3 naming the path, nothing written."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*output_commands(tmp_path, model_ckpt, tiny_data, blocker / "out")[command])
    only_error(code, err, 3, blocker)
    assert (out == "" or command == "eval") and blocker.read_text() == "a file, not a folder\n"  # eval prints, then writes
    assert not (tmp_path / "runs").exists()
    assert_clean(tmp_path)


@pytest.mark.parametrize("command", ["predict", "eval", "prepare", "train"])
def test_output_that_is_a_regular_file(cli, model_ckpt, tiny_data, tmp_path, monkeypatch, command):
    """--out (--run-dir) naming a file: exit 3 naming it, as for a file above it; prepare said exit 2."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*output_commands(tmp_path, model_ckpt, tiny_data, blocker)[command])
    assert "is a file, not a folder" in only_error(code, err, 3, blocker)
    assert blocker.read_text() == "a file, not a folder\n"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through chmod 0o555")
@pytest.mark.parametrize("command", ["predict", "eval"])
def test_read_only_output_dir(cli, model_ckpt, tiny_data, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = cli(*output_commands(tmp_path, model_ckpt, tiny_data, locked / "out")[command])
        only_error(code, err, 3, locked)
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("command", ["predict", "eval", "eval_json", "prepare"])
def test_unwritable_output_dir_is_found_before_the_work(cli, model_ckpt, tiny_data, tmp_path, monkeypatch, command):
    """A folder this user cannot write (a shared store, a read-only mount) under --out / --json: eval and predict
    ran the model over every image first and failed at the first write; prepare named its hidden staging folder
    ('.out.partial-123: Permission denied'). Now each stops first, naming the folder (exit 3), with nothing on
    stdout. os.access is faked: the tests may run as root, who can write anywhere."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == locked else real(path, mode, **kw))
    args = (["eval", "--ckpt", model_ckpt, "--json", locked / "r.json"] if command == "eval_json"
            else output_commands(tmp_path, model_ckpt, tiny_data, locked / "out")[command])
    code, out, err = cli(*args)
    line = only_error(code, err, 3, locked)
    assert "is not writable for this user" in line and out == ""
    assert list(locked.iterdir()) == []


# ----------------------------------------------------------------------------- outputs stay under --out
def _outside_files(tmp_path: Path, out: Path, before: set[Path]) -> list[Path]:
    return [p for p in files_under(tmp_path) if p not in before and out.resolve() not in p.resolve().parents]


def test_list_entries_with_dotdot_stay_under_out(cli, model_ckpt, tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    write_inputs(work, 1)
    write_inputs(tmp_path / "other", 1)
    listing = work / "list.txt"
    listing.write_text("img0.png\n../../other/img0.png\n")
    monkeypatch.chdir(work)
    before = set(files_under(tmp_path))
    out = tmp_path / "x" / "out"
    code, stdout, err = cli("predict", "--list", listing, "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert code == 0, err
    assert _outside_files(tmp_path, out, before) == []
    assert sorted(p.relative_to(out).as_posix() for p in files_under(out)) == ["a/b/img0.png", "other/img0.png"]


def test_glob_climbing_out_of_its_base_is_refused(cli, model_ckpt, tmp_path):
    write_inputs(tmp_path / "in" / "sub", 1)
    write_inputs(tmp_path / "outside", 1)
    pattern = f"{tmp_path}/in/*/../../outside/*.png"
    code, _, err = cli("predict", pattern, "--ckpt", model_ckpt, "--out", tmp_path / "out")
    only_error(code, err, 2, "outside")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out_name", ["in", "link_to_in"])
def test_predict_into_its_own_input_folder_is_refused(cli, model_ckpt, tmp_path, out_name):
    """`predict DIR --out DIR` (or through a symlink to DIR) would replace every PNG image by its mask."""
    folder = tmp_path / "in"
    write_inputs(folder, 2)
    (tmp_path / "link_to_in").symlink_to(folder, target_is_directory=True)
    before = {p: p.read_bytes() for p in files_under(folder)}
    code, _, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / out_name, "--save", "mask")
    assert "--out" in only_error(code, err, 2, "img0.png")
    assert {p: p.read_bytes() for p in files_under(folder)} == before  # every image as it was, nothing added


@pytest.mark.parametrize("form", ["folder", "glob"])
def test_rerun_into_a_subfolder_does_not_read_earlier_outputs(cli, model_ckpt, tmp_path, form):
    """`predict DIR --out DIR/preds`, run twice: the second run predicts DIR's images only, not the masks the first
    run wrote under DIR/preds (the folder walk is recursive)."""
    folder = write_inputs(tmp_path / "in", 2)
    source = str(folder) if form == "folder" else f"{folder}/**/*.png"
    out = folder / "preds"
    code, first, err = cli("predict", source, "--ckpt", model_ckpt, "--out", out, "--save", "mask,overlay")
    assert code == 0, err
    masks = {p: p.read_bytes() for p in files_under(out)}
    code, second, err = cli("predict", source, "--ckpt", model_ckpt, "--out", out, "--save", "mask,overlay")
    assert code == 0, err
    assert second.split() == first.split() == [str(out / "img0.png"), str(out / "img1.png")]
    assert {p: p.read_bytes() for p in files_under(out)} == masks  # no preds/preds/…, the same two masks
    assert "left out 4 file(s) found under --out" in err


def test_named_files_under_out_are_still_predicted(cli, model_ckpt, tmp_path):
    """Only files found by walking a folder are left out: a file named on the command line is predicted even
    when it lies under --out, and a folder whose every image is under --out is an error, not an empty run."""
    folder = write_inputs(tmp_path / "in", 1)
    out = folder / "preds"
    write_inputs(out / "photos", 1)
    named = out / "photos" / "img0.png"
    code, stdout, err = cli("predict", named, "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert code == 0, err
    assert stdout.split() == [str(out / "img0.png")]
    (folder / "img0.png").unlink()
    code, _, err = cli("predict", folder, "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert "every input found lies under --out" in only_error(code, err, 3, "img0.png")


def test_absolute_dotdot_and_symlinked_inputs_stay_under_out(cli, model_ckpt, tmp_path, monkeypatch):
    write_inputs(tmp_path / "elsewhere", 2)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "linked.png").symlink_to(tmp_path / "elsewhere" / "img0.png")
    (folder / "linked_dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.png"
    victim.write_text("must survive\n")
    (out / "img1.png").symlink_to(victim)  # an output name that is a symlink out of --out
    monkeypatch.chdir(folder)
    before = set(files_under(tmp_path))
    code, _, err = cli("predict", folder, "../elsewhere/img1.png", str(tmp_path / "elsewhere" / "img0.png"),
                       "--ckpt", model_ckpt, "--out", out, "--save", "mask")
    assert code == 0, err
    assert victim.read_text() == "must survive\n"
    assert not (out / "img1.png").is_symlink()
    assert _outside_files(tmp_path, out, before) == []


def test_eval_worst_names_stay_under_out(cli, model_ckpt, dataset_copy, tmp_path):
    """A card entry whose mask path climbs out of masks/<split>/: the --worst panel is still written in OUT/worst/."""
    import shutil

    import yaml

    card_path = dataset_copy / "dataset.yaml"
    card = yaml.safe_load(card_path.read_text())
    entry = card["splits"]["val"][0]
    escape = tmp_path / "escape"
    escape.mkdir()
    shutil.copy(dataset_copy / entry["mask"], escape / "m.png")
    entry["mask"] = f"masks/val/../../../{escape.name}/m.png"
    card_path.write_text(yaml.safe_dump(card, sort_keys=False))
    out = tmp_path / "report"
    before = set(files_under(tmp_path))
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--data", dataset_copy, "--out", out, "--worst", "1")
    assert code == 0, err
    assert _outside_files(tmp_path, out, before) == []
    assert len(list((out / "worst").iterdir())) == 1


# ----------------------------------------------------------------------------- file names
ODD_NAMES = [b"\xff\xfe odd.png", b"with space.png", "caf\u00e9 \u00fc.png".encode()]


def _bytes_cli(*args, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SEGCLI_DEBUG"}
    env["PYTHONIOENCODING"] = "utf-8:strict"  # what an en_US.UTF-8 terminal gets (C.UTF-8 escapes surrogates)
    return subprocess.run([sys.executable, "-m", "segcli", *map(os.fsencode, map(str, args))], cwd=cwd, env=env,
                          capture_output=True, timeout=300)


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 need a POSIX file system")
def test_predict_non_utf8_and_spaced_names(model_ckpt, tmp_path):
    folder = tmp_path / "in dir"
    folder.mkdir()
    for i, name in enumerate(ODD_NAMES):
        write_image(Path(os.fsdecode(os.path.join(os.fsencode(folder), name))), noise(32, 40, seed=i))
    out = tmp_path / "out dir"
    proc = _bytes_cli("predict", folder, "--ckpt", model_ckpt, "--out", out, "--save", "mask", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert b"Traceback" not in proc.stderr
    printed = sorted(proc.stdout.splitlines())
    expected = sorted(os.path.join(os.fsencode(out), name) for name in ODD_NAMES)
    assert printed == expected  # the exact bytes of each mask path, one per line
    assert sorted(os.listdir(os.fsencode(out))) == sorted(ODD_NAMES)
    # areas.csv names each input by its own bytes (a non-UTF-8 name was exit 4: UnicodeEncodeError, no CSV)
    proc = _bytes_cli("predict", folder, "--ckpt", model_ckpt, "--out", tmp_path / "areas", "--save", "areas",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    rows = (tmp_path / "areas" / "areas.csv").read_bytes().splitlines()[1:]
    assert {row.split(b",")[0].rsplit(b"/", 1)[-1] for row in rows} == set(ODD_NAMES)


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 need a POSIX file system")
def test_prepare_non_utf8_and_spaced_names(cli, model_ckpt, tmp_path):
    """Names that are not UTF-8 survive prepare (the card escapes them) and the dataset reads back; spaces too."""
    from helpers_reliability import ids
    from segcli.data.card import load_card
    from segcli.inference.io import read_image, read_mask

    images, masks = tmp_path / "src" / "images", tmp_path / "src" / "masks"
    stems = [b"\xff\xfe odd", b"with space", "caf\u00e9 \u00fc".encode(), b"plain0", b"plain1", b"plain2"]
    for i, stem in enumerate(stems):
        for folder, array in ((images, noise(32, 32, seed=i)), (masks, ids(seed=i))):
            write_image(Path(os.fsdecode(os.path.join(os.fsencode(folder), stem + b".png"))), array)
    out = tmp_path / "ds"
    code, _, err = cli("prepare", "folder", "--images", images, "--masks", masks, "--out", out, "--classes", "a,b",
                       "--val-fraction", "0.34")
    assert code == 0, err
    card = load_card(out)
    pairs = [pair for split in card.splits for pair in card.pairs(split)]
    assert sorted(os.fsencode(image.stem) for image, _ in pairs) == sorted(stems)
    for image, mask in pairs:
        assert read_image(image).shape == (32, 32, 3) and read_mask(mask).shape == (32, 32)
    code, _, err = cli("eval", "--ckpt", model_ckpt, "--data", out, "--split", "train")
    assert code == 2 and "classes" in err  # readable up to the class check: the model is for other classes
    assert_clean(tmp_path)


# ----------------------------------------------------------------------------- staging left by a killed process
@pytest.mark.parametrize("command", ["eval", "export", "prepare"])
def test_staging_left_by_a_killed_process_is_removed_by_the_next_run(cli, model_ckpt, tiny_data, tmp_path, command):
    """A SIGKILL (the OOM killer, a cancelled job) leaves the hidden staging of an eval report, an export or a
    prepared dataset behind, and later runs into the same place kept every one of them. Now the next run removes
    those of processes no longer running on this machine, and keeps those of a running one."""
    import socket

    out = tmp_path / "out"
    args = output_commands(tmp_path, model_ckpt, tiny_data, out)[command]
    folder, name, suffix = {"eval": (out, ".report", ""), "export": (out, ".m", ".onnx"),
                            "prepare": (tmp_path, ".out", "")}[command]
    dead = subprocess.Popen(["true"])
    dead.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        stale, kept = (folder / f"{name}.partial-{socket.gethostname()}-{pid}{suffix}" for pid in (dead.pid, running.pid))
        for path in (stale, kept):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir() if command != "export" else path.write_bytes(b"half an onnx file")
        code, _, err = cli(*args)
        assert code == 0, err
        assert not stale.exists() and kept.exists()
    finally:
        running.kill()
        running.wait()


def test_names_as_long_as_the_file_system_takes_can_be_written(cli, model_ckpt, tmp_path, monkeypatch):
    """A 250-character --out (ext4 takes 255) failed, exit 3, as 'File name too long' of a hidden staging or temp
    name ('.<name>.partial-<host>-<pid>…'), and so did a 200-character image name under a 61-character host name.
    Such names are cut, with a digest of the whole name, and a killed writer's leftovers are still found."""
    import socket

    from segcli.inference.io import atomic_write_bytes, remove_stale_partials, staging_path

    monkeypatch.setattr(socket, "gethostname", lambda: "node-" + "x" * 50 + ".local")
    long_name = "P" * 250
    atomic_write_bytes(tmp_path / f"{long_name[:245]}.json", b"{}")
    assert (tmp_path / f"{long_name[:245]}.json").read_bytes() == b"{}"
    staging = staging_path(tmp_path, "." + long_name)
    assert len(staging.name.encode()) <= 255 and staging.name.startswith(".PPP")
    dead = staging.with_name(staging.name.replace(f"-{os.getpid()}", "-999999999"))  # a killed writer's folder
    dead.mkdir()
    remove_stale_partials(tmp_path, staging.name[:-len(str(os.getpid()))])
    assert not dead.exists()
    write_image(tmp_path / "in" / f"{'q' * 200}.png", noise(32, 32, 3, seed=1))
    code, out, err = cli("predict", tmp_path / "in", "--ckpt", model_ckpt, "--out", tmp_path / "pred")
    assert code == 0 and (tmp_path / "pred" / f"{'q' * 200}.png").is_file(), err
    code, out, err = cli("prepare", "synthetic", "--out", tmp_path / long_name, "--num-images", "4",
                         "synthetic.height=32", "synthetic.width=48")
    assert code == 0 and (tmp_path / long_name / "dataset.yaml").is_file(), err
