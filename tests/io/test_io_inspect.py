import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from acgate.io.datasets import read_image_dataset
from acgate.io.inspect import first_decode_error, validation_frame


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_shapes_follow_the_channel_rule(tmp_path):
    gray = _png(np.zeros((4, 4), np.uint8))
    rgba = _png(np.zeros((4, 4, 4), np.uint8))
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"image": pa.array([gray, rgba, b"junk"]), "label": [0, 1, 1]}), path)
    frame = validation_frame(path)
    assert frame["image_shape"].tolist()[:2] == ["3x4x4", "3x4x4"]
    assert frame["image_shape"].isna().tolist() == [False, False, True]
    assert frame["label"].tolist() == [0, 1, 1]
    assert "row 2: cannot decode" in first_decode_error(path)


def test_shapes_match_what_the_reader_returns(tmp_path):
    rgba = _png(np.full((3, 5, 4), 9, np.uint8))
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"image": pa.array([rgba, rgba]), "label": [0, 1]}), path)
    assert validation_frame(path)["image_shape"].tolist() == ["3x3x5"] * 2
    assert read_image_dataset(path).images.shape == (2, 3, 3, 5)
