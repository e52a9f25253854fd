"""Edge cases of eval's options met in shell pipelines and CI: an empty --json from an unset variable, a report
folder passed to --compare, --severity without --corruptions. Each was a silent surprise or a misleading line."""

from __future__ import annotations


def test_eval_empty_json_is_refused(crafted, tmp_path, cli):
    """`--json "$REPORT"` with REPORT unset wrote no report and exited 0."""
    root, preds = crafted
    code, out, err = cli("eval", "--predictions", preds, "--data", root, "--json", "")
    assert code == 2, err
    assert "--json ''" in err and out == ""


def test_eval_compare_with_a_report_folder(crafted, tmp_path, cli):
    """`--compare reports/main` (the --out of the earlier run): was '(IsADirectoryError)'; now names the file."""
    root, preds = crafted
    assert cli("eval", "--predictions", preds, "--data", root, "--out", tmp_path / "main")[0] == 0
    code, out, err = cli("eval", "--predictions", preds, "--data", root, "--compare", tmp_path / "main")
    assert code == 3, err
    assert f"pass {tmp_path / 'main' / 'report.json'}" in err and "IsADirectoryError" not in err
    assert out == ""


def test_eval_severity_without_corruptions_is_noted(crafted, cli):
    """--severity 5 alone evaluated nothing corrupted, without a word."""
    root, preds = crafted
    code, out, err = cli("eval", "--predictions", preds, "--data", root, "--severity", "5")
    assert code == 0, err
    assert "--severity 5 applies to --corruptions" in err
    assert "--severity" not in out


def test_an_empty_input_path_is_a_usage_error_not_the_current_folder(crafted, tmp_path, cli, monkeypatch):
    """`--predictions "$UNSET"` was read as '.': inside a folder of predictions it scored them and passed its gate
    (exit 0); `--ckpt ''`, `--compare ''` and `--data ''` were exit 3 naming '.' or dataset.yaml."""
    root, preds = crafted
    monkeypatch.chdir(preds)
    for args in (["--predictions", "", "--data", root], ["--predictions", preds, "--data", ""], ["--ckpt", ""],
                 ["--model", ""], ["--predictions", preds, "--data", root, "--compare", ""]):
        code, out, err = cli("eval", *args, "--fail-under", "mIoU=0")
        option = args[args.index("") - 1]
        assert code == 2 and out == "", (args, err)
        assert err.strip().startswith(f"segcli: error: Invalid value for '{option}': names no file or folder (an "
                                      "unset variable?); give its path"), err
    for args in (["predict", "x.png", "--ckpt", ""], ["predict", "--list", "", "--ckpt", "m.ckpt"],
                 ["export", "--ckpt", ""], ["train", "--resume", ""], ["train", "--from", ""],
                 ["prepare", "folder", "--images", "", "--masks", "m", "--out", "o"]):
        code, _, err = cli(*args)
        assert code == 2 and "names no file or folder (an unset variable?)" in err, (args, err)
