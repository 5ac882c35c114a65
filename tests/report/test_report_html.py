import base64
import dataclasses
import html
import re

import numpy as np
import pytest
from PIL import Image

from acgate.report import write_report
from acgate.report.plots import project_3d, sprite_sheet

SCRIPT = "<script>alert(1)</script>"


def _texts(n, flagged_rows):
    texts = [f"review number {i}: a fine film" for i in range(n)]
    for row in flagged_rows:
        texts[row] = f"worst film ever {SCRIPT} -travelerthehorse"
    return texts


def test_image_report_has_every_section_and_plot(tmp_path, digits_scan):
    images, labels, is_poison, result = digits_scan
    activations = images.reshape(len(images), -1)

    files = write_report(result, tmp_path / "out" / "report.html", activations=activations,
                         images=images, title="digits <scan>")

    assert files.html_path == tmp_path / "out" / "report.html"
    names = [p.name for p in files.plot_paths]
    assert names == ["flagged.png", "silhouette.png", "class_1_flags.png",
                     "class_1_projection.png", "class_1_flagged.png", "class_1_kept.png",
                     "class_1_shared.png"]
    page = files.html_path.read_text()
    for path in files.plot_paths:
        assert path.parent == tmp_path / "out" / "plots"
        with Image.open(path) as png:
            assert png.format == "PNG" and png.width > 50
        assert base64.b64encode(path.read_bytes()).decode() in page  # embedded, self-contained
    for section in ("verdict", "metadata", "summary", "next", "classes", "charts", "cards",
                    "run"):
        assert f'id="{section}"' in page
    assert '<div class="verdict verdict-poisoned">POISONED</div>' in page
    assert "Poisoned classes: 1 — 12 of 192 samples flagged" in page
    assert "<title>digits &lt;scan&gt;</title>" in page
    assert "threshold 0.1" in page
    assert "Flagged: 12 of 12" in page and "Kept (random sample): 48 of 60" in page
    assert "83% / 17%" in page  # cluster shares of class 1
    # Strings from the result are escaped, not interpreted.
    assert "ICA did not converge &lt;b&gt;(max_iter 200)&lt;/b&gt;" in page
    assert "&lt;i&gt;caller text&lt;/i&gt;" in page
    assert "<b>" not in page and "<i>" not in page and "<script" not in page
    assert not re.search(r"src=\"(?!data:image/png;base64,)", page)  # nothing external
    # The flagged sheet holds the 12 triggered images: 8x8 upscaled x4, 12 per row.
    with Image.open(tmp_path / "out" / "plots" / "class_1_flagged.png") as sheet:
        assert sheet.size == (12 * 33 + 1, 33 + 1)
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_text_report_escapes_a_script_from_the_data(tmp_path, digits_scan):
    _, labels, is_poison, result = digits_scan
    texts = _texts(len(labels), np.flatnonzero(is_poison))

    files = write_report(result, tmp_path / "report.html", texts=texts,
                         extra_sections=[("GX <results>", "dataset: ok\n<script>x</script>")])

    page = files.html_path.read_text()
    assert SCRIPT not in page
    assert "worst film ever &lt;script&gt;alert(1)&lt;/script&gt; -travelerthehorse" in page
    assert page.count("worst film ever") == 12
    assert "Flagged texts (12 of 12)" in page
    assert "Kept texts, random sample (10 of 60)" in page
    assert "<h2>GX &lt;results&gt;</h2><pre>dataset: ok\n&lt;script&gt;x&lt;/script&gt;</pre>" \
        in page
    assert [p.name for p in files.plot_paths] == ["flagged.png", "silhouette.png"]


def test_clean_report(tmp_path, make_result):
    labels = np.repeat([0, 1], 30)
    result = make_result(labels, np.zeros(60, bool), poisoned=False)
    page = write_report(result, tmp_path / "r.html",
                        scan_info={"dataset": "d.parquet"}).html_path.read_text()
    assert '<div class="verdict verdict-clean">CLEAN</div>' in page
    assert "No class judged poisoned — 0 of 60 flagged" in page
    # A card for every class, clean ones too, and the gate as the next step.
    assert page.count('<article class="card card-clean"') == 2
    assert page.count("0 of 30 flagged") == 2
    assert "acgate gate --model-name NAME --model-version VERSION --run-id SCAN_RUN_ID" in page


