import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acgate.io.activations import (
    ActivationTable,
    ActivationWriter,
    iter_activation_batches,
    read_activations,
    read_row_columns,
    write_activations,
)


def _data(n=50, width=6, seed=0):
    rng = np.random.default_rng(seed)
    indices = rng.permutation(n * 2)[:n]
    labels = rng.integers(0, 3, n)
    predictions = rng.integers(0, 3, n)
    activations = rng.normal(size=(n, width)).astype(np.float32)
    return indices, labels, predictions, activations


def _write_raw(path, columns, metadata=None):
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)
    return path


def _fixed(matrix):
    matrix = np.asarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def test_streamed_batches_round_trip(tmp_path):
    indices, labels, predictions, activations = _data()
    path = tmp_path / "acts.parquet"
    with ActivationWriter(path, 6, metadata={"layer": "fc1"}, row_group_bytes=200) as writer:
        for start in range(0, 50, 8):
            sl = slice(start, start + 8)
            writer.write_batch(indices[sl], labels[sl], predictions[sl], activations[sl])
        assert not path.exists()  # only the temporary file exists while writing
    assert writer.rows_written == 50
    assert pq.ParquetFile(path).metadata.num_row_groups > 1
    table = read_activations(path)
    np.testing.assert_array_equal(table.indices, indices)
    np.testing.assert_array_equal(table.labels, labels)
    np.testing.assert_array_equal(table.predictions, predictions)
    np.testing.assert_array_equal(table.activations, activations)
    assert table.activations.dtype == np.float32 and table.width == 6
    assert dict(table.metadata) == {"layer": "fc1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts.parquet"]


def test_schema_of_written_file(tmp_path):
    path = write_activations(tmp_path / "a.parquet", ActivationTable(*_data(n=3)))
    schema = pq.read_schema(path)
    assert schema.field("index").type == pa.int64()
    assert schema.field("prediction").type == pa.int64()
    assert schema.field("activation").type == pa.list_(pa.float32(), 6)
    assert schema.metadata[b"acgate.schema"] == b"activations/1"
    assert schema.metadata[b"acgate.activation_width"] == b"6"


def test_without_predictions(tmp_path):
    indices, labels, _, activations = _data(n=10)
    with ActivationWriter(tmp_path / "a.parquet", 6) as writer:
        writer.write_batch(indices, labels, None, activations)
    assert read_activations(tmp_path / "a.parquet").predictions is None


def test_exception_inside_writer_leaves_nothing(tmp_path):
    indices, labels, predictions, activations = _data()
    with pytest.raises(RuntimeError, match="model crashed"):
        with ActivationWriter(tmp_path / "a.parquet", 6) as writer:
            writer.write_batch(indices[:10], labels[:10], predictions[:10], activations[:10])
            raise RuntimeError("model crashed")
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_previous_file(tmp_path):
    path = write_activations(tmp_path / "a.parquet", ActivationTable(*_data(n=4)))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="NaN or inf"):
        with ActivationWriter(path, 6) as writer:
            bad = np.full((2, 6), np.nan, np.float32)
            writer.write_batch([0, 1], [0, 0], None, bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.parquet"]


def test_duplicate_index_across_batches_writes_nothing(tmp_path):
    acts = np.zeros((2, 6), np.float32)
    with pytest.raises(ValueError, match="indices written in several batches: 1 duplicate "
                                         r"value\(s\): 1"):
        with ActivationWriter(tmp_path / "a.parquet", 6) as writer:
            writer.write_batch([0, 1], [0, 0], None, acts)
            writer.write_batch([1, 2], [0, 0], None, acts)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "error", "message"), [
    (([0, 1], [0, 0], None, np.zeros((2, 5))), ValueError,
     r"activations have shape \(2, 5\), expected \(n, 6\)"),
    (([0, 1], [0, 0], None, np.zeros(12)), ValueError,
     r"activations have shape \(12,\), expected \(n, 6\)"),
    (([0, 0], [0, 0], None, np.zeros((2, 6))), ValueError, r"indices have 1 duplicate"),
    (([0, -1], [0, 0], None, np.zeros((2, 6))), ValueError, "indices has negative value -1"),
    (([0, 1], [0], None, np.zeros((2, 6))), ValueError, r"labels has shape \(1,\)"),
    (([0, 1], [0.5, 1], None, np.zeros((2, 6))), TypeError, "labels must be integers"),
    (([0, 1], [0, 1], [0.0, 1.0], np.zeros((2, 6))), TypeError, "predictions must be integers"),
    (([0, 1], [0, 1], None, np.full((2, 6), np.inf)), ValueError,
     "activations have NaN or inf values in row 0"),
])
def test_bad_batches(tmp_path, args, error, message):
    with pytest.raises(error, match="write_batch: " + message):
        with ActivationWriter(tmp_path / "a.parquet", 6) as writer:
            writer.write_batch(*args)
    assert list(tmp_path.iterdir()) == []


