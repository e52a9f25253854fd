"""Evaluation beyond the metric definitions (segcli.metrics): where predictions come from (sources),
what is accumulated per split and per image (accumulate, boundary), robustness (corruptions), the CI
gate (gate), comparisons with an earlier report (compare), figures and report files (figures, output),
and evaluation by several processes (distributed)."""
