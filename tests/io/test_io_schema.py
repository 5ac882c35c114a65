import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from acgate.io.schema import (
    SCHEMA_KEY,
    check_schema,
    check_unique_columns,
    decode_metadata,
    encode_metadata,
    float_matrix,
    integer_column,
    open_parquet,
    parse_schema_tag,
    read_parquet,
    require_regular_file,
    schema_tag,
    write_parquet,
)


def _table():
    return pa.table({"label": pa.array([0, 1, 2], pa.int64())})


def test_write_tags_schema_and_metadata(tmp_path):
    path = write_parquet(_table(), tmp_path / "d.parquet", "dataset",
                         metadata={"poison": {"rate": 0.1}})
    meta = pq.read_schema(path).metadata
    assert meta[SCHEMA_KEY.encode()] == b"dataset/1"
    assert json.loads(meta[b"acgate.poison"]) == {"rate": 0.1}
    table, raw = read_parquet(path, "dataset", required=["label"])
    assert table.column("label").to_pylist() == [0, 1, 2]
    assert decode_metadata(path, raw) == {"poison": {"rate": 0.1}}


@pytest.mark.parametrize("tag", ["dataset/2", "dataset/17"])
def test_newer_version_is_refused(tmp_path, tag):
    path = tmp_path / "new.parquet"
    pq.write_table(_table().replace_schema_metadata({SCHEMA_KEY: tag}), path)
    with pytest.raises(ValueError, match=rf"new\.parquet has schema version '{tag}'.*dataset/1"):
        read_parquet(path, "dataset")


def test_other_kind_is_refused(tmp_path):
    path = write_parquet(_table(), tmp_path / "acts.parquet", "activations")
    with pytest.raises(ValueError, match=r"acts\.parquet is an acgate 'activations' file"):
        read_parquet(path, "dataset")


@pytest.mark.parametrize("tag", ["dataset", "dataset/x", "/1", "dataset/0"])
def test_malformed_tag(tmp_path, tag):
    path = tmp_path / "bad.parquet"
    pq.write_table(_table().replace_schema_metadata({SCHEMA_KEY: tag}), path)
    with pytest.raises(ValueError, match="malformed acgate.schema"):
        read_parquet(path, "dataset")


def test_untagged_file_is_accepted(tmp_path):
    path = tmp_path / "plain.parquet"
    pq.write_table(_table(), path)
    assert check_schema(path, pq.read_schema(path), "dataset") == 1


def test_not_parquet(tmp_path):
    path = tmp_path / "notes.parquet"
    path.write_text("label\n0\n1\n")
    with pytest.raises(ValueError, match=r"notes\.parquet is not a readable Parquet file: "):
        read_parquet(path, "dataset")


def test_truncated_parquet(tmp_path):
    path = write_parquet(_table(), tmp_path / "cut.parquet", "dataset")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.parquet is not a readable Parquet file"):
        read_parquet(path, "dataset")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="is not a readable Parquet file"):
        read_parquet(path, "dataset")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.parquet does not exist"):
        read_parquet(tmp_path / "gone.parquet", "dataset")


def test_missing_column(tmp_path):
    path = write_parquet(_table(), tmp_path / "d.parquet", "dataset")
    with pytest.raises(ValueError, match=r"d\.parquet has no column 'image'"):
        read_parquet(path, "dataset", required=["label", "image"])


def test_schema_tag_helpers():
    assert schema_tag("samples") == "samples/1"
    assert parse_schema_tag("classes/3") == ("classes", 3)
    with pytest.raises(ValueError, match="unknown acgate file kind 'nope'"):
        schema_tag("nope")


def test_metadata_encoding_errors():
    with pytest.raises(ValueError, match="'schema' is reserved"):
        encode_metadata({"schema": 1})
    with pytest.raises(TypeError, match="value of 'x' is not JSON-serialisable"):
        encode_metadata({"x": object()})
    with pytest.raises(TypeError, match="value of 'x' is not JSON-serialisable"):
        encode_metadata({"x": float("nan")})