def test_predictions_in_some_batches_only(tmp_path):
    acts = np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError, match="predictions must be given for every batch or for none"):
        with ActivationWriter(tmp_path / "a.parquet", 2) as writer:
            writer.write_batch([0], [0], [1], acts)
            writer.write_batch([1], [0], None, acts)


def test_writer_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="width must be a positive integer"):
        ActivationWriter(tmp_path / "a.parquet", 0)
    with pytest.raises(ValueError, match="'schema' is reserved"):
        ActivationWriter(tmp_path / "a.parquet", 2, metadata={"schema": "x"})
    writer = ActivationWriter(tmp_path / "a.parquet", 2)
    with pytest.raises(RuntimeError, match="not open"):
        writer.write_batch([0], [0], None, np.zeros((1, 2)))


def test_empty_file_round_trip(tmp_path):
    with ActivationWriter(tmp_path / "a.parquet", 3):
        pass
    table = read_activations(tmp_path / "a.parquet")
    assert table.activations.shape == (0, 3) and table.predictions is None


# ----------------------------------------------------------------------------- reading


def test_nan_in_file(tmp_path):
    path = _write_raw(tmp_path / "nan.parquet", {
        "index": [0, 1, 2], "label": [0, 0, 1],
        "activation": _fixed([[0, 0], [1, np.nan], [2, 2]]),
    })
    with pytest.raises(ValueError, match=r"nan\.parquet: column 'activation' has NaN or inf "
                                         r"values, first in row 1"):
        read_activations(path)


def test_ragged_variable_list(tmp_path):
    path = _write_raw(tmp_path / "r.parquet", {
        "index": [0, 1, 2], "label": [0, 0, 1],
        "activation": pa.array([[0.0, 1.0], [1.0, 2.0], [3.0]], pa.list_(pa.float32())),
    })
    with pytest.raises(ValueError, match=r"r\.parquet: column 'activation' is ragged: row 2 "
                                         r"has 1 values, expected 2"):
        read_activations(path)


def test_variable_list_of_even_width_is_accepted(tmp_path):
    path = _write_raw(tmp_path / "v.parquet", {
        "index": [0, 1], "label": [0, 1],
        "activation": pa.array([[0.0, 1.0], [1.0, 2.0]], pa.list_(pa.float64())),
    })
    table = read_activations(path)
    assert table.activations.dtype == np.float32 and table.activations.shape == (2, 2)


def test_wrong_width_against_metadata(tmp_path):
    path = _write_raw(tmp_path / "w.parquet", {
        "index": [0], "label": [0], "activation": _fixed([[0, 1, 2]]),
    }, {"acgate.activation_width": "4"})
    with pytest.raises(ValueError, match=r"w\.parquet: column 'activation' has width 3, "
                                         r"expected 4"):
        read_activations(path)


def test_duplicate_indices_in_file(tmp_path):
    path = _write_raw(tmp_path / "d.parquet", {
        "index": [4, 2, 4, 2, 7], "label": [0] * 5, "activation": _fixed(np.zeros((5, 2))),
    })
    with pytest.raises(ValueError, match=r"d\.parquet: column 'index' has 2 duplicate "
                                         r"value\(s\): 2, 4"):
        read_activations(path)
    with pytest.raises(ValueError, match="column 'index' has 2 duplicate"):
        next(iter_activation_batches(path, 2))


def test_row_columns_are_the_tables_without_its_activations(tmp_path):
    indices, labels, predictions, activations = _data()
    path = write_activations(tmp_path / "a.parquet", ActivationTable(
        indices=indices, labels=labels, predictions=predictions, activations=activations,
        metadata={"modality": "text"}))
    rows = read_row_columns(path)
    np.testing.assert_array_equal(rows.indices, indices)
    np.testing.assert_array_equal(rows.labels, labels)
    np.testing.assert_array_equal(rows.predictions, predictions)
    assert rows.metadata["modality"] == "text"
    bad = _write_raw(tmp_path / "d.parquet", {
        "index": [4, 2, 4], "label": [0, 1, -1], "activation": _fixed(np.zeros((3, 2)))})
    with pytest.raises(ValueError, match=r"d\.parquet: column 'index' has 1 duplicate"):
        read_row_columns(bad)
    negative = _write_raw(tmp_path / "n.parquet", {
        "index": [0, 1], "label": [0, -1], "activation": _fixed(np.zeros((2, 2)))})
    with pytest.raises(ValueError, match=r"n\.parquet.*'label'"):
        read_row_columns(negative)


