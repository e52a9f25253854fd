"""Paths holding '${' (a folder really named so) are paths, not OmegaConf interpolations; and an interpolation given
for data.root on --resume is resolved before it is read as a path."""

from __future__ import annotations

import shutil

from helpers_train import segcli, tiny


def test_a_dataset_and_run_under_folders_named_with_dollar_brace_train_resume_and_evaluate(tiny_data, tmp_path,
                                                                                           capsys, monkeypatch):
    """Before: exit 4 ('Interpolation key 'b' not found') when the dataset's folder (or the current one) held '${',
    even escaped; options such as eval --out 'rep${split}' wrote 'repval'; config.yaml named such paths unescaped,
    so --resume read them as interpolations."""
    home = tmp_path / "a${b}"
    shutil.copytree(tiny_data, home / "data")
    monkeypatch.chdir(home / "data")
    run = home / "r${x}"
    code, _, err = segcli(["train", *tiny(".", "trainer.max_epochs=1", "final_eval=false"), "--run-dir", "../r${x}"],
                          capsys)
    assert code == 0, err
    assert (run / "checkpoints" / "best.ckpt").is_file()
    monkeypatch.chdir(tmp_path)
    code, _, err = segcli(["train", "--resume", run, "trainer.max_epochs=2"], capsys)
    assert code == 0, err
    code, _, err = segcli(["eval", "--ckpt", run / "checkpoints" / "best.ckpt", "--out", "rep${split}",
                           "--json", "j${seed}.json"], capsys)
    assert code == 0, err
    assert (tmp_path / "rep${split}" / "report.json").is_file() and (tmp_path / "j${seed}.json").is_file()
    code, _, err = segcli(["train", *tiny(r"a\${b}/data", "trainer.max_epochs=1", "final_eval=false"),
                           "--run-dir", "r2"], capsys)
    assert code == 0, err


def test_an_interpolation_for_data_root_on_resume_is_resolved_before_it_is_a_path(tiny_data, tmp_path, capsys,
                                                                                 monkeypatch):
    """Before: `--resume RUN 'data.root=${oc.env:HOME}/moved'` put the current folder before the unresolved text
    ('/cwd/${oc.env:HOME}/moved' resolved to '/cwd/home/…/moved': no dataset card there)."""
    shutil.copytree(tiny_data, tmp_path / "data")
    run = tmp_path / "run"
    code, _, err = segcli(["train", *tiny(tmp_path / "data", "trainer.max_epochs=1", "final_eval=false"),
                           "--run-dir", run], capsys)
    assert code == 0, err
    (tmp_path / "data").rename(tmp_path / "moved")
    monkeypatch.setenv("SEGCLI_TEST_PLACE", str(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = segcli(["train", "--resume", run, "trainer.max_epochs=2", "data.root=${oc.env:SEGCLI_TEST_PLACE}/moved"],
                          capsys)
    assert code == 0, err
    assert f"root: {tmp_path}/moved" in (run / "config.yaml").read_text()
    code, _, err = segcli(["train", "--resume", run, "trainer.max_epochs=3", "data.root=${oc.env:SEGCLI_UNSET_VAR}/x"],
                          capsys)
    assert code == 2 and "cannot resolve its interpolation" in err and "Traceback" not in err, err