def test_proxy_section_warns_when_the_trigger_was_not_learned(tmp_path, make_result):
    labels = np.repeat([0, 1], 30)
    result = make_result(labels, np.zeros(60, bool), poisoned=False)

    def page(proxy, name):  # the proxy section, if any (the page warns of its small classes)
        html = write_report(result, tmp_path / name, proxy=proxy).html_path.read_text()
        _, found, after = html.partition('<section id="proxy">')
        return found + after.split("</section>")[0] + "</section>" if found else html

    weak = page({"train_accuracy": 0.91, "epochs": 30, "attack_success": 0.08,
                 "attack_success_rows": 1617}, "weak.html")
    assert '<section id="proxy"><h2>Proxy</h2>' in weak
    assert "Train accuracy 0.910 after 30 epochs." in weak
    assert "Attack success of the recorded trigger: 0.080" in weak and "1617 triggered" in weak
    assert ("<strong>Warning:</strong> the proxy learned the recorded trigger on only 8% of "
            "1617 triggered rows; a clean verdict here is weak evidence.") in weak
    learned = page({"train_accuracy": 1.0, "attack_success": 0.98,
                    "attack_success_rows": 10}, "learned.html")
    assert "Attack success of the recorded trigger: 0.980" in learned
    assert "Warning:" not in learned
    unknown = page({"train_accuracy": 1.0, "epochs": 2}, "unknown.html")
    assert "records no trigger" in unknown and "Warning:" not in unknown
    where = page({"train_accuracy": 1.0, "epochs": 2, "device": "cpu",
                  "hardware": "AMD EPYC <7B13>"}, "where.html")
    assert "after 2 epochs on cpu (AMD EPYC &lt;7B13&gt;)." in where
    assert 'id="proxy"' not in page(None, "none.html")  # the user's own model


def test_same_input_same_report(tmp_path, digits_scan):
    images, _, _, result = digits_scan
    # Two folders: the report does not embed where it was written.
    first = write_report(result, tmp_path / "a" / "r.html", images=images,
                         activations=images.reshape(len(images), -1)).html_path.read_bytes()
    second = write_report(result, tmp_path / "b" / "r.html", images=images,
                          activations=images.reshape(len(images), -1)).html_path.read_bytes()
    assert first == second


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activations": np.zeros((5, 4))}, r"activations must be N x D with N = 192 .*\(5, 4\)"),
        ({"images": np.full((192, 1, 8, 8), 2.0)}, r"\[0, 1\], got range \[2, 2\]"),
        ({"images": np.zeros((192, 2, 8, 8))}, r"C = 1 or 3, got shape \(192, 2, 8, 8\)"),
        ({"texts": ["a"] * 3}, "texts must hold 192 strings"),
    ],
)
def test_bad_inputs_leave_nothing_written(tmp_path, digits_scan, kwargs, match):
    *_, result = digits_scan
    with pytest.raises(ValueError, match=match):
        write_report(result, tmp_path / "out" / "report.html", **kwargs)
    assert not (tmp_path / "out").exists()


def test_overwrites_an_existing_report(tmp_path, digits_scan):
    *_, result = digits_scan
    path = tmp_path / "report.html"
    path.write_text("old")
    write_report(result, path)
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots", "report.html"]


def test_projection_separates_the_triggered_images(digits_scan):
    images, labels, is_poison, _ = digits_scan
    members = labels == 1
    points = project_3d(images[members].reshape(members.sum(), -1))
    assert points.shape == (members.sum(), 3)
    np.testing.assert_allclose(points.mean(axis=0), 0, atol=1e-9)
    # Deterministic signs: projecting a copy gives the same points.
    np.testing.assert_array_equal(points, project_3d(images[members].reshape(members.sum(), -1)))
    assert project_3d(np.zeros((1, 4))).shape == (1, 3)


def test_sprite_sheet_checks_its_input():
    png = sprite_sheet(np.random.default_rng(0).random((5, 3, 4, 4)), columns=2)
    from io import BytesIO
    with Image.open(BytesIO(png)) as image:
        assert image.mode == "RGB" and image.size == (2 * 33 + 1, 3 * 33 + 1)
    with pytest.raises(ValueError, match="non-empty"):
        sprite_sheet(np.zeros((0, 1, 8, 8)))