def test_partly_null_predictions(tmp_path):
    path = _write_raw(tmp_path / "p.parquet", {
        "index": [0, 1], "label": [0, 1], "prediction": pa.array([1, None], pa.int64()),
        "activation": _fixed(np.zeros((2, 2))),
    })
    with pytest.raises(ValueError, match=r"p\.parquet: column 'prediction' has 1 null value"):
        read_activations(path)


def test_missing_prediction_column_is_fine_but_missing_activation_is_not(tmp_path):
    path = _write_raw(tmp_path / "a.parquet", {
        "index": [0, 1], "label": [0, 1], "activation": _fixed(np.ones((2, 2))),
    })
    assert read_activations(path).predictions is None
    path = _write_raw(tmp_path / "b.parquet", {"index": [0, 1], "label": [0, 1]})
    with pytest.raises(ValueError, match=r"b\.parquet has no column 'activation'"):
        read_activations(path)


@pytest.mark.parametrize(("column", "values", "error", "message"), [
    ("index", pa.array([0.0, 1.0]), TypeError, "column 'index' must be of an integer type"),
    ("label", pa.array(["a", "b"]), TypeError, "column 'label' must be of an integer type"),
    ("label", pa.array([0, -3]), ValueError, "column 'label' has negative value -3 in row 1"),
    ("activation", pa.array([[1, 2], [3, 4]]), TypeError,
     "column 'activation' must be a list of floats"),
])
def test_bad_column_types(tmp_path, column, values, error, message):
    columns = {"index": [0, 1], "label": [0, 1], "activation": _fixed(np.zeros((2, 2)))}
    columns[column] = values
    path = _write_raw(tmp_path / "t.parquet", columns)
    with pytest.raises(error, match=r"t\.parquet: " + message):
        read_activations(path)


def test_not_an_activation_file(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 nonsense")
    with pytest.raises(ValueError, match=r"x\.parquet is not a readable Parquet file"):
        read_activations(path)


# ----------------------------------------------------------------------------- batches


def test_iter_batches_matches_full_read(tmp_path):
    table = ActivationTable(*_data(n=103), metadata={"model": "m"})
    path = write_activations(tmp_path / "a.parquet", table, batch_rows=40)
    batches = list(iter_activation_batches(path, batch_rows=25))
    assert [len(b) for b in batches] == [25, 25, 25, 25, 3]
    np.testing.assert_array_equal(np.concatenate([b.activations for b in batches]),
                                  table.activations)
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), table.indices)
    np.testing.assert_array_equal(np.concatenate([b.predictions for b in batches]),
                                  table.predictions)
    assert dict(batches[0].metadata) == {"model": "m"}


def test_iter_batches_names_the_batch(tmp_path):
    matrix = np.zeros((6, 2))
    matrix[4, 1] = np.inf
    path = _write_raw(tmp_path / "b.parquet", {
        "index": list(range(6)), "label": [0] * 6, "activation": _fixed(matrix),
    })
    batches = iter_activation_batches(path, batch_rows=3)
    next(batches)
    with pytest.raises(ValueError, match=r"NaN or inf values, first in row 1 \(in the batch "
                                         r"starting at row 3\)"):
        next(batches)
    with pytest.raises(ValueError, match="batch_rows must be a positive integer"):
        next(iter_activation_batches(path, batch_rows=0))


def test_activation_table_validation():
    with pytest.raises(ValueError, match=r"N x D, got shape \(3,\)"):
        ActivationTable([0, 1, 2], [0, 0, 0], None, np.zeros(3))
    with pytest.raises(ValueError, match=r"labels has shape \(2,\), expected \(3,\)"):
        ActivationTable([0, 1, 2], [0, 0], None, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="indices has 1 duplicate"):
        ActivationTable([0, 1, 1], [0, 0, 0], None, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN or inf values in row 2"):
        ActivationTable([0, 1, 2], [0, 0, 0], None, np.array([[0, 0], [0, 0], [0, np.nan]]))
    table = ActivationTable([0, 1], [0, 0], [1, 1], np.zeros((2, 2)))
    with pytest.raises(ValueError):
        table.activations[0, 0] = 1.0


@pytest.mark.parametrize("reader", [read_activations,
                                    lambda path: list(iter_activation_batches(path))])
def test_fifo_activation_file_is_refused_without_hanging(fifo, without_hanging, reader):
    error = without_hanging(lambda: reader(fifo), fifo)
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"{fifo} is not a readable Parquet file: it is a named pipe")


def test_duplicate_activation_columns_are_refused(tmp_path):
    indices, labels, _, activations = _data(n=4)
    table = pa.Table.from_arrays(
        [pa.array(indices), pa.array(labels), pa.array(labels), _fixed(activations)],
        names=["index", "label", "label", "activation"])
    path = tmp_path / "dup.parquet"
    pq.write_table(table, path)
    with pytest.raises(ValueError, match=r"dup\.parquet has duplicate column name\(s\): "
                                         r"'label' \(2 times\)"):
        read_activations(path)
