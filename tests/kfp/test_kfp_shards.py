"""Sharded extraction (issue 22): the components on real files, 1 shard against 4.

The shard folders, the collection and the per-class reads are the pipeline's (``pipeline.py``:
``plan_shards`` -> ``extract_activations`` per shard -> ``collect_activations`` -> ``cluster``
per class); the real kfp run with ``n_shards=4`` is in ``test_kfp_local_run.py``.
"""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from kfp import dsl

from components.cluster.component import cluster
from components.collect_activations.component import collect_activations
from components.extract_activations.component import extract_activations
from components.plan_shards.component import plan_shards
from components.train_proxy.component import train_proxy


def _artifact(kind, folder, name):
    return kind(name=name, uri=str(folder / name))


def _extract(folder, dataset, model, n_shards, **settings):
    """plan -> extract per shard -> collect, as the pipeline runs them; the collected folder."""
    shards = plan_shards.python_func(dataset=dataset, n_shards=n_shards)
    parts = []
    for shard in shards:
        out = _artifact(dsl.Dataset, folder, f"shard-{shard}")
        extract_activations.python_func(dataset=dataset, model=model, activations=out,
                                        shard=shard, n_shards=n_shards, **settings)
        parts.append(out)
    collected = _artifact(dsl.Dataset, folder, "activations")
    classes = collect_activations.python_func(shards=parts[::-1], dataset=dataset,
                                              activations=collected)
    return shards, classes, collected


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_parquet):
    """The proxy on BadNets-poisoned digits (3 epochs: what matters here is equality)."""
    folder = tmp_path_factory.mktemp("shards")
    dataset, model, metrics = (_artifact(dsl.Dataset, folder, "dataset"),
                               _artifact(dsl.Model, folder, "model"),
                               _artifact(dsl.Metrics, folder, "metrics"))
    train_proxy.python_func(dataset_uri=str(digits_parquet(0.33, 0)), dataset=dataset,
                            model=model, metrics=metrics, seed=0, epochs=3)
    return folder, dataset, model


@pytest.mark.parametrize("segment_by", ["label", "prediction"])
def test_four_shards_give_the_activations_and_clusterings_of_one(trained, segment_by):
    from acgate.io.activations import read_activations
    from acgate.io.shards import read_activation_dataset, read_manifest

    folder, dataset, model = trained
    one = _extract(folder / f"one-{segment_by}", dataset, model, 1, segment_by=segment_by)
    four = _extract(folder / f"four-{segment_by}", dataset, model, 4, segment_by=segment_by)
    assert one[0] == [0] and four[0] == [0, 1, 2, 3]  # 2,683 rows: 3 shards of 768, one of 379
    assert one[1] == four[1] == list(range(10))
    whole, sharded = read_activations(one[2].path), read_activations(four[2].path)
    np.testing.assert_array_equal(sharded.indices, np.arange(2683))
    np.testing.assert_array_equal(whole.indices, sharded.indices)
    np.testing.assert_array_equal(whole.labels, sharded.labels)
    np.testing.assert_array_equal(whole.predictions, sharded.predictions)
    # Whole extraction batches per shard: bit for bit the activations of one pass.
    np.testing.assert_array_equal(whole.activations, sharded.activations)
    manifest = read_manifest(four[2].path)
    assert manifest["shards"] == [0, 1, 2, 3] and manifest["complete"]
    assert manifest["segment_by"] == segment_by
    segments = sharded.predictions if segment_by == "prediction" else sharded.labels
    for label in (0, 7):
        part = read_activation_dataset(four[2].path, label)
        np.testing.assert_array_equal(part.indices, np.flatnonzero(segments == label))
        outputs = []
        for name, collected in (("one", one[2]), ("four", four[2])):
            out = _artifact(dsl.Dataset, folder, f"clustering-{segment_by}-{name}-{label}")
            cluster.python_func(activations=collected, label=label, clustering=out, seed=0,
                                segment_by=segment_by)
            outputs.append(pq.read_table(out.path))
        assert outputs[0].equals(outputs[1])
        np.testing.assert_array_equal(outputs[1].column("position").to_numpy(),
                                      np.flatnonzero(segments == label))


def test_collection_refuses_shards_that_do_not_cover_the_rows(trained, tmp_path):
    from acgate.stages import StageInputError

    folder, dataset, model = trained
    parts = []
    for shard in (0, 1, 1):
        out = _artifact(dsl.Dataset, tmp_path, f"shard-{len(parts)}")
        extract_activations.python_func(dataset=dataset, model=model, activations=out,
                                        shard=shard, n_shards=4)
        parts.append(out)
    collected = _artifact(dsl.Dataset, tmp_path, "activations")
    with pytest.raises(StageInputError, match="shard 1 appears twice"):
        collect_activations.python_func(shards=parts, dataset=dataset, activations=collected)
    with pytest.raises(StageInputError, match=r"1915 row\(s\) in no shard \(first: 768\)"):
        collect_activations.python_func(shards=parts[:1], dataset=dataset,
                                        activations=collected)
    assert not (tmp_path / "activations").exists()  # nothing half-written
    # One shard of four is not the dataset: a cluster task refuses it.
    with pytest.raises(StageInputError, match=r"one shard \(rows 0\.\.767\)"):
        cluster.python_func(activations=parts[0], label=0,
                            clustering=_artifact(dsl.Dataset, tmp_path, "c"), seed=0)
    with pytest.raises(StageInputError, match="shard 4 is not one of the 4 shards"):
        extract_activations.python_func(dataset=dataset, model=model,
                                        activations=_artifact(dsl.Dataset, tmp_path, "x"),
                                        shard=4, n_shards=4)
    with pytest.raises(StageInputError, match="n_shards must be a whole number >= 1, got 0"):
        plan_shards.python_func(dataset=dataset, n_shards=0)


