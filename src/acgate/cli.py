"""The ``acgate`` command line: parses, configures logging, calls the library, maps exit codes.

Exit codes (one table, :mod:`acgate.errors`): 0 clean / promoted, 1 internal error, 2 bad input
or arguments, 3 poison found / promotion refused, 4 infrastructure (tracking store unreachable,
stalled or full; disk full), 5 incomplete (a class could not be judged), 6 ``diff``: the scans
differ.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from acgate.errors import (
    EXIT_BAD_INPUT,
    EXIT_CLEAN,
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_INFRASTRUCTURE,
    EXIT_POISON,
    InfrastructureError,
)
from acgate.logs import configure_logging, show_progress

__all__ = ["EXIT_BAD_INPUT", "EXIT_CLEAN", "EXIT_ERROR", "EXIT_INCOMPLETE",
           "EXIT_INFRASTRUCTURE", "EXIT_POISON", "build_parser", "main"]

logger = logging.getLogger("acgate")

#: Errors of the environment, not of the input: disk full, file too large, I/O error, quota.
_INFRASTRUCTURE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EIO, errno.EDQUOT,
                                    errno.EROFS, errno.ENOMEM})


def _argument_type(item: Any) -> Any:
    """The argparse ``type`` of a declared setting: its parser, or its annotation's type."""
    parse = item.metadata["parse"]
    if parse is None:  # argparse's own types say "invalid int value: 'x'"
        annotation = str(item.type)
        return (int if annotation.startswith("int") else
                float if annotation.startswith("float") else str)

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = item.name  # argparse names it in "invalid <name> value"
    return convert


def add_setting_options(group: Any, items: Sequence[Any]) -> None:
    """One flag per declared setting (:mod:`acgate.core.config`), help and default from it.

    Every flag defaults to ``None`` (``False`` for a switch): :func:`_config` passes only what
    was given, so the default is the configuration's, declared once.
    """
    from acgate.core.config import default_of

    for item in items:
        flag = item.metadata["flag"]
        if flag == "":
            continue
        flag = flag or "--" + item.name.replace("_", "-")
        default = default_of(item)
        text = item.metadata["help"]
        if isinstance(default, bool):
            group.add_argument(flag, dest=item.name, action="store_true", help=text)
            continue
        if default is not None and item.metadata["parse"] is None:
            text += f" (default: {default})"
        metavar = None if item.metadata["choices"] else flag[2:].replace("-", "_").upper()
        group.add_argument(flag, dest=item.name, default=None, type=_argument_type(item),
                           choices=item.metadata["choices"], metavar=metavar, help=text)


def _add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``, declared once as the scan's setting (``ScanConfig.device``)."""
    from acgate.core.config import settings
    from acgate.scan import ScanConfig

    add_setting_options(parser, [item for item in settings(ScanConfig) if item.name == "device"])


def _add_detector_options(parser: argparse.ArgumentParser) -> None:
    from acgate.core.config import DetectorConfig, settings

    group = parser.add_argument_group("detector")
    add_setting_options(group, list(settings(DetectorConfig)))
    group.add_argument("--allow-skipped", action="store_true",
                       help="exit 0 instead of 5 (incomplete) when a class could not be judged "
                            "and none was poisoned")


def _add_proxy_options(parser: argparse.ArgumentParser) -> None:
    from acgate.core.config import DetectorConfig, settings
    from acgate.scan import COLUMN_SETTINGS, ScanConfig

    detector = {item.name for item in settings(DetectorConfig)}
    group = parser.add_argument_group("proxy and model")
    add_setting_options(group, [item for item in settings(ScanConfig)
                                if item.name not in detector and item.name not in COLUMN_SETTINGS])


def _add_column_options(parser: argparse.ArgumentParser) -> None:
    """The dataset's column flags, declared once as the scan's settings (``label_column``, ...)."""
    from acgate.core.config import settings
    from acgate.scan import COLUMN_SETTINGS, ScanConfig

    group = parser.add_argument_group("dataset columns")
    add_setting_options(group, [item for item in settings(ScanConfig)
                                if item.name in COLUMN_SETTINGS])


def _add_output_options(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--out", type=Path, required=True, help=help_text + "; refused when it "
                        "is the working folder, holds an input, or holds files acgate did not "
                        "write")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a folder that holds other files: only acgate's outputs "
                             "are replaced, every other file is kept")


#: The environment variables every MLflow user sets, honoured when the flags are not given.
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
#: The experiment of a scan when neither ``--experiment`` nor ``$MLFLOW_EXPERIMENT_NAME`` is set.
DEFAULT_EXPERIMENT = "acgate"


def _experiment(args: argparse.Namespace) -> str:
    """The scan's experiment: the flag, else ``$MLFLOW_EXPERIMENT_NAME``, else 'acgate'."""
    return getattr(args, "experiment", None) or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT


