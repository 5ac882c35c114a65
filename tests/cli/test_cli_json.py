"""``acgate scan --json``: one JSON document on stdout that a CI job can act on."""

from __future__ import annotations

import json

from acgate.errors import EXIT_POISON


def test_json_summary_of_a_poisoned_scan(run_cli, digits_parquet, tmp_path):
    out = tmp_path / "scan"
    run = run_cli(["scan", digits_parquet(0.33), "--out", out, "--no-mlflow", "--json",
                   "--seed", "0"])
    summary = json.loads(run.stdout)  # nothing but the document on stdout (no table)
    assert run.code == EXIT_POISON == summary["exit_code"]
    assert summary["verdict"] == "poisoned"
    assert len(summary["classes"]) == 10
    assert summary["n_flagged"] == sum(c["n_flagged"] for c in summary["classes"]) > 0
    assert summary["poisoned_classes"] == [c["label"] for c in summary["classes"]
                                           if c["verdict"] == "poisoned"]
    assert all(c["reason"] for c in summary["classes"])
    assert summary["out_dir"] == str(out.resolve())
    samples = json.loads((out / "report.json").read_text())
    assert samples["n_flagged"] == summary["n_flagged"]
    assert summary["mlflow_run_id"] is None and summary["tracking_error"] is None
    assert summary["proxy"]["attack_success"] > 0.5  # acgate poison recorded the trigger
    # The printed table's warnings: digits classes are small, the proxy learned the trigger.
    assert len(summary["warnings"]) == 1
    assert summary["warnings"][0].startswith("classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 have fewer")
    assert (out / "report.html").is_file() and "report.html" in summary["files"]
    # Near misses: only clean classes, each with its reasons (the report's, one derivation).
    verdicts = {str(c["label"]): c["verdict"] for c in summary["classes"]}
    assert all(verdicts[label] == "clean" and reasons
               for label, reasons in summary["near_misses"].items())
