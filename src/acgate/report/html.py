"""Self-contained HTML report of a scan.

One file, no scripts, no external resources: plots and sprite sheets are embedded as base64 PNG
(and also written to a ``plots/`` folder). Every string that comes from the data or the caller
— reasons, parameters, warnings, texts, the title, extra sections — goes through
:func:`html.escape`, and a Content-Security-Policy forbids scripts as a second line of defence.

Sections, top to bottom: the verdict (big); the run (dataset, its SHA-256, date, versions,
proxy accuracy); a summary with the near misses; the next command to run (repair,
or register and gate); the proxy (train accuracy and, when the dataset records its attack, the
proxy's attack success, with a warning when it is low); the per-class table; the share of each
class flagged (and the silhouette chart, when the decision used it); then a card for every
class, clean ones too: its flagged count, its numbers against the cuts, every piece of evidence
judged (near misses highlighted, :mod:`acgate.review`), 3-D PCA projections of its
activations coloured by the final flag and by cluster (Chen et al. 2018, Figure 2), flagged and
kept samples as sprite sheets (for text: tables of texts); then warnings, the Great
Expectations results, run parameters and any extra sections.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from acgate.core.result import ClassReport, DetectionResult
from acgate.core.tail import HELD_OUT_OVERLAP_RATIO
from acgate.report import plots, shared
from acgate.review import clauses, near_misses

logger = logging.getLogger(__name__)

#: Characters of a text shown in a table cell before it is cut.
MAX_TEXT_CHARS = 400

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px 32px;
       color: #222; max-width: 1150px; }
h1 { font-size: 22px; margin: 0 0 8px 0; color: #444; }
h2 { font-size: 19px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 16px; margin-top: 22px; }
.verdict { font-size: 56px; font-weight: 800; letter-spacing: 2px; padding: 18px 28px;
           border-radius: 10px; color: #fff; display: inline-block; }
.verdict-poisoned { background: #c0392b; }
.verdict-clean { background: #1e8449; }
.verdict-incomplete { background: #b9770e; }
.subverdict { font-size: 18px; margin: 10px 0 0 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.row-poisoned td { background: #fdecea; }
tr.row-skipped td { color: #777; }
.badge { font-weight: 700; }
.badge-poisoned { color: #c0392b; } .badge-clean { color: #1e8449; } .badge-skipped { color: #777; }
.badge-near-miss { color: #b9770e; }
figure { display: inline-block; margin: 6px 18px 6px 0; vertical-align: top; }
figcaption { font-size: 13px; color: #444; margin-top: 4px; }
img { image-rendering: pixelated; max-width: 100%; }
pre { background: #f7f7f7; padding: 8px; white-space: pre-wrap; font-size: 12px; }
td.text { max-width: 640px; white-space: pre-wrap; word-break: break-word; }
ul.summary li { margin: 2px 0; }
article.card { border: 1px solid #ddd; border-left: 6px solid #1e8449; border-radius: 6px;
               padding: 4px 16px 10px 16px; margin: 14px 0; }
article.card-poisoned { border-left-color: #c0392b; }
article.card-skipped { border-left-color: #95a5a6; }
article.card-near-miss { border-left-color: #d68910; background: #fef9e7; }
.count { font-weight: 400; color: #444; }
p.near-miss-note { color: #9a5d00; }
tr.row-near-miss td { background: #fef5e7; }
ol.clauses li { margin: 3px 0; font-size: 13px; }
li.clause-poison { color: #a93226; } li.clause-near { color: #9a5d00; }
li.clause-legitimate, li.clause-note { color: #333; }
pre.command { background: #eef2f7; }
details summary { cursor: pointer; font-size: 13px; color: #333; }
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class ReportFiles:
    """Files written by :func:`write_report`.

    Attributes:
        html_path: The HTML report.
        plot_paths: The PNG files written to the plots folder, in report order.
    """

    html_path: Path
    plot_paths: tuple[Path, ...]


def write_report(
    result: DetectionResult,
    out_path: str | Path,
    *,
    activations: np.ndarray | None = None,
    images: np.ndarray | None = None,
    texts: Sequence[str] | None = None,
    title: str = "acgate scan",
    plots_dir: str | Path | None = None,
    extra_sections: Sequence[tuple[str, str]] = (),
    max_samples: int = 48,
    random_state: int = 0,
    proxy: Mapping[str, Any] | None = None,
    scan_info: Mapping[str, Any] | None = None,
    validations: Mapping[str, Mapping[str, Any]] | None = None,
    created: str | None = None,
    scan_folder: str | Path | None = None,
) -> ReportFiles:
    """Write the HTML report of a scan (and its PNG plots).

    Everything is rendered in memory first; files are then written atomically (temporary file
    in the same folder, then :func:`os.replace`), so invalid input leaves nothing behind.

    Args:
        result: The detection result.
        out_path: Path of the HTML file; its folder is created.
        activations: ``N x D`` activations aligned with the result's rows (enables the 3-D
            projections).
        images: ``N x C x H x W`` images in ``[0, 1]`` (``C`` = 1 or 3) aligned with the rows
            (enables the sprite sheets and the flagged rows' mean difference from their sources).
        texts: ``N`` texts aligned with the rows (enables the text tables and the tokens
            over-represented among the flagged texts).
        title: Title of the report.
        plots_dir: Folder of the PNG files; default ``<folder of out_path>/plots``.
        extra_sections: ``(heading, text)`` pairs appended at the end; both are escaped and
            the text is shown preformatted.
        max_samples: Flagged samples shown per class, and size of the sample of kept ones.
        random_state: Seed of the sample of kept samples.
        proxy: How the proxy trained (``scan.json``'s ``"proxy"``): shown as the "Proxy"
            section; ``None`` (the user's own model): no section.
        scan_info: ``scan.json``'s content (dataset, its SHA-256 and fingerprint, modality):
            the run metadata and the next command to run.
        validations: The Great Expectations results by suite (``ValidationReport.to_dict()``).
        created: When the scan ran (shown as given; ``None``: not shown). The same input and
            ``created`` give the same bytes.
        scan_folder: The scan's output folder as the user names it, for the next command
            (``acgate repair ... --samples <folder>/samples.parquet``); ``None``: a placeholder.
            Not the report's own folder: a scan writes into a staging folder first.

    Returns:
        The paths written.

    Raises:
        ValueError: When an input is not aligned with the result or has the wrong shape or
            range (the message quotes it).
    """
    out_path = Path(out_path)
    plots_dir = Path(plots_dir) if plots_dir is not None else out_path.parent / "plots"
    activations = _check_activations(activations, result.n_samples)
    images = _check_images(images, result.n_samples)
    texts = _check_texts(texts, result.n_samples)
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer, got {max_samples!r}")

    pngs: dict[str, bytes] = {}
    near = {report.label: near_misses(report) for report in result.classes}
    near_labels = [label for label, why in near.items() if why]
    pngs["flagged.png"] = plots.flagged_chart(result, near_misses=near_labels)
    threshold = _global_threshold(result)
    if _uses_silhouette(result):
        pngs["silhouette.png"] = plots.silhouette_chart(result, threshold=threshold)
    samples = _Samples(activations, images, texts, max_samples, random_state)
    names = (scan_info or {}).get("label_names")  # the original labels of mapped classes
    cards = [_class_card(result, report, near[report.label], samples, pngs,
                         plotted=_plotted(result, report, near[report.label]), names=names)
             for report in result.classes]
    context = _Context(title, proxy, scan_info or {}, validations or {}, created,
                       None if scan_folder is None else Path(scan_folder))
    document = _document(result, context, threshold, cards, pngs, extra_sections, near_labels)

    plots_dir.mkdir(parents=True, exist_ok=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    plot_paths = []
    for name, data in pngs.items():
        path = plots_dir / name
        _write_atomic(path, data)
        plot_paths.append(path)
    _write_atomic(out_path, document.encode("utf-8"))
    logger.info("wrote report %s (%d plots in %s)", out_path, len(plot_paths), plots_dir)
    return ReportFiles(html_path=out_path, plot_paths=tuple(plot_paths))


#: With more classes than this, only classes with flags, near misses or a judged candidate get
#: projections and sprites (a 100-class report stays readable and small).
MAX_PLOTTED_CLASSES = 20


@dataclass(frozen=True)
class _Samples:
    """What the cards can show of the rows."""

    activations: np.ndarray | None
    images: np.ndarray | None
    texts: list[str] | None
    max_samples: int
    random_state: int


@dataclass(frozen=True)
class _Context:
    """What the report says around the result: the run and the next step."""

    title: str
    proxy: Mapping[str, Any] | None
    scan_info: Mapping[str, Any]
    validations: Mapping[str, Mapping[str, Any]]
    created: str | None
    scan_folder: Path | None


def _uses_silhouette(result: DetectionResult) -> bool:
    """Whether the decision used the silhouette (the chart against its threshold is evidence)."""
    return result.info.params.get("analysis") in ("size-silhouette", "silhouette")


def _plotted(result: DetectionResult, report: ClassReport, near: Sequence[str]) -> bool:
    """Whether a class's card gets projections and sprites."""
    flagged = bool(result.is_poison[result.segments == report.label].any())
    if flagged or report.is_poisoned or near:
        return True
    return len(result.classes) <= MAX_PLOTTED_CLASSES and report.suspicious_cluster is not None


# --- inputs ---------------------------------------------------------------------------------


def _check_activations(activations: Any, n: int) -> np.ndarray | None:
    if activations is None:
        return None
    array = np.asarray(activations)
    if array.ndim != 2 or len(array) != n:
        raise ValueError(f"activations must be N x D with N = {n} result rows, got shape "
                         f"{array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"activations must be numeric, got dtype {array.dtype}")
    bad = int(np.count_nonzero(~np.isfinite(array).all(axis=1)))
    if bad:
        raise ValueError(f"activations hold non-finite values in {bad} rows")
    return array


def _check_images(images: Any, n: int) -> np.ndarray | None:
    if images is None:
        return None
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or len(array) != n or array.shape[1] not in (1, 3):
        raise ValueError(f"images must be N x C x H x W with N = {n} result rows and C = 1 or 3, "
                         f"got shape {np.asarray(images).shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"images must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError(f"image values must be finite and in [0, 1], got range "
                         f"[{np.nanmin(array):g}, {np.nanmax(array):g}]")
    return array


def _check_texts(texts: Any, n: int) -> list[str] | None:
    if texts is None:
        return None
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of N strings, got a single string")
    values = list(texts)
    if len(values) != n:
        raise ValueError(f"texts must hold {n} strings (one per result row), got {len(values)}")
    return ["" if value is None else str(value) for value in values]


def _global_threshold(result: DetectionResult) -> float | None:
    value = result.info.params.get("silhouette_threshold")
    if isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    return None


# --- rendering ------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _img(pngs: Mapping[str, bytes], name: str, alt: str, caption: str) -> str:
    data = base64.b64encode(pngs[name]).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _document(
    result: DetectionResult,
    context: _Context,
    threshold: float | None,
    cards: list[str],
    pngs: Mapping[str, bytes],
    extra_sections: Sequence[tuple[str, str]],
    near: Sequence[int],
) -> str:
    verdict = result.verdict
    n_flagged = int(result.is_poison.sum())
    if verdict == "poisoned":
        subverdict = ("Poisoned classes: " + ", ".join(_e(c) for c in result.poisoned_classes)
                      + f" — {n_flagged} of {result.n_samples} samples flagged")
    elif verdict == "incomplete":
        subverdict = ("No class judged poisoned, but class(es) "
                      + ", ".join(_e(c) for c in result.skipped_classes)
                      + " could not be judged: the data is not known to be clean")
    else:
        subverdict = f"No class judged poisoned — {n_flagged} of {result.n_samples} flagged"
    sources = {r.label: r.suspected_source for r in result.classes if r.is_poisoned}
    summary_items = [
        f"Samples analysed: {result.n_samples}",
        f"Classes analysed: {len(result.classes)}",
        f"Flagged samples: {n_flagged}",
        "Poisoned classes: " + (", ".join(_e(c) for c in result.poisoned_classes) or "none"),
        "Near misses (clean, but close to a cut: look at them): "
        + (", ".join(_e(c) for c in near) or "none"),
        "Skipped classes: " + (", ".join(_e(c) for c in result.skipped_classes) or "none"),
    ]
    if sources:
        summary_items.append("Suspected sources: " + ", ".join(
            f"{_e(target)} ← {_e('unknown' if source is None else source)}"
            for target, source in sources.items()))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{_e(context.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(context.title)}</h1>",
        f'<section id="verdict"><div class="verdict verdict-{_e(verdict)}">'
        f"{_e(verdict.upper())}</div>",
        f'<p class="subverdict">{subverdict}</p></section>',
        _metadata_section(result, context),
        '<section id="summary"><h2>Summary</h2><ul class="summary">'
        + "".join(f"<li>{item}</li>" for item in summary_items) + "</ul></section>",
        _next_section(result, context),
        _proxy_section(context.proxy, context.scan_info.get("mode") == "incremental"),
        _small_classes_section(result),
        _classes_table(result, set(near)),
        '<section id="charts"><h2>Flagged rows per class</h2>',
        _img(pngs, "flagged.png", "share of each class flagged",
             "Share of each class flagged. Red: poisoned, green: clean, orange: near miss, "
             "grey: skipped."),
    ]
    if "silhouette.png" in pngs:
        parts.append(_img(
            pngs, "silhouette.png", "silhouette score per class",
            "Silhouette score of each class's clustering"
            + (f"; dashed line: threshold {threshold:g}" if threshold is not None else "")
            + ". Red: poisoned, green: clean, grey: skipped."))
    parts.append("</section>")
    parts.append('<section id="cards"><h2>Every class: the evidence and its verdict</h2>')
    parts += cards
    parts.append("</section>")
    if result.info.warnings:
        parts.append('<section id="warnings"><h2>Warnings</h2><ul>'
                     + "".join(f"<li>{_e(w)}</li>" for w in result.info.warnings)
                     + "</ul></section>")
    parts.append(_validation_section(context.validations))
    parts.append(_run_info(result))
    for heading, text in extra_sections:
        parts.append(f'<section class="extra"><h2>{_e(heading)}</h2><pre>{_e(text)}</pre>'
                     "</section>")
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part) + "\n"


#: The report's MLflow-run cell until the scan is logged: :func:`stamp_run_id` fills it in.
RUN_ID_SLOT = '<td id="mlflow-run">not logged to MLflow</td>'


def stamp_run_id(path: str | os.PathLike[str], run_id: str) -> bool:
    """Write the MLflow run id into a report's run table (atomically); whether it had the slot."""
    from acgate.io.atomic import atomic_write_path

    page = Path(path).read_text(encoding="utf-8")
    if RUN_ID_SLOT not in page:
        return False
    with atomic_write_path(path) as staged:
        staged.write_text(page.replace(RUN_ID_SLOT, f'<td id="mlflow-run">{_e(run_id)}</td>', 1),
                          encoding="utf-8")
    return True


def _metadata_section(result: DetectionResult, context: _Context) -> str:
    """What was scanned, when, with what: the facts a reviewer checks first."""
    info = context.scan_info
    rows: list[tuple[str, Any]] = [
        ("dataset", info.get("dataset")),
        ("dataset SHA-256", info.get("dataset_sha256")),
        ("rows", result.n_samples),
        ("modality", info.get("modality")),
        ("scanned at", context.created),
        ("acgate", result.info.versions.get("acgate")),
        ("analysis", result.info.params.get("analysis")),
    ]
    baseline = info.get("baseline")
    if isinstance(baseline, Mapping):  # an incremental scan, or its fallback to a full one
        rows.append(("mode", info.get("mode")))
        rows.append(("baseline scan", baseline.get("folder")))
        rows.append(("baseline resolved to", baseline.get("resolved")))  # models:/ -> runs:/
        if baseline.get("model"):  # the registered version a models:/ alias named then
            rows.append(("baseline's model",
                         f"{baseline['model']} version {baseline.get('model_version')}"))
        rows.append(("shifted from the baseline", info.get("shift_reason")))
    if context.proxy is not None and context.proxy.get("train_accuracy") is not None:
        rows.append(("proxy train accuracy", f"{float(context.proxy['train_accuracy']):.3f}"))
    body = "".join(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>"
                   for name, value in rows if value is not None)
    body += f"<tr><th>MLflow run</th>{RUN_ID_SLOT}</tr>"
    return f'<section id="metadata"><h2>Run</h2><table>{body}</table></section>'


def _next_section(result: DetectionResult, context: _Context) -> str:
    """The command to run next: repair a poisoned dataset, or gate the model trained on it."""
    dataset = context.scan_info.get("dataset")
    if dataset is None:  # acgate detect: activations only, no dataset to repair or gate
        return ('<section id="next"><h2>Next step</h2><p>This analysis ran on activations alone '
                "(acgate detect): the flagged rows are in flagged.parquet (their index is the "
                "row of your data). To repair the data or gate a model on it, scan the dataset "
                "itself with acgate scan.</p></section>")
    data = shlex.quote(str(dataset))
    folder = "SCAN_FOLDER" if context.scan_folder is None else shlex.quote(
        str(context.scan_folder))
    if result.verdict == "poisoned" and context.scan_info.get("modality") == "text":
        lines = [
            "Look at the poisoned classes' cards below, then remove the flagged rows (the "
            f"index column of {folder}/flagged.parquet is their row in the data; the repair "
            "command handles images only) and scan the cleaned data again before training on "
            "it."]
    elif result.verdict == "poisoned":
        lines = [
            "Look at the poisoned classes' cards below, then repair the data (relabel the "
            "flagged rows to their suspected source, or remove them) and scan the repaired "
            "data again before training on it:",
            f"acgate repair {data} --samples {folder}/samples.parquet --out repaired "
            "--strategy relabel",
            "acgate scan repaired/cleaned.parquet --out rescan",
        ]
    elif result.verdict == "clean":
        lines = [
            "Register the model trained on exactly this file, then let the gate check the "
            "digest and move the alias (docs/gate.md; SCAN_RUN_ID: this scan's MLflow run):",
            f"acgate register --model-name NAME --run-id TRAINING_RUN_ID --training-data {data}",
            "acgate gate --model-name NAME --model-version VERSION --run-id SCAN_RUN_ID",
        ]
    else:
        lines = ["Some classes could not be judged (see their cards): the data is not known "
                 "to be clean. Give them more rows or lower --min-class-size, then scan again."]
    text, commands = lines[0], lines[1:]
    return ('<section id="next"><h2>Next step</h2><p>' + _e(text) + "</p>"
            + "".join(f"<pre class=\"command\">{_e(command)}</pre>" for command in commands)
            + "</section>")


def _proxy_section(proxy: Mapping[str, Any] | None, baseline: bool = False) -> str:
    """The proxy's train accuracy and attack success, with the scan's warning when it is low.

    ``baseline``: an incremental scan, which used the baseline scan's proxy (trained there).
    """
    from acgate.scan import weak_proxy_warning

    if proxy is None:
        return ""
    accuracy = proxy.get("train_accuracy")
    line = ("The baseline scan's proxy, trained on the accepted data (none was trained for this "
            "scan): train accuracy " if baseline else "Train accuracy ")
    line += (("–" if accuracy is None else f"{accuracy:.3f}")
            + (f" after {_e(proxy['epochs'])} epochs" if "epochs" in proxy else "")
            + (f" on {_e(proxy['device'])}" if proxy.get("device") else "")
            + (f" ({_e(proxy['hardware'])})" if proxy.get("hardware") else "") + ". ")
    success = proxy.get("attack_success")
    if success is None:
        line += "The dataset records no trigger: the proxy's attack success is not measured."
    else:
        line += (f"Attack success of the recorded trigger: {success:.3f} (share of "
                 f"{_e(proxy.get('attack_success_rows', '–'))} triggered clean rows of the "
                 "source classes classified as the target).")
    warning = weak_proxy_warning(proxy)
    return ('<section id="proxy"><h2>Proxy</h2><p>' + line + "</p>"
            + (f"<p><strong>Warning:</strong> {_e(warning)}.</p>" if warning else "")
            + "</section>")


def _small_classes_section(result: DetectionResult) -> str:
    """The scan's small-class warning (:func:`acgate.scan.small_class_warning`), if any."""
    from acgate.scan import small_class_warning

    warning = small_class_warning(result)
    return ('<section id="small-classes"><p><strong>Warning:</strong> '
            f"{_e(warning)}.</p></section>" if warning else "")


def _classes_table(result: DetectionResult, near: set[int]) -> str:
    header = ("<tr><th>class</th><th>n</th><th>flagged</th><th>cluster shares</th>"
              "<th>candidate share</th><th>l/p</th><th>verdict</th><th>suspected source</th>"
              "</tr>")
    rows = []
    for report in result.classes:
        shares = " / ".join(f"{share:.0%}" for share in report.cluster_shares) or "–"
        source = "–" if report.suspected_source is None else report.suspected_source
        n_flagged = int(result.is_poison[result.segments == report.label].sum())
        verdict = "near miss" if report.label in near else report.verdict
        near_class = " row-near-miss" if report.label in near else ""
        rows.append(
            f'<tr class="row-{_e(report.verdict)}{near_class}">'
            f'<td><a href="#class-{_e(report.label)}">{_e(report.label)}</a></td>'
            f'<td class="num">{_e(report.n_samples)}</td>'
            f'<td class="num">{n_flagged}</td><td>{_e(shares)}</td>'
            f'<td class="num">{_e(_num(report.size_ratio))}</td>'
            f'<td class="num">{_e(_num(report.exre_score, 2))}</td>'
            f'<td><span class="badge badge-{_e(verdict.replace(" ", "-"))}">{_e(verdict)}</span>'
            "</td>"
            f"<td>{_e(source)}</td></tr>"
        )
    return ('<section id="classes"><h2>Per-class results</h2><table>' + header + "".join(rows)
            + "</table></section>")


#: The class report's scores a card shows, in order, with their names in words.
_SCORE_NAMES = (
    ("size_ratio", "candidate share of the class"),
    ("candidate_k", "candidate found at k"),
    ("stability", "candidate stability"),
    ("exre", "l/p (left out: own label / most common other class)"),
    ("source_share", "share of the candidate sent to one class"),
    ("confusion", "natural confusion of the two classes"),
    ("confidence", "mean confidence sent there"),
    ("typicality", "median typicality there"),
    ("overlap", "held out: share of the source's tail sent to the class"),
    ("overlap_median", "... the other classes' tails (median)"),
    ("tail_flips", "tail rows sent away confidently as typical rows"),
    ("tail_cohesive", "... of them cohesive"),
    ("tail_clump", "tail clump (rows sent away amid cohesive flips)"),
    ("silhouette", "silhouette of the clustering"),
)


def _class_name(names: Sequence[Any] | None, label: Any) -> str:
    """`` (<original label>)`` of a mapped class, escaped; ``""`` without a mapping."""
    if names is None or label is None or not 0 <= int(label) < len(names):
        return ""
    return f" ({_e(names[int(label)])})"


def _class_card(result: DetectionResult, report: ClassReport, near: Sequence[str],
                samples: _Samples, pngs: dict[str, bytes], *, plotted: bool,
                names: Sequence[Any] | None = None) -> str:
    """One class: verdict, flagged count, the evidence against its cuts, and the rows.

    ``names``: the original label of each class when the dataset's labels were mapped
    (``scan.json``'s ``label_names``), shown beside the class numbers.
    """
    label = int(report.label)
    rows = np.flatnonzero(result.segments == label)
    flagged = rows[result.is_poison[rows]]
    kept = rows[~result.is_poison[rows]]
    source = "" if report.suspected_source is None else (
        f"; suspected source {_e(report.suspected_source)}"
        f"{_class_name(names, report.suspected_source)}")
    kind = f"card-{_e(report.verdict)}" + (" card-near-miss" if near else "")
    parts = [
        f'<article class="card {kind}" id="class-{label}">',
        f'<h3>Class {_e(label)}{_class_name(names, label)} '
        f'<span class="badge badge-{_e(report.verdict)}">'
        f'{_e(report.verdict)}</span> <span class="count">{len(flagged)} of {len(rows)} '
        f"flagged</span>{source}</h3>",
    ]
    if near:
        parts.append('<p class="near-miss-note"><strong>Near miss:</strong> '
                     + "; ".join(_e(why) for why in near) + ".</p>")
    parts.append(_scores_table(report))
    judged = clauses(report.reason)
    items = "".join(
        f'<li class="clause-{"near" if c.near_miss else (c.verdict or "note")}">{_e(c.text)}</li>'
        for c in judged)
    parts.append(f"<details{' open' if report.verdict != 'clean' or near else ''}>"
                 f"<summary>How it was decided ({len(judged)} "
                 f"{'piece' if len(judged) == 1 else 'pieces'} of evidence)</summary>"
                 f'<ol class="clauses">{items}</ol></details>')
    if plotted:
        parts += _class_plots(result, report, rows, flagged, kept, samples, pngs)
    parts.append("</article>")
    return "\n".join(parts)


def _overlap_cut(report: ClassReport) -> float | None:
    """The held-out overlap's cut for the class: its threshold or 6.5x the other tails' median."""
    threshold, median = report.thresholds.get("overlap"), report.scores.get("overlap_median")
    if threshold is None:
        return None
    if median is None or not np.isfinite(median):
        return threshold
    return max(threshold, HELD_OUT_OVERLAP_RATIO * median)


def _scores_table(report: ClassReport) -> str:
    """The class's numbers (from its most poison-like candidate) and the cuts it was judged by."""
    cuts = {"exre": ("<", report.thresholds.get("exre")),
            "source_share": (">=", report.thresholds.get("source_share")),
            "confusion": ("<", report.thresholds.get("confusion")),
            "overlap": ("<", _overlap_cut(report))}
    body = []
    for key, name in _SCORE_NAMES:
        value = report.scores.get(key)
        if value is None or not np.isfinite(value):
            continue
        shown = (f"{value:.0f}" if key.startswith("tail_") or key == "candidate_k"
                 else f"{value:.3f}")
        op, cut = cuts.get(key, (None, None))
        rule = f"poison-like when {op} {cut:g}" if cut is not None else ""
        body.append(f"<tr><th>{_e(name)}</th><td class=\"num\">{_e(shown)}</td>"
                    f"<td>{_e(rule)}</td></tr>")
    if not body:
        return ""
    return ('<table class="scores"><tr><th>evidence</th><th>value</th><th>cut</th></tr>'
            + "".join(body) + "</table>")


def _class_plots(result: DetectionResult, report: ClassReport, rows: np.ndarray,
                 flagged: np.ndarray, kept: np.ndarray, samples: _Samples,
                 pngs: dict[str, bytes]) -> list[str]:
    """Projections (by final flag, by cluster) and the flagged and kept rows of one class."""
    label = int(report.label)
    parts = []
    if samples.activations is not None and len(rows) >= 2:
        if len(flagged):
            name = f"class_{label}_flags.png"
            pngs[name] = plots.flag_projection(
                samples.activations[rows], result.is_poison[rows], label=label,
                random_state=samples.random_state)
            parts.append(_img(pngs, name, f"3-D projection of class {label} by flag",
                              f"Class {label}: last-hidden-layer activations, PCA to 3, "
                              "coloured by the final flag"))
        name = f"class_{label}_projection.png"
        pngs[name] = plots.class_projection(
            samples.activations[rows], result.clusters[rows], label=label,
            suspicious_cluster=report.suspicious_cluster, random_state=samples.random_state,
        )
        parts.append(_img(pngs, name, f"3-D projection of class {label}",
                          f"Class {label}: the same projection coloured by cluster (the "
                          "clustering the candidates came from)"))
    # The most suspicious first (stable: ties keep row order).
    order = np.argsort(-result.poison_score[flagged], kind="stable")
    shown_flagged = flagged[order][:samples.max_samples]
    shown_kept = plots.seeded_sample(kept, samples.max_samples, samples.random_state)
    if samples.images is not None:
        for kind, chosen, total, caption in (
            ("flagged", shown_flagged, len(flagged), "Flagged"),
            ("kept", shown_kept, len(kept), "Kept (random sample)"),
        ):
            if len(chosen) == 0 or (kind == "kept" and not len(flagged)):
                continue
            name = f"class_{label}_{kind}.png"
            pngs[name] = plots.sprite_sheet(samples.images[chosen])
            parts.append(_img(pngs, name, f"{kind} samples of class {label}",
                              f"{caption}: {len(chosen)} of {total}"))
    if len(flagged):
        parts.append(_shared_evidence(result, label, flagged, samples, pngs))
    if samples.texts is not None and len(flagged):
        parts.append(_text_table(result, samples.texts, shown_flagged,
                                 f"Flagged texts ({len(shown_flagged)} of {len(flagged)})"))
        kept_texts = plots.seeded_sample(kept, min(10, samples.max_samples),
                                         samples.random_state)
        parts.append(_text_table(result, samples.texts, kept_texts,
                                 f"Kept texts, random sample ({len(kept_texts)} of "
                                 f"{len(kept)})"))
    return parts


def _shared_evidence(result: DetectionResult, label: int, flagged: np.ndarray,
                     samples: _Samples, pngs: dict[str, bytes]) -> str:
    """What the class's flagged rows share once their sources are taken away (for a reviewer).

    Images: the mean difference map with its strength, concentration and fine grain; texts:
    the over-represented tokens (:mod:`acgate.report.shared`). Empty without images or texts.
    """
    kept = ~result.is_poison
    sources = result.suspected_source[flagged]
    if samples.images is not None:
        difference = shared.mean_difference(samples.images, result.labels, kept, flagged,
                                            sources, label)
        if difference is None:
            return ""
        name = f"class_{label}_shared.png"
        pngs[name] = plots.difference_map(
            difference, title=f"Class {label}: flagged minus their sources")
        peak = shared.strength(difference)
        held, fine = shared.concentration(difference), shared.fine_grain(difference)
        scale = ("grey the same, a tint the channels that changed" if len(difference) == 3
                 else "red brighter, blue darker")  # as plots.difference_map draws it
        return _img(pngs, name, f"mean difference of the flagged images of class {label}",
                    f"What the {len(flagged)} flagged images share: their mean minus, row by "
                    f"row, the mean kept image of the row's suspected source ({scale}). "
                    "Poison rows are samples of their source wearing a trigger, "
                    "so only the trigger is left: a stamped patch as a strong spot, a blended "
                    "or sinusoidal pattern as a faint texture, a warp as almost nothing; a "
                    "natural group of the class leaves a strong, smooth outline of its shape "
                    f"against the source's. Strongest pixel {peak:.2f} (images in [0, 1]); the "
                    f"strongest {shared.TOP_PIXEL_SHARE:.0%} of the pixels hold {held:.0%} of "
                    f"the difference (spread evenly: {shared.TOP_PIXEL_SHARE:.0%}); "
                    f"{fine:.0%} of it is fine grain, what a 3x3 blur removes (on images of a "
                    "few pixels a side, most of any difference is). What each looks like on "
                    "poisoned and clean data: acgate's bench/RESULTS.md, section \"shared\". "
                    "The gate acts on the verdict, not on these.")
    if samples.texts is None:
        return ""
    tokens = shared.overrepresented_tokens(samples.texts, result.labels, kept, flagged,
                                           sources, label)
    if not tokens:
        return (f'<p class="shared">No token is in at least '
                f"{shared.MIN_TOKEN_SUPPORT:.0%} of the {len(flagged)} flagged texts and "
                f"{shared.MIN_TOKEN_LIFT:.0%} more of them than of the kept texts of their "
                "suspected sources: the flagged texts share no word a signature would be.</p>")
    body = "".join(f'<tr><td class="text">{_e(t.token)}</td>'
                   f'<td class="num">{t.flagged_share:.0%}</td>'
                   f'<td class="num">{t.reference_share:.0%}</td></tr>' for t in tokens)
    return (f'<table class="shared"><caption>Tokens over-represented among the '
            f"{len(flagged)} flagged texts (a signature the rows share is in nearly all of "
            "them and almost none of their sources' kept texts)</caption><tr><th>token</th>"
            "<th>flagged texts</th><th>kept texts of their suspected sources</th></tr>"
            + body + "</table>")


def _validation_section(validations: Mapping[str, Mapping[str, Any]]) -> str:
    """The Great Expectations suites: passed or failed, with every expectation on request."""
    if not validations:
        return ""
    parts = ['<section id="validation"><h2>Data validation (Great Expectations)</h2>'
             "<table><tr><th>suite</th><th>result</th><th>rows</th><th>expectations</th>"
             "<th>failed</th></tr>"]
    for stage, report in validations.items():
        ok = bool(report.get("success"))
        parts.append(f'<tr class="row-{"clean" if ok else "poisoned"}"><td>{_e(stage)}</td>'
                     f"<td>{'passed' if ok else 'FAILED'}</td>"
                     f'<td class="num">{_e(report.get("n_rows", "–"))}</td>'
                     f'<td class="num">{_e(report.get("n_expectations", "–"))}</td>'
                     f'<td class="num">{_e(report.get("n_failed", "–"))}</td></tr>')
    parts.append("</table>")
    for stage, report in validations.items():
        results = report.get("results") or []
        if not results:
            continue
        body = "".join(
            f'<tr class="row-{"clean" if r.get("success") else "poisoned"}">'
            f"<td>{_e(r.get('expectation'))}</td><td>{_e(r.get('column') or '–')}</td>"
            f"<td>{'ok' if r.get('success') else 'failed'}</td>"
            f"<td>{_e(r.get('observed') if r.get('observed') is not None else '–')}</td></tr>"
            for r in results)
        parts.append(f"<details><summary>{_e(stage)}: {len(results)} expectations</summary>"
                     "<table><tr><th>expectation</th><th>column</th><th>result</th>"
                     f"<th>observed</th></tr>{body}</table></details>")
    parts.append("</section>")
    return "".join(parts)


def _text_table(result: DetectionResult, texts: list[str], rows: np.ndarray, caption: str) -> str:
    if len(rows) == 0:
        return f"<p>{_e(caption)}: none.</p>"
    body = []
    for row in rows:
        text = texts[row]
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS] + "…"
        source = result.suspected_source[row]
        body.append(
            f'<tr><td class="num">{_e(result.sample_ids[row])}</td>'
            f'<td class="num">{_e(result.labels[row])}</td>'
            f'<td class="num">{_e(_num(float(result.poison_score[row]), 2))}</td>'
            f"<td>{_e('–' if source < 0 else source)}</td>"
            f'<td class="text">{_e(text)}</td></tr>'
        )
    return (f"<table><caption>{_e(caption)}</caption><tr><th>sample</th><th>label</th>"
            "<th>score</th><th>suspected source</th><th>text</th></tr>" + "".join(body)
            + "</table>")


def _run_info(result: DetectionResult) -> str:
    def table(mapping: Mapping[str, Any]) -> str:
        if not mapping:
            return "<p>–</p>"
        return ("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                                    for k, v in mapping.items()) + "</table>")

    timings = {k: f"{v:.2f} s" if isinstance(v, Real) else v
               for k, v in result.info.timings.items()}
    return ('<section id="run"><h2>Run</h2><h3>Parameters</h3>' + table(result.info.params)
            + "<h3>Versions</h3>" + table(result.info.versions)
            + "<h3>Timings</h3>" + table(timings) + "</section>")


def _write_atomic(path: Path, data: bytes) -> None:
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(data)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_repair_report(report: Mapping[str, Any], out_path: str | Path) -> Path:
    """A small self-contained HTML page of a repair: counts, epochs, and the backdoor metrics.

    Every value is escaped. Written atomically.

    Args:
        report: The content of ``repair.json`` (see :func:`acgate.repair.run_repair`).
        out_path: The HTML file to write.

    Returns:
        The written path.
    """
    out_path = Path(out_path)
    rows = "".join(
        f"<tr><th>{_e(name)}</th><td>{_e(report.get(name))}</td></tr>"
        for name in ("strategy", "n_relabelled", "n_removed", "n_cleaned", "epochs",
                     "converged", "seconds")
    )
    backdoor = report.get("backdoor") or {}
    if backdoor.get("measured"):
        metric_rows = "".join(
            f"<tr><th>{_e(when)}</th>"
            f"<td>{_e(round(float(backdoor[when]['clean_accuracy']), 4))}</td>"
            f"<td>{_e(round(float(backdoor[when]['attack_success_rate']), 4))}</td></tr>"
            for when in ("before", "after") if when in backdoor
        )
        metrics = ("<h2>Backdoor before and after</h2><table><tr><th></th><th>clean accuracy"
                   "</th><th>attack success rate</th></tr>" + metric_rows + "</table>")
    else:
        metrics = f"<p>Backdoor metrics not measured: {_e(backdoor.get('reason', ''))}</p>"
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\"><title>acgate repair</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}table{border-collapse:collapse}</style></head><body>"
        f"<h1>acgate repair: {_e(report.get('strategy'))}</h1><table>{rows}</table>"
        f"{metrics}</body></html>\n"
    )
    descriptor, temp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(page)
        os.replace(temp_name, out_path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return out_path