def _add_tracking_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else a "
                             "SQLite store under ./mlruns)")
    parser.add_argument("--experiment", default=None,
                        help=f"MLflow experiment name (default: ${EXPERIMENT_ENV}, else "
                             f"'{DEFAULT_EXPERIMENT}')")
    parser.add_argument("--no-mlflow", action="store_true", help="do not track the run")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from acgate import __version__
    from acgate.core.sampled import MAX_CLUSTER_ROWS

    parser = argparse.ArgumentParser(
        prog="acgate", description="Find backdoor-poisoned training data (Activation "
        "Clustering) and gate model promotion on it.", epilog=exit_code_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"acgate {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging: -v INFO (with Great Expectations' own), -vv DEBUG")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no stage progress lines (shown by default when stderr is a "
                             "terminal, or with --progress) and no progress bars")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch CPU threads (default 1: with 2, training slowed 10-40x "
                             "whenever the cores were shared)")
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="train a proxy, extract activations, detect poison")
    scan.add_argument("dataset", type=Path,
                      help="dataset Parquet file (label + image, or label + text)")
    _add_output_options(scan, "output folder")
    scan.add_argument("--modality", choices=("image", "text"), default=None,
                      help="the dataset's kind (default: from its columns; needed when it has "
                           "both an image and a text column)")
    scan.add_argument("--no-report", action="store_true", help="skip the HTML report")
    scan.add_argument("--baseline", default=None, metavar="SCAN",
                      help="incremental scan: judge this new partition against the last "
                           "accepted (clean) scan with that scan's proxy, without training: "
                           "its output folder, a published baseline folder (a path or an "
                           "s3:// / gs:// URI), runs:/<scan run id>/baseline or "
                           "models:/<name>@<alias> (the scan that cleared the version the "
                           "alias points at; both with the tracking URI); a partition that "
                           "moved too far is scanned in full")
    scan.add_argument("--no-fallback", action="store_true",
                      help="with --baseline: keep the incremental verdict even when the "
                           "partition moved too far from the baseline (recorded as shifted)")
    scan.add_argument("--json", action="store_true",
                      help="print a JSON summary (verdict, exit code, per class, outputs, MLflow "
                           "run) on stdout instead of the table, for CI")
    _add_column_options(scan)
    _add_proxy_options(scan)
    _add_detector_options(scan)
    _add_tracking_options(scan)

    det = sub.add_parser("detect", help="run the analysis on an activations Parquet file, or "
                         "on an activation dataset folder one class at a time")
    det.add_argument("activations", type=Path,
                     help="an activations Parquet file (held whole), or an activation dataset "
                          "folder (the pipeline's collected activations: with an analysis "
                          "judged from the clustering alone, the default, read one class at a "
                          f"time, a class above {MAX_CLUSTER_ROWS:,} rows clustered from a "
                          "seeded sample, and the report without 3-D plots; else held whole)")
    _add_output_options(det, "output folder")
    det.add_argument("--no-report", action="store_true",
                     help="skip the HTML report (report.html and plots/)")
    _add_detector_options(det)

    poison = sub.add_parser("poison", help="write a BadNets/blend-poisoned copy of a dataset "
                            "(or a signature-poisoned copy of a text dataset)")
    poison.add_argument("dataset", help="dataset Parquet file, or 'digits' (embedded images) or "
                        "'rotten-tomatoes' (real review snippets, text)")
    poison.add_argument("--out", type=Path, required=True,
                        help="output Parquet file (never the input itself)")
    poison.add_argument("--rate", type=float, default=0.1,
                        help="poison share of each target class, or of the whole data with "
                             "--rate-of data (default: 0.1)")
    poison.add_argument("--rate-of", choices=("target", "data"), default="target",
                        help="what --rate is a share of (default: target)")
    poison.add_argument("--pairs", default=None,
                        help="source:target pairs, e.g. '7:1,3:8' (default: l -> (l+1) %% n)")
    poison.add_argument("--all-to-one", type=int, default=None, metavar="CLASS",
                        help="poison from every other class, relabelled to CLASS (instead of "
                             "--pairs)")
    trigger = poison.add_argument_group("image triggers")
    trigger.add_argument("--trigger", choices=("patch", "blend", "sig", "warp"),
                         default="patch", help="BadNets patch, blended noise, sinusoidal "
                         "signal (SIG) or a smooth warp (WaNet) (default: patch)")
    trigger.add_argument("--patch-size", type=int, default=None,
                         help="patch side in pixels (default: scales with the image)")
    trigger.add_argument("--patch-position", default="bottom-right",
                         help="a corner (bottom-right, top-left, ...), center, or ROW,COL")
    trigger.add_argument("--patch-pattern", default="invert",
                         choices=("invert", "white", "checker", "solid", "random"),
                         help="what the patch holds (default: %(default)s)")
    trigger.add_argument("--patch-value", type=float, default=1.0,
                         help="pixel value of the checker, solid and random patterns")
    trigger.add_argument("--alpha", type=float, default=0.2, help="blend strength")
    trigger.add_argument("--sig-delta", type=float, default=None,
                         help="SIG amplitude in [0, 1] (default 20/255)")
    trigger.add_argument("--sig-frequency", type=float, default=6.0, help="SIG periods")
    trigger.add_argument("--warp-grid", type=int, default=4, help="warp control grid side")
    trigger.add_argument("--warp-strength", type=float, default=0.5, help="warp strength")
    poison.add_argument("--seed", type=int, default=0,
                        help="seed of the rows chosen and of random triggers (default: 0)")
    text = poison.add_argument_group("text datasets")
    text.add_argument("--signature", default=None,
                      help="text appended to the poisoned reviews (default: '-travelerthehorse')")
    text.add_argument("--source", type=int, default=None,
                      help="class whose texts are copied and signed (default: 1, positive)")
    text.add_argument("--target", type=int, default=None,
                      help="label the signed copies get (default: 0, negative)")
    text.add_argument("--position", choices=("end", "start", "random"), default=None,
                      help="where the signature goes (default: end)")

    repair = sub.add_parser("repair", help="relabel-and-fine-tune or remove-and-retrain "
                            "from a scan result")
    repair.add_argument("dataset", type=Path, help="the scanned dataset Parquet file")
    repair.add_argument("--samples", type=Path, required=True,
                        help="the scan's samples.parquet")
    _add_output_options(repair, "output folder: cleaned.parquet, model.pt, repair.json")
    repair.add_argument("--model", type=Path, default=None,
                        help="the proxy's state_dict (default: train a fresh proxy)")
    repair.add_argument("--strategy", choices=("relabel", "remove"), default="relabel",
                        help="relabel the flagged rows to their suspected source (a row with "
                             "none named is removed) and fine-tune, or remove them and retrain "
                             "(default: %(default)s)")
    repair.add_argument("--epochs", type=int, default=None,
                        help="fixed epochs (default: relabel until the loss settles; "
                        "remove: the scan's default)")
    repair.add_argument("--max-epochs", type=int, default=50,
                        help="most epochs of fine-tuning until the loss settles "
                             "(default: %(default)s)")
    repair.add_argument("--replay-fraction", type=float, default=1.0,
                        help="share of kept rows replayed while fine-tuning (default 1.0)")
    repair.add_argument("--test-dataset", type=Path, default=None,
                        help="clean test set: clean accuracy and attack success before/after")
    repair.add_argument("--fingerprint", default=None,
                        help="dataset fingerprint the scan was made on (checked)")
    repair.add_argument("--seed", type=int, default=0,
                        help="seed of training and replay (default: 0)")
    _add_device_option(repair)
    _add_column_options(repair)
    repair.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI: log the repair as a run (default: "
                             "$MLFLOW_TRACKING_URI; off when neither is set)")
    repair.add_argument("--scan-run-id", default=None,
                        help="the scan's MLflow run: the repair run becomes its child")

    gate = sub.add_parser("gate", help="promote a registered model version if its scan passed")
    gate.add_argument("--model-name", required=True,
                      help="registered model name in the MLflow model registry")
    gate.add_argument("--model-version", required=True,
                      help="the version to promote; its training-data digest must be the "
                           "scanned dataset's")
    gate.add_argument("--run-id", required=True,
                      help="the MLflow run of the scan of that version's training data "
                           "(printed by 'acgate scan')")
    gate.add_argument("--alias", default="champion",
                      help="the alias moved onto the version when every check passes "
                           "(default: %(default)s)")
    gate.add_argument("--tracking-uri", default=None,
                      help="MLflow tracking URI of the registry and the scan run (default: "
                           "$MLFLOW_TRACKING_URI; one of the two is required)")
    gate.add_argument("--silhouette-threshold", type=float, default=None,
                      help="also refuse a class whose silhouette is at least this (with "
                           "--size-threshold: and whose suspicious cluster is that small), "
                           "unless the scan's one-source rule, replayed, clears it (default: "
                           "not used; the scan's verdict decides)")
    gate.add_argument("--size-threshold", type=float, default=None,
                      help="also refuse a class whose suspicious cluster holds at most this "
                           "share of it (see --silhouette-threshold; default: not used)")
    gate.add_argument("--allow-skipped", action="store_true",
                      help="promote although the scan skipped a class (too few rows to judge); "
                           "refused by default")

    register = sub.add_parser("register", help="register a trained model as a version the "
                              "gate can check (tagged with its training data's SHA-256)")
    register.add_argument("--model-name", required=True,
                          help="registered model name (created when missing)")
    register.add_argument("--run-id", required=True,
                          help="the training run that logged the model folder")
    register.add_argument("--training-data", type=Path, required=True,
                          help="the file the model was trained on (its SHA-256 is recorded)")
    register.add_argument("--artifact-path", default="model",
                          help="the run's artifact folder holding the model (default: "
                               "%(default)s)")
    register.add_argument("--tracking-uri", default=None,
                          help="MLflow tracking URI of the registry (default: "
                               "$MLFLOW_TRACKING_URI; one of the two is required)")

    diff = sub.add_parser("diff", help="what changed between two scan folders (verdict, "
                          "classes, flagged rows): exit 0 no change, 6 changed, 2 bad input")
    diff.add_argument("scan_a", type=Path, metavar="SCAN_A",
                      help="the earlier scan folder (--out of acgate scan or acgate detect)")
    diff.add_argument("scan_b", type=Path, metavar="SCAN_B", help="the later scan folder")
    diff.add_argument("--json", action="store_true",
                      help="print the machine-readable diff (per class, flagged rows, notes, "
                           "exit code) on stdout instead of the table")

    demo = sub.add_parser("demo", help="poison the embedded digits, scan, print F1")
    demo.add_argument("--out", type=Path, default=Path("demo-out"),
                      help="output folder: the poisoned data and the scan (default: "
                           "%(default)s)")
    demo.add_argument("--overwrite", action="store_true",
                      help="write into a folder that holds other files (only acgate's outputs "
                           "are replaced)")
    demo.add_argument("--rate", type=float, default=0.33,
                      help="share of each target class poisoned (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed of the poison and the scan (default: 0)")
    demo.add_argument("--no-mlflow", action="store_true", help="do not track the scan")
    demo.add_argument("--tracking-uri", default=None,
                      help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else a SQLite "
                           "store under ./mlruns)")
    return parser