def test_invalid_json_metadata(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(_table().replace_schema_metadata({"acgate.poison": "{oops"}), path)
    _, raw = read_parquet(path, "dataset")
    with pytest.raises(ValueError, match=r"m\.parquet: metadata entry 'acgate.poison'"):
        decode_metadata(path, raw)


def test_integer_column_checks():
    assert integer_column("f", pa.chunked_array([[1, 2], [3]]), "label").tolist() == [1, 2, 3]
    with pytest.raises(TypeError, match="column 'label' must be of an integer type, got double"):
        integer_column("f", pa.array([1.0, 2.0]), "label")
    with pytest.raises(TypeError, match="got string"):
        integer_column("f", pa.array(["a"]), "label")
    with pytest.raises(ValueError, match="1 null value.*first in row 1"):
        integer_column("f", pa.array([1, None, 3]), "label")
    with pytest.raises(ValueError, match="negative value -4 in row 2"):
        integer_column("f", pa.array([1, 0, -4]), "label")
    with pytest.raises(ValueError, match="beyond the int64 range"):
        integer_column("f", pa.array([2**63], pa.uint64()), "label")


def test_float_matrix_checks():
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 3)
    np.testing.assert_array_equal(float_matrix("f", fixed, "a"),
                                  np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(ValueError, match="width 3, expected 4"):
        float_matrix("f", fixed, "a", width=4)
    ragged = pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32()))
    with pytest.raises(ValueError, match="ragged: row 1 has 1 values, expected 2"):
        float_matrix("f", ragged, "a")
    with pytest.raises(ValueError, match="null row"):
        float_matrix("f", pa.array([[1.0], None], pa.list_(pa.float64())), "a")
    with pytest.raises(ValueError, match="null elements, first in row 1"):
        float_matrix("f", pa.array([[1.0, 2.0], [None, 1.0]], pa.list_(pa.float64())), "a")
    with pytest.raises(TypeError, match="must be a list of floats"):
        float_matrix("f", pa.array([[1, 2]], pa.list_(pa.int64())), "a")


# ----------------------------------------------------------------------------- regular files only


def test_fifo_is_refused_without_being_opened(fifo, without_hanging):
    error = without_hanging(lambda: open_parquet(fifo), fifo)
    assert isinstance(error, ValueError)
    assert str(error) == (
        f"{fifo} is not a readable Parquet file: it is a named pipe (FIFO), not a regular file; "
        "acgate reads only regular files (copy the data into a file first)"
    )
    error = without_hanging(lambda: read_parquet(fifo, "dataset", required=["label"]), fifo)
    assert isinstance(error, ValueError) and "named pipe (FIFO)" in str(error)


def test_symlink_to_fifo_is_refused(fifo, without_hanging, tmp_path):
    link = tmp_path / "link.parquet"
    link.symlink_to(fifo)
    error = without_hanging(lambda: read_parquet(link, "dataset"), fifo)
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"{link} is not a readable Parquet file: it is a named pipe")


def test_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"is not a readable Parquet file: it is a folder"):
        read_parquet(tmp_path, "dataset")
    with pytest.raises(FileNotFoundError, match="nothing.parquet does not exist"):
        require_regular_file(tmp_path / "nothing.parquet")
    written = write_parquet(_table(), tmp_path / "d.parquet", "dataset")
    assert require_regular_file(written) == written


def test_character_device_is_refused():
    with pytest.raises(ValueError, match=r"/dev/null is not a readable Parquet file: it is a "
                                         r"character device"):
        open_parquet("/dev/null")


# ----------------------------------------------------------------------------- duplicate columns


def _duplicated(path, names):
    arrays = [pa.array([0, 1], pa.int64()) for _ in names]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path)
    return path


def test_duplicate_columns_are_refused_naming_them(tmp_path):
    path = _duplicated(tmp_path / "dup.parquet", ["label", "image", "label", "x", "x", "x"])
    assert pq.read_schema(path).names.count("label") == 2  # Parquet itself allows it
    with pytest.raises(ValueError, match=r"dup\.parquet has duplicate column name\(s\): "
                                         r"'label' \(2 times\), 'x' \(3 times\)"):
        open_parquet(path)
    with pytest.raises(ValueError, match=r"dup\.parquet has duplicate column name"):
        read_parquet(path, "dataset", required=["label"], columns=["image"])


def test_check_unique_columns_accepts_distinct_names(tmp_path):
    check_unique_columns("x.parquet", _table().schema)