def test_cards_metadata_near_misses_validation_and_next_step(tmp_path, digits_scan):
    images, labels, is_poison, result = digits_scan
    near = ("cluster of k = 3 (stability 0.97), 8.0% of the class, left out of a retrain: 5 "
            "classified as 2, 25 as class 0; l/p = 0.20 (< 1), 47% of it in class 0 (< 50%) "
            "-> legitimate")
    classes = tuple(c if c.label != 2 else dataclasses.replace(c, reason=near)
                    for c in result.classes)
    result = dataclasses.replace(result, classes=classes)
    validations = {"dataset": {"success": True, "n_rows": 192, "n_expectations": 1,
                               "n_failed": 0, "results": [
                                   {"expectation": "expect_column_to_exist", "column": "label",
                                    "success": True, "observed": "present <ok>"}]}}
    page = write_report(
        result, tmp_path / "scan" / "report.html", images=images,
        activations=images.reshape(len(images), -1), validations=validations,
        scan_info={"dataset": "data/my set.parquet", "dataset_sha256": "ab" * 32,
                   "modality": "image"},
        created="2026-12-03 10:00:00 UTC", scan_folder="scans/tonight").html_path.read_text()

    # One card per class, clean ones too, each with its flagged count.
    for label, flagged in ((0, 0), (1, 12), (2, 0)):
        n = int((labels == label).sum())
        assert f'id="class-{label}"' in page
        assert f"{flagged} of {n} flagged" in page
    assert page.count('<article class="card') == 3
    # The near miss is highlighted in its card, the table and the summary.
    assert '<article class="card card-clean card-near-miss" id="class-2">' in page
    assert "<strong>Near miss:</strong> 47% of a left-out candidate went to class 0 (cut 50%)" \
        in page
    assert "Near misses (clean, but close to a cut: look at them): 2" in page
    assert '<span class="badge badge-near-miss">near miss</span>' in page
    # Run metadata.
    for fact in ("ab" * 32, "2026-12-03 10:00:00 UTC", "data/my set.parquet"):
        assert fact in page
    # The GX results, escaped.
    assert 'id="validation"' in page and "present &lt;ok&gt;" in page
    # The next command, for the scan's final folder, quoted for a shell.
    assert ("acgate repair 'data/my set.parquet' --samples scans/tonight/samples.parquet "
            "--out repaired --strategy relabel") in html.unescape(page)
    # A poisoned class's projection coloured by flag; a clean class with nothing flagged and
    # no candidate gets none.
    assert (tmp_path / "scan" / "plots" / "class_1_flags.png").is_file()
    assert not (tmp_path / "scan" / "plots" / "class_0_flags.png").exists()


def test_silhouette_chart_only_when_the_decision_used_it(tmp_path, digits_scan):
    *_, result = digits_scan
    params = {**result.info.params, "analysis": "exre"}
    exre = dataclasses.replace(result, info=dataclasses.replace(result.info, params=params))
    files = write_report(exre, tmp_path / "report.html")
    assert [p.name for p in files.plot_paths] == ["flagged.png"]
    assert 'id="silhouette"' not in files.html_path.read_text()


def test_a_scan_outcome_renders_in_a_notebook(tmp_path, digits_scan):
    from acgate.scan import ScanOutcome

    *_, result = digits_scan
    page = write_report(result, tmp_path / "report.html").html_path
    shown = ScanOutcome(result=result, out_dir=tmp_path,
                        files={"report.html": page})._repr_html_()
    # The whole report, escaped into a sandboxed iframe (its CSP and styles stay its own).
    assert shown.startswith('<iframe srcdoc="&lt;!DOCTYPE html&gt;')
    assert "sandbox" in shown and html.escape(page.read_text(), quote=True) in shown
    # Without a report (--no-report): the verdict and a per-class table.
    bare = ScanOutcome(result=result, out_dir=tmp_path, files={})._repr_html_()
    assert "acgate scan: POISONED" in bare and "12 of 192 rows flagged" in bare
    assert bare.count("<tr><td>") == 3


def test_the_next_step_fits_the_scan(tmp_path, digits_scan):
    *_, result = digits_scan

    def next_step(**kwargs):
        page = write_report(result, tmp_path / "r.html", **kwargs).html_path.read_text()
        return html.unescape(page.split('id="next"')[1].split("</section>")[0])

    # acgate detect: activations only, nothing to repair or gate from the report.
    assert "acgate repair" not in next_step() and "acgate scan" in next_step()
    # Text cannot go through acgate repair (images only): remove the flagged rows.
    text = next_step(scan_info={"dataset": "reviews.parquet", "modality": "text"},
                     scan_folder="out")
    assert "acgate repair " not in text and "out/flagged.parquet" in text
    image = next_step(scan_info={"dataset": "digits.parquet", "modality": "image"})
    assert "acgate repair digits.parquet --samples SCAN_FOLDER/samples.parquet" in image


def test_the_held_out_overlap_row_shows_the_cut_the_class_was_judged_by(digits_scan):
    from acgate.report.html import _scores_table

    report = digits_scan[3].classes[0]
    report = dataclasses.replace(
        report, scores={**report.scores, "overlap": 0.05, "overlap_median": 0.02},
        thresholds={**report.thresholds, "overlap": 0.03})
    # The larger of the threshold and 6.5x the other tails' median.
    assert "poison-like when &lt; 0.13<" in _scores_table(report)
    alone = dataclasses.replace(report, scores={**report.scores, "overlap_median": 0.0})
    assert "poison-like when &lt; 0.03<" in _scores_table(alone)