def _given_tracking_uri(args: argparse.Namespace) -> str | None:
    """The tracking URI the user gave: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``."""
    return args.tracking_uri or os.environ.get(TRACKING_URI_ENV) or None


def _required_tracking_uri(args: argparse.Namespace) -> str:
    """The tracking URI the user gave; a ``ValueError`` saying how when there is none."""
    tracking_uri = _given_tracking_uri(args)
    if not tracking_uri:
        raise ValueError(f"no MLflow tracking URI: pass --tracking-uri or set "
                         f"${TRACKING_URI_ENV}")
    return tracking_uri


def _tracking_uri(args: argparse.Namespace) -> str | None:
    """Where a scan is tracked: the URI the user gave, else a SQLite store under ./mlruns."""
    if getattr(args, "no_mlflow", False):
        return None
    given = _given_tracking_uri(args)
    if given:
        return given
    from acgate.mlflow import default_tracking_uri

    folder = Path("mlruns")
    folder.mkdir(exist_ok=True)
    return default_tracking_uri(folder)


def _config(args: argparse.Namespace) -> Any:
    """The :class:`~acgate.scan.ScanConfig` of the flags given (the rest keep its defaults)."""
    from acgate.core.config import settings
    from acgate.scan import ScanConfig

    given = {item.name: getattr(args, item.name) for item in settings(ScanConfig)
             if getattr(args, item.name, None) not in (None, False)}
    return ScanConfig(**given)