def test_shard_bounds_are_whole_batches_and_never_empty():
    from acgate.io.shards import shard_bounds

    assert shard_bounds(1797, 4) == [(0, 512), (512, 1024), (1024, 1536), (1536, 1797)]
    assert shard_bounds(1797, 1) == [(0, 1797)]
    assert shard_bounds(300, 8) == [(0, 256), (256, 300)]  # fewer shards than asked for
    assert shard_bounds(10_000_000, 8)[-1] == (7 * 1_250_048, 10_000_000)  # 4,883 batches a shard
    bounds = shard_bounds(10_000_000, 8)
    assert len(bounds) == 8 and all(first % 256 == 0 for first, _ in bounds)
    with pytest.raises(ValueError, match="n_shards must be an integer >= 1, got 0"):
        shard_bounds(10, 0)


def test_an_activation_folder_acgate_did_not_write_is_not_replaced(trained, tmp_path):
    folder, dataset, model = trained
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not an activation dataset"):
        extract_activations.python_func(dataset=dataset, model=model,
                                        activations=dsl.Dataset(name="a", uri=str(target)),
                                        shard=0, n_shards=4)
    assert (target / "notes.txt").read_text() == "keep me"
    assert json.loads  # the manifest format is JSON (read_manifest)


def test_pipeline_run_refuses_a_shard_count_below_one(capsys, tmp_path):
    import pipeline

    with pytest.raises(SystemExit) as exited:
        pipeline.main(["run", "--dataset", str(tmp_path / "data.parquet"), "--n-shards", "0",
                       "--root", str(tmp_path / "root")])
    assert exited.value.code == 2
    assert "--n-shards must be a whole number >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_a_folder_with_a_users_dataset_json_is_never_replaced(tmp_path):
    """``dataset.json`` is a common name: only a valid manifest with nothing but its parts
    counts as an activation dataset acgate may replace."""
    from acgate.io.activations import ActivationTable
    from acgate.io.shards import MANIFEST, write_activation_shard

    table = ActivationTable(indices=np.arange(4), labels=np.array([0, 0, 1, 1]),
                            predictions=None, activations=np.ones((4, 3), np.float32))
    target = tmp_path / "mine"
    target.mkdir()
    (target / MANIFEST).write_text('{"name": "my dataset"}')
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not an activation dataset acgate wrote"):
        write_activation_shard(table, target, shard=0, rows=(0, 4), n_dataset_rows=4)
    assert (target / "precious.txt").read_text() == "keep me"
    assert json.loads((target / MANIFEST).read_text()) == {"name": "my dataset"}
    # A real activation dataset with a stray file of the user's in it is refused too ...
    written = tmp_path / "acts"
    write_activation_shard(table, written, shard=0, rows=(0, 4), n_dataset_rows=4)
    (written / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not an activation dataset acgate wrote"):
        write_activation_shard(table, written, shard=0, rows=(0, 4), n_dataset_rows=4)
    # ... and one of acgate's own is replaced.
    (written / "notes.txt").unlink()
    assert write_activation_shard(table, written, shard=0, rows=(0, 4),
                                  n_dataset_rows=4)["complete"] is True


def test_a_greyscale_shard_of_a_colour_dataset_decodes_to_the_proxys_channels(tmp_path):
    """The channel rule (any colour image makes the dataset RGB) is the whole file's, so a
    shard holding only greyscale PNGs must still decode to three channels."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from acgate.io.datasets import read_image_dataset

    rng = np.random.default_rng(0)

    def png(mode):
        pixels = rng.integers(0, 256, (8, 8) if mode == "L" else (8, 8, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode).save(buffer, format="PNG")
        return buffer.getvalue()

    blobs = [png("L") for _ in range(300)] + [png("RGB") for _ in range(300)]
    path = tmp_path / "mixed.parquet"
    pq.write_table(pa.table({"label": np.arange(600) % 2, "image": blobs}), path)
    whole = read_image_dataset(path)
    assert whole.images.shape[1:] == (3, 8, 8)
    assert read_image_dataset(path, rows=(0, 256)).images.shape[1:] == (1, 8, 8)  # its own
    shard = read_image_dataset(path, rows=(0, 256), channels=3)
    np.testing.assert_array_equal(shard.images, whole.images[:256])


def test_a_class_above_the_cap_is_clustered_from_a_sample_and_analyzed(trained, tmp_path):
    """Bounded memory per class: two streamed passes over the class's parts (a sample, then
    every row assigned); analyze takes the result like any other clustering."""
    from acgate.io.activations import read_activations
    from acgate.stages import analyze_stage, cluster_stage, pipeline_config

    folder, dataset, model = trained
    _, classes, collected = _extract(tmp_path, dataset, model, 4)
    table = read_activations(collected.path)
    config = pipeline_config(seed=0, epochs=3)
    paths = []
    for label in classes:
        path = tmp_path / f"clustering-{label}.parquet"
        clustering = cluster_stage(collected.path, label, path, config, max_rows=120)
        np.testing.assert_array_equal(clustering.positions, np.flatnonzero(table.labels == label))
        assert "seeded sample of 120 of its" in clustering.warnings[-1]
        assert len(clustering.clusters) == len(clustering.positions) == len(clustering.reduced)
        paths.append(path)
    whole = cluster_stage(collected.path, 0, tmp_path / "whole-0.parquet", config)
    assert not any("seeded sample" in note for note in whole.warnings)  # under the cap
    outcome = analyze_stage(collected.path, dataset.path, paths, tmp_path / "out", config,
                            report=False)
    assert outcome.result.verdict in ("clean", "poisoned", "incomplete")
    assert len(outcome.result.is_poison) == len(table.labels)


def test_acgate_detect_of_a_folder_judges_one_class_at_a_time(trained, tmp_path):
    """``acgate detect`` of the collected folder (1 or 4 shards) writes what it writes for one
    activations file of the same rows; classes above the cap (a sample clustered, the class
    redrawn from streamed principal coordinates) flag the same rows for 1 and 4 shards."""
    import pyarrow.parquet as pq

    from acgate.cli import main
    from acgate.io.activations import read_activations, write_activations
    from acgate.io.shards import is_activation_dataset, read_manifest
    from acgate.scan import ScanConfig
    from acgate.stages import detect_dataset_stage, detects_by_class

    folder, dataset, model = trained
    one = _extract(tmp_path / "one", dataset, model, 1)[2].path
    four = _extract(tmp_path / "four", dataset, model, 4)[2].path
    file = tmp_path / "activations.parquet"
    write_activations(file, read_activations(four))
    codes = {name: main(["detect", str(source), "--out", str(tmp_path / f"out-{name}"), *flags])
             for name, source, flags in (("file", file, ["--no-report"]),
                                         ("one", one, ["--no-report"]), ("four", four, []))}
    assert codes["file"] == codes["one"] == codes["four"]
    samples = {name: pq.read_table(tmp_path / f"out-{name}" / "samples.parquet")
               for name in codes}
    assert samples["file"].equals(samples["one"]) and samples["file"].equals(samples["four"])
    assert pq.read_table(tmp_path / "out-file" / "classes.parquet").column("reason").equals(
        pq.read_table(tmp_path / "out-four" / "classes.parquet").column("reason"))
    assert samples["four"].column("is_poison").to_numpy().any()  # 33% BadNets: flags to compare
    assert (tmp_path / "out-four" / "report.html").is_file()  # the report, without the 3-D plots

    sampled = {name: detect_dataset_stage(path, ScanConfig(), max_rows=120)
               for name, path in (("one", one), ("four", four))}
    assert sampled["one"].sampled == sampled["four"].sampled == tuple(range(10))
    np.testing.assert_array_equal(sampled["one"].result.is_poison,
                                  sampled["four"].result.is_poison)
    np.testing.assert_allclose(sampled["one"].result.poison_score,
                               sampled["four"].result.poison_score)
    flagged = samples["file"].column("is_poison").to_numpy()
    both = (sampled["four"].result.is_poison & flagged).sum()
    assert both / max(sampled["four"].result.is_poison.sum(), flagged.sum()) > 0.8
    assert any("seeded sample of 120" in note for note in sampled["four"].result.info.warnings)
    with pytest.raises(ValueError, match="one class at a time"):
        detect_dataset_stage(four, ScanConfig(analysis="distance"))
    # Analyses that need every row, a lone shard, or another split: the folder is read whole.
    shard = tmp_path / "four" / "shard-1"
    assert is_activation_dataset(shard) and not read_manifest(shard)["complete"]
    assert detects_by_class(four, ScanConfig()) and not detects_by_class(shard, ScanConfig())
    assert not detects_by_class(four, ScanConfig(analysis="spectral"))
    assert not detects_by_class(four, ScanConfig(segment_by="prediction"))
    for name, source in (("file-spectral", file), ("four-spectral", four)):
        main(["detect", str(source), "--out", str(tmp_path / name), "--no-report",
              "--analysis", "spectral"])
    assert pq.read_table(tmp_path / "file-spectral" / "samples.parquet").equals(
        pq.read_table(tmp_path / "four-spectral" / "samples.parquet"))
