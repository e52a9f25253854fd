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