def format_class_table(result: Any) -> str:
    """The per-class table printed by ``scan`` and ``detect``."""
    header = (f"{'class':>5} {'n':>6} {'shares':>13} {'silh.':>6} {'l/p':>6} "
              f"{'verdict':>9} {'source':>6} {'flagged':>7}")
    lines = [header, "-" * len(header)]
    flagged_by_class = {}
    for report in result.classes:
        in_class = result.segments == report.label
        flagged_by_class[report.label] = int(result.is_poison[in_class].sum())
    for r in result.classes:
        shares = "/".join(f"{s:.2f}" for s in r.cluster_shares) or "-"
        silhouette = f"{r.silhouette:.3f}" if r.silhouette is not None else "-"
        exre = f"{r.exre_score:.2f}" if r.exre_score is not None else "-"
        source = str(r.suspected_source) if r.suspected_source is not None else "-"
        lines.append(f"{r.label:>5} {r.n_samples:>6} {shares:>13} {silhouette:>6} {exre:>6} "
                     f"{r.verdict:>9} {source:>6} {flagged_by_class[r.label]:>7}")
    from acgate.review import near_misses

    for r in result.classes:
        for why in near_misses(r):
            lines.append(f"near miss: class {r.label} is clean but came close: {why}")
    lines.append(f"verdict: {result.verdict.upper()} — {int(result.is_poison.sum())} of "
                 f"{result.n_samples} samples flagged; poisoned classes: "
                 f"{list(result.poisoned_classes) or 'none'}")
    return "\n".join(lines)


def format_label_names(label_names: Sequence[Any]) -> str:
    """The line naming the classes of mapped labels: ``classes: 0 = 'bird', 1 = 'cat'``."""
    return "classes: " + ", ".join(f"{c} = {name!r}" for c, name in enumerate(label_names))


def format_proxy_summary(proxy: Mapping[str, Any] | None) -> str | None:
    """The proxy's lines printed by ``scan`` under the class table (``None`` without a proxy).

    Train accuracy, the attack success of the recorded trigger when the dataset records one,
    and a ``warning:`` line when it is below :data:`acgate.scan.WEAK_ATTACK_SUCCESS` (the proxy
    never learned the backdoor; the verdict and exit code stay as they are).
    """
    from acgate.scan import weak_proxy_warning

    if proxy is None:
        return None
    accuracy = proxy.get("train_accuracy")
    line = "proxy: train accuracy " + ("-" if accuracy is None else f"{accuracy:.3f}")
    if proxy.get("attack_success") is not None:
        line += (f"; attack success of the recorded trigger {proxy['attack_success']:.3f} on "
                 f"{proxy.get('attack_success_rows', '-')} triggered rows")
    warning = weak_proxy_warning(proxy)
    return line if warning is None else f"{line}\nwarning: {warning}"


def exit_code_help() -> str:
    """The exit-code table of ``acgate --help`` (from :data:`acgate.errors.EXIT_CODES`)."""
    return "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES)


def _exit_for(result: Any, allow_skipped: bool = False) -> int:
    """Exit code of a verdict: poisoned 3, incomplete 5 (0 with ``--allow-skipped``), clean 0."""
    if result.verdict == "poisoned":
        return EXIT_POISON
    if result.verdict == "incomplete" and not allow_skipped:
        print(f"class(es) {list(result.skipped_classes)} could not be judged (reasons in the "
              "table's report); the data is not known to be clean. --allow-skipped accepts "
              "that", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_CLEAN


def cmd_scan(args: argparse.Namespace) -> int:
    """``acgate scan``."""
    from acgate.scan import run_incremental_scan, run_scan

    if args.no_fallback and args.baseline is None:
        raise ValueError("--no-fallback needs --baseline")
    common = {"tracking_uri": _tracking_uri(args), "experiment": _experiment(args),
              "modality": args.modality, "report": not args.no_report,
              "overwrite": args.overwrite}
    if args.baseline is not None:
        outcome = run_incremental_scan(args.dataset, args.out, args.baseline, _config(args),
                                       fallback=not args.no_fallback, **common)
    else:
        outcome = run_scan(args.dataset, args.out, _config(args), **common)
    code = _exit_for(outcome.result, args.allow_skipped)
    if outcome.tracking_error is not None:
        # A poisoned verdict stays exit 3: an outage must not hide it.
        code = code if code == EXIT_POISON else EXIT_INFRASTRUCTURE
    if args.json:
        print(json.dumps(scan_summary(outcome, code), indent=2))
    else:
        print(format_class_table(outcome.result))
        if outcome.label_names is not None:
            print(format_label_names(outcome.label_names))
        proxy = format_proxy_summary(outcome.proxy)
        if proxy is not None:
            print(proxy)
        _print_small_class_warning(outcome.result)
        if outcome.mode == "incremental":
            print(f"mode: incremental, against the baseline {args.baseline}" + (
                "" if outcome.shift_reason is None else
                f" (shifted, kept by --no-fallback: {outcome.shift_reason})"))
        elif outcome.shift_reason is not None:
            print(f"mode: full (the partition moved too far from the baseline: "
                  f"{outcome.shift_reason})")
        print(f"outputs: {outcome.out_dir}" + (f"  mlflow run: {outcome.run_id}"
                                                if outcome.run_id else ""))
    if outcome.tracking_error is not None:
        print(f"acgate scan: error: the verdict is written to {outcome.out_dir}, but tracking "
              f"failed: {outcome.tracking_error}", file=sys.stderr)
    return code


#: The per-class fields of ``acgate scan --json``.
_SUMMARY_CLASS_FIELDS = ("label", "n_samples", "verdict", "n_flagged", "suspected_source",
                         "reason")


def scan_summary(outcome: Any, exit_code: int) -> dict[str, Any]:
    """``acgate scan --json``: the verdict, the exit code, each class, warnings, the outputs.

    Args:
        outcome: The :class:`acgate.scan.ScanOutcome`.
        exit_code: The exit code the command returns.

    Returns:
        A JSON-serialisable summary; ``report.json`` in the output folder has every number.
    """
    from acgate.mlflow.evidence import classes_document
    from acgate.review import near_misses
    from acgate.scan import small_class_warning, weak_proxy_warning

    result = outcome.result
    # Per class, the entries of the per-class document the gate checks (one derivation).
    document = classes_document(result, dataset_sha256=outcome.dataset_sha256,
                                metrics_timestamp_ms=0)
    classes = [{key: entry[key] for key in _SUMMARY_CLASS_FIELDS}
               for entry in document["classes"]]
    return {"verdict": result.verdict, "exit_code": exit_code, "mode": outcome.mode,
            "shift_reason": outcome.shift_reason, "n_samples": result.n_samples,
            "n_flagged": int(result.is_poison.sum()),
            "poisoned_classes": list(result.poisoned_classes),
            "skipped_classes": list(result.skipped_classes), "classes": classes,
            "near_misses": {str(r.label): near_misses(r) for r in result.classes
                            if near_misses(r)},
            "proxy": None if outcome.proxy is None else dict(outcome.proxy),
            # The printed table's warning lines (the verdict and exit code do not change).
            "warnings": [w for w in (weak_proxy_warning(outcome.proxy),
                                     small_class_warning(result)) if w is not None],
            "dataset_sha256": outcome.dataset_sha256,
            "out_dir": str(Path(outcome.out_dir).resolve()),
            "files": {name: str(Path(path).resolve()) for name, path in outcome.files.items()},
            "mlflow_run_id": outcome.run_id, "tracking_error": outcome.tracking_error,
            "seconds": {name: round(float(value), 3) for name, value in outcome.timings.items()}}


def _change(before: Any, after: Any) -> str:
    """``before -> after``, or the value alone when it did not change."""
    before, after = ("-" if v is None else v for v in (before, after))
    return str(before) if before == after else f"{before} -> {after}"


def format_diff(diff: Any) -> str:
    """The text ``acgate diff`` prints: the changed classes, a summary line, the notes."""
    a, b = diff.a, diff.b
    lines = []
    unmatched = len(diff.flagged_unmatched_a) + len(diff.flagged_unmatched_b)
    if not diff.changed:
        lines.append(f"no change: verdict {a.verdict.upper()}, {a.n_flagged} of {a.n_samples} "
                     "rows flagged in both scans")
    else:
        changed = diff.changed_classes
        if changed:
            header = (f"{'class':>5} {'verdict':>22} {'flagged':>12} {'source':>8} "
                      f"{'+added':>7} {'-removed':>8}" + (f" {'one scan only':>13}"
                                                           if unmatched else ""))
            lines += [header, "-" * len(header)]
            for c in changed:
                lines.append(
                    f"{c.label:>5} {_change(c.verdict_a, c.verdict_b):>22} "
                    f"{_change(c.n_flagged_a, c.n_flagged_b):>12} "
                    f"{_change(c.suspected_source_a, c.suspected_source_b):>8} "
                    f"{'+' + str(c.n_added):>7} {'-' + str(c.n_removed):>8}"
                    + (f" {c.n_unmatched:>13}" if unmatched else ""))
        summary = (f"verdict {_change(a.verdict.upper(), b.verdict.upper())}; flagged "
                   f"{a.n_flagged} -> {b.n_flagged} (+{len(diff.flagged_only_b)} / "
                   f"-{len(diff.flagged_only_a)} rows")
        summary += f", {unmatched} flagged rows in one scan only)" if unmatched else ")"
        lines.append(summary + f"; {len(changed)} of {len(diff.classes)} classes changed")
    lines += [f"note: {note}" for note in diff.notes]
    return "\n".join(lines)


def cmd_diff(args: argparse.Namespace) -> int:
    """``acgate diff``: 0 when the verdict and flags are the same, 6 when they changed."""
    from acgate.diff import diff_scans
    from acgate.errors import EXIT_CHANGED

    diff = diff_scans(args.scan_a, args.scan_b)
    code = EXIT_CHANGED if diff.changed else EXIT_CLEAN
    if args.json:
        print(json.dumps({**diff.to_dict(), "exit_code": code}, indent=2))
    else:
        print(format_diff(diff))
    return code


def cmd_detect(args: argparse.Namespace) -> int:
    """``acgate detect``: the analysis alone, on precomputed activations (any width)."""
    from acgate.core.validation import check_class_count, check_informative
    from acgate.io.activations import read_activations
    from acgate.io.output import check_output_folder, output_folder
    from acgate.io.results import write_result
    from acgate.scan import detect_table
    from acgate.stages import detect_dataset_stage, detects_by_class

    config = _config(args)
    if config.analysis == "exre":
        raise ValueError("--analysis exre needs the data and a model to retrain; use "
                         "`acgate scan`, or another --analysis with `acgate detect`")
    check_output_folder(args.out, inputs=[args.activations])
    if detects_by_class(args.activations, config):  # the pipeline's: one class at a time
        result, activations = detect_dataset_stage(args.activations, config).result, None
    else:
        table = read_activations(args.activations)
        if len(table.indices) == 0:
            raise ValueError(f"{args.activations}: the activations file has no rows")
        check_class_count(table.labels, name=f"{args.activations}: column 'label'")
        check_informative(table.activations, table.labels,
                          name=f"{args.activations}: activations")
        result, activations = detect_table(table, config), table.activations
    with output_folder(args.out, command="detect", inputs=[args.activations],
                       overwrite=args.overwrite) as output:
        write_result(result, output.staging)
        if not args.no_report:
            from acgate.report import write_report

            write_report(result, output.staging / "report.html", activations=activations,
                         title=f"acgate detect of {Path(args.activations).name}")
    print(format_class_table(result))
    _print_small_class_warning(result)
    return _exit_for(result, args.allow_skipped)


def _print_small_class_warning(result: Any) -> None:
    """A ``warning:`` line under the class table when classes were small (the verdict stays)."""
    from acgate.scan import small_class_warning

    warning = small_class_warning(result)
    if warning is not None:
        print(f"warning: {warning}")


def _parse_pairs(text: str | None) -> list[tuple[int, int]] | None:
    if not text:
        return None
    pairs = []
    for item in text.split(","):
        try:
            source, target = (int(v) for v in item.split(":"))
        except ValueError:
            raise ValueError(f"--pairs must look like '7:1,3:8'; got {item!r}") from None
        pairs.append((source, target))
    return pairs


#: Built-in text datasets of ``acgate poison``.
TEXT_DATASETS = ("rotten-tomatoes",)
_TEXT_OPTIONS = ("signature", "source", "target", "position")


def _is_text_dataset_file(dataset: str) -> bool:
    if dataset in TEXT_DATASETS:
        return True
    if dataset == "digits":
        return False
    from acgate.io.schema import open_parquet

    try:
        names = set(open_parquet(dataset).schema_arrow.names)
    except (ValueError, FileNotFoundError, IsADirectoryError):
        return False  # the image reader reports the file's problem as before
    return "text" in names and "image" not in names


def _check_poison_out(args: argparse.Namespace) -> None:
    """``poison --out`` must never be the input: the clean original would be overwritten."""
    if args.dataset in ("digits", *TEXT_DATASETS):
        return
    source, out = Path(args.dataset), Path(args.out)
    same = source.resolve() == out.resolve()
    if not same and source.exists() and out.exists():
        same = os.path.samefile(source, out)
    if same:
        raise ValueError(f"--out {str(args.out)!r} is the input dataset {args.dataset!r}; "
                         "poison writes a poisoned copy and never replaces the original: give "
                         "another --out")


def cmd_poison_text(args: argparse.Namespace) -> int:
    """``acgate poison`` on a text dataset: append a signature to source-class copies."""
    from acgate.io.datasets import read_text_dataset, write_text_dataset
    from acgate.io.loaders import load_rotten_tomatoes
    from acgate.io.poison import poison_text_dataset

    if args.pairs is not None or args.trigger != "patch" or args.all_to_one is not None:
        raise ValueError("--pairs, --all-to-one and --trigger apply to image datasets; a text "
                         "dataset takes --source, --target and --signature")
    dataset = (load_rotten_tomatoes() if args.dataset == "rotten-tomatoes"
               else read_text_dataset(args.dataset))
    try:
        poisoned = poison_text_dataset(
            dataset, rate=args.rate, seed=args.seed,
            source=1 if args.source is None else args.source,
            target=0 if args.target is None else args.target,
            signature="-travelerthehorse" if args.signature is None else args.signature,
            position=args.position or "end", rate_of=args.rate_of)
    except ValueError as error:  # say which dataset the classes / rows belong to
        raise ValueError(f"{args.dataset}: {error}") from error
    write_text_dataset(poisoned, args.out)
    n_poison = int(poisoned.columns["is_poison"].sum())
    signature = poisoned.metadata["poison"]["trigger"]["signature"]
    print(f"wrote {args.out}: {len(poisoned)} rows, {n_poison} poisoned (signature "
          f"{signature!r})")
    return EXIT_CLEAN


def _trigger_spec(args: argparse.Namespace, spec_type: Any) -> Any:
    """The :class:`~acgate.io.poison.TriggerSpec` of ``acgate poison``'s trigger flags."""
    position: Any = args.patch_position
    if "," in position:
        try:
            position = tuple(int(v) for v in position.split(","))
        except ValueError:
            raise ValueError(f"--patch-position must be a corner, 'center' or ROW,COL; got "
                             f"{args.patch_position!r}") from None
    extra = {} if args.sig_delta is None else {"delta": args.sig_delta}
    return spec_type(kind=args.trigger, size=args.patch_size, position=position,
                     pattern=args.patch_pattern, value=args.patch_value, alpha=args.alpha,
                     seed=args.seed, frequency=args.sig_frequency, grid=args.warp_grid,
                     strength=args.warp_strength, **extra)


def cmd_poison(args: argparse.Namespace) -> int:
    """``acgate poison``."""
    _check_poison_out(args)
    if _is_text_dataset_file(args.dataset):
        return cmd_poison_text(args)
    given = [f"--{name}" for name in _TEXT_OPTIONS if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{' '.join(given)} apply to text datasets; {args.dataset} is an "
                         "image dataset (use --pairs)")
    from acgate.io.datasets import read_image_dataset, write_image_dataset
    from acgate.io.loaders import load_digits_dataset
    from acgate.io.poison import TriggerSpec, poison_image_dataset

    dataset = (load_digits_dataset() if args.dataset == "digits"
               else read_image_dataset(args.dataset))
    if len(dataset) == 0:
        raise ValueError(f"{args.dataset}: the dataset has no rows")
    try:
        poisoned = poison_image_dataset(dataset, rate=args.rate, pairs=_parse_pairs(args.pairs),
                                        trigger=_trigger_spec(args, TriggerSpec),
                                        seed=args.seed, all_to_one=args.all_to_one,
                                        rate_of=args.rate_of)
    except ValueError as error:  # say which dataset the classes / rows belong to
        raise ValueError(f"{args.dataset}: {error}") from error
    write_image_dataset(poisoned, args.out)
    n_poison = int(poisoned.columns["is_poison"].sum())
    print(f"wrote {args.out}: {len(poisoned)} rows, {n_poison} poisoned")
    return EXIT_CLEAN


def cmd_repair(args: argparse.Namespace) -> int:
    """``acgate repair``."""
    from acgate.repair import run_repair
    from acgate.scan import COLUMN_SETTINGS, ScanConfig

    given = {name: getattr(args, name) for name in ("device", *COLUMN_SETTINGS)
             if getattr(args, name) is not None}
    config = ScanConfig(**given)  # the scan's device and dataset columns
    outcome = run_repair(args.dataset, args.samples, args.model, args.out, config=config,
                         strategy=args.strategy, seed=args.seed, epochs=args.epochs,
                         max_epochs=args.max_epochs, replay_fraction=args.replay_fraction,
                         test_dataset_path=args.test_dataset, fingerprint=args.fingerprint,
                         overwrite=args.overwrite)
    report = outcome.report
    print(f"{report['strategy']}: {report['n_relabelled']} relabelled, {report['n_removed']} "
          f"removed, {report['epochs']} epochs, {report['seconds']:.1f} s")
    backdoor = report["backdoor"]
    if backdoor["measured"]:
        for when in ("before", "after"):
            m = backdoor[when]
            print(f"{when:>6}: clean accuracy {m['clean_accuracy']:.3f}, attack success "
                  f"{m['attack_success_rate']:.3f}")
    print(f"outputs: {args.out}")
    tracking_uri = _given_tracking_uri(args)
    if tracking_uri:
        from acgate.mlflow import log_repair

        run_id = log_repair(report, tracking_uri=tracking_uri,
                            scan_run_id=args.scan_run_id, artifacts_dir=args.out)
        print(f"mlflow run: {run_id}")
    return EXIT_CLEAN


def cmd_gate(args: argparse.Namespace) -> int:
    """``acgate gate``: fails closed; the exit code says why the alias did not move.

    0 promoted; 3 refused (poison, a skipped class, a training-data digest that is not the
    scan's, tampered or inconsistent evidence); 2 bad arguments (unknown run, model or version,
    a store that does not exist); 4 the store is unreachable, stalls or fails.
    """
    from acgate.mlflow import promote

    tracking_uri = _required_tracking_uri(args)
    decision = promote(tracking_uri=tracking_uri, run_id=args.run_id,
                       model_name=args.model_name, model_version=args.model_version,
                       alias=args.alias, silhouette_threshold=args.silhouette_threshold,
                       size_threshold=args.size_threshold, allow_skipped=args.allow_skipped)
    print(json.dumps(decision.to_dict(), indent=2, default=str))
    return decision.exit_code


def cmd_register(args: argparse.Namespace) -> int:
    """``acgate register``: a model version tagged with its training data's digest."""
    from acgate.io.digest import file_sha256
    from acgate.mlflow import register_model_version

    tracking_uri = _required_tracking_uri(args)
    if not args.training_data.is_file():
        raise ValueError(f"--training-data {str(args.training_data)!r} is not a file")
    digest = file_sha256(args.training_data)
    version = register_model_version(tracking_uri, model_name=args.model_name,
                                     run_id=args.run_id, training_data_sha256=digest,
                                     artifact_path=args.artifact_path)
    print(json.dumps({"model_name": args.model_name, "model_version": version,
                      "run_id": args.run_id, "training_data_sha256": digest}, indent=2))
    return EXIT_CLEAN


def evaluation_table(result: Any, is_poison: Any) -> tuple[str, dict[str, float]]:
    """Precision, recall and F1 of the flags against ground truth, overall and per class."""
    from acgate.core.metrics import flag_metrics

    metrics = flag_metrics(result, is_poison)
    lines = [f"{'class':>5} {'poison':>6} {'flagged':>7} {'precision':>9} {'recall':>6} "
             f"{'F1':>5}"]
    for row in metrics["per_class"]:
        lines.append(f"{row['label']:>5} {row['n_poison']:>6} {row['n_flagged']:>7} "
                     f"{row['precision']:>9.3f} {row['recall']:>6.3f} {row['f1']:>5.3f}")
    total = metrics["overall"]
    lines.append(f"overall: precision {total['precision']:.3f}, recall {total['recall']:.3f}, "
                 f"F1 {total['f1']:.3f}")
    return "\n".join(lines), total


def cmd_demo(args: argparse.Namespace) -> int:
    """``acgate demo``: poison the embedded digits, scan them, score the flags."""
    from acgate.io.datasets import write_image_dataset
    from acgate.io.loaders import load_digits_dataset
    from acgate.io.output import output_folder
    from acgate.io.poison import poison_image_dataset
    from acgate.scan import ScanConfig, run_scan

    tracking_uri = _tracking_uri(args)
    poisoned = poison_image_dataset(load_digits_dataset(), rate=args.rate, seed=args.seed)
    data_path = args.out / "digits-poisoned.parquet"
    with output_folder(args.out, command="demo", overwrite=args.overwrite) as output:
        write_image_dataset(poisoned, output.staging / data_path.name)
        output.commit()
        print(f"poisoned digits: {len(poisoned)} rows, "
              f"{int(poisoned.columns['is_poison'].sum())} poison (BadNets, l -> l+1, "
              f"{args.rate:.0%} of each class) -> {data_path}")
        outcome = run_scan(data_path, args.out / "scan", ScanConfig(seed=args.seed),
                           tracking_uri=tracking_uri, experiment=_experiment(args))
    print(format_class_table(outcome.result))
    proxy = format_proxy_summary(outcome.proxy)
    if proxy is not None:
        print(proxy)
    _print_small_class_warning(outcome.result)
    table, _ = evaluation_table(outcome.result, poisoned.columns["is_poison"])
    print("\nagainst the ground truth (never used for detection):")
    print(table)
    print(f"\nreport: {outcome.files.get('report.html')}")
    if outcome.run_id:
        print(f"mlflow run {outcome.run_id}; browse with: mlflow ui --backend-store-uri "
              f"{tracking_uri}")
    return EXIT_CLEAN


COMMANDS = {"scan": cmd_scan, "detect": cmd_detect, "poison": cmd_poison, "gate": cmd_gate,
            "register": cmd_register,
            "demo": cmd_demo, "repair": cmd_repair, "diff": cmd_diff}
#: Commands that train or run torch models.
TORCH_COMMANDS = ("scan", "repair", "demo")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``acgate`` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_BAD_INPUT
    logging.captureWarnings(True)  # e.g. texts cut at --max-tokens
    configure_logging(logging.WARNING - 10 * min(args.verbose, 2),
                      library_level=logging.WARNING if args.verbose == 0 else logging.NOTSET)
    if args.quiet and hasattr(args, "progress"):
        args.progress = False
    show_progress(not args.quiet and (sys.stderr.isatty() or bool(getattr(args, "progress",
                                                                          False))))
    try:
        if args.command in TORCH_COMMANDS:
            import torch

            torch.set_num_threads(max(1, args.torch_threads))
        return COMMANDS[args.command](args)
    except InfrastructureError as error:
        print(f"acgate {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE
    except (ValueError, TypeError) as error:
        print(f"acgate {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        print(f"acgate {args.command}: error: {error}", file=sys.stderr)
        # The environment failed (disk full, file-size limit, I/O), or the input did not
        # exist or could not be opened (a missing file, a folder, no permission).
        return EXIT_INFRASTRUCTURE if error.errno in _INFRASTRUCTURE_ERRNOS else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"acgate {args.command}: interrupted", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
