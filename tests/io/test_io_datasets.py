import io
import json
import resource

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from acgate.io.datasets import (
    DEFAULT_MAX_DECODED_BYTES,
    ImageDataset,
    TextDataset,
    dataset_fingerprint,
    estimate_image_memory,
    read_dataset,
    read_image_dataset,
    read_text_dataset,
    write_image_dataset,
    write_text_dataset,
)
from acgate.io.inspect import validation_frame
from acgate.io.loaders import load_digits_dataset


def _quantised_images(n=6, channels=1, size=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, channels, size, size)) / 255.0).astype(np.float32)


def _dataset(n=6, channels=1, size=5):
    return ImageDataset(
        images=_quantised_images(n, channels, size),
        labels=np.arange(n) % 3,
        columns={"is_poison": np.arange(n) % 2 == 0, "source_label": np.arange(n) % 3},
        metadata={"poison": {"rate": 0.25, "pairs": [[0, 1]]}},
        name="tiny",
    )


def _png(array_hw, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array_hw).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_table(path, columns, metadata=None):
    table = pa.table(columns)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    pq.write_table(table, path)
    return path


def _assert_same(a, b, exact=True):
    if exact:
        np.testing.assert_array_equal(a.images, b.images)
    else:
        np.testing.assert_allclose(a.images, b.images, atol=1 / 255 / 2 + 1e-6)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert set(a.columns) == set(b.columns)
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])
        assert a.columns[name].dtype == b.columns[name].dtype
    assert dict(a.metadata) == dict(b.metadata)
    assert a.name == b.name


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("image_format", ["array", "png"])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip(tmp_path, image_format, channels):
    original = _dataset(channels=channels)
    path = write_image_dataset(original, tmp_path / "d.parquet", image_format=image_format)
    back = read_image_dataset(path)
    _assert_same(original, back)
    assert back.columns["is_poison"].dtype == bool
    assert back.images.dtype == np.float32 and back.images.shape == (6, channels, 5, 5)


def test_png_layout_is_hugging_face_struct(tmp_path):
    path = write_image_dataset(_dataset(), tmp_path / "d.parquet", image_format="png")
    kind = pq.read_schema(path).field("image").type
    assert pa.types.is_struct(kind) and {kind.field(i).name for i in range(2)} == {"bytes", "path"}


def test_png_quantises_arbitrary_values(tmp_path):
    digits = load_digits_dataset()
    small = ImageDataset(digits.images[:20], digits.labels[:20], name="d")
    path = write_image_dataset(small, tmp_path / "d.parquet", image_format="png")
    back = read_image_dataset(path)
    _assert_same(small, back, exact=False)


def test_array_round_trip_is_exact_for_any_float(tmp_path):
    digits = load_digits_dataset()
    back = read_image_dataset(write_image_dataset(digits, tmp_path / "d.parquet"))
    _assert_same(digits, back)
    assert dataset_fingerprint(back) == dataset_fingerprint(digits)


def test_hand_built_struct_column(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    struct = pa.array([{"bytes": _png(pixels), "path": "a.png"},
                       {"bytes": _png(255 - pixels), "path": None}])
    path = _write_table(tmp_path / "hf.parquet", {"image": struct, "label": [3, 4]})
    ds = read_image_dataset(path)
    assert ds.images.shape == (2, 1, 3, 4)
    np.testing.assert_allclose(ds.images[0, 0], pixels / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.images[1, 0], (255 - pixels) / 255.0, atol=1e-7)
    assert ds.labels.tolist() == [3, 4] and ds.name == "hf"


def test_binary_png_column(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    path = _write_table(tmp_path / "b.parquet",
                        {"image": pa.array([_png(rgb)], pa.binary()), "label": [0]})
    ds = read_image_dataset(path)
    np.testing.assert_allclose(ds.images[0], np.transpose(rgb, (2, 0, 1)) / 255.0, atol=1e-7)


def test_binary_jpeg_column(tmp_path):
    gray = np.full((16, 16), 128, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=95)
    path = _write_table(tmp_path / "j.parquet",
                        {"image": pa.array([buffer.getvalue()], pa.large_binary()), "label": [1]})
    ds = read_image_dataset(path)
    assert ds.images.shape == (1, 1, 16, 16)
    np.testing.assert_allclose(ds.images, 128 / 255.0, atol=3 / 255)


def test_variable_list_column_with_shape(tmp_path):
    values = [[0.0, 0.5, 1.0, 0.25], [1.0, 1.0, 0.0, 0.0]]
    path = _write_table(tmp_path / "l.parquet",
                        {"image": pa.array(values, pa.list_(pa.float64())), "label": [0, 1]},
                        {"acgate.image_shape": "[1, 2, 2]"})
    ds = read_image_dataset(path)
    np.testing.assert_array_equal(ds.images.reshape(2, 4), np.array(values, np.float32))


def test_custom_column_names(tmp_path):
    path = _write_table(tmp_path / "c.parquet",
                        {"img": pa.array([_png(np.zeros((2, 2), np.uint8))]), "fine": [7]})
    ds = read_image_dataset(path, image_column="img", label_column="fine")
    assert ds.labels.tolist() == [7] and ds.columns == {}


# ----------------------------------------------------------------------------- bad input


def test_decompression_bomb_is_refused(tmp_path):
    big = Image.new("L", (4097, 4097))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    small = _png(np.zeros((4, 4), np.uint8))
    path = _write_table(tmp_path / "bomb.parquet",
                        {"image": pa.array([small, buffer.getvalue()]), "label": [0, 1]})
    with pytest.raises(ValueError, match=r"bomb\.parquet: column 'image' row 1: image of "
                                         r"4097x4097 pixels exceeds the limit"):
        read_image_dataset(path)


def test_pixel_limit_is_configurable(tmp_path):
    path = _write_table(tmp_path / "p.parquet",
                        {"image": pa.array([_png(np.zeros((10, 10), np.uint8))]), "label": [0]})
    with pytest.raises(ValueError, match="row 0: image of 10x10 pixels exceeds the limit of 99"):
        read_image_dataset(path, max_pixels=99)


def test_undecodable_bytes_name_the_row(tmp_path):
    good = _png(np.zeros((4, 4), np.uint8))
    path = _write_table(tmp_path / "u.parquet",
                        {"image": pa.array([good, good, b"not an image"]), "label": [0, 0, 1]})
    with pytest.raises(ValueError, match=r"u\.parquet: column 'image' row 2: cannot decode"):
        read_image_dataset(path)


def test_truncated_png_names_the_row(tmp_path):
    good = _png(np.arange(64, dtype=np.uint8).reshape(8, 8))
    path = _write_table(tmp_path / "t.parquet",
                        {"image": pa.array([good, good[:40]]), "label": [0, 1]})
    with pytest.raises(ValueError, match="row 1: cannot decode"):
        read_image_dataset(path)


def test_other_formats_are_not_decoded(tmp_path):
    buffer = io.BytesIO()
    Image.new("L", (4, 4)).save(buffer, format="GIF")
    path = _write_table(tmp_path / "g.parquet",
                        {"image": pa.array([buffer.getvalue()]), "label": [0]})
    with pytest.raises(ValueError, match="row 0: cannot decode the image bytes as PNG or JPEG"):
        read_image_dataset(path)


def test_mixed_shapes_name_first_offending_row(tmp_path):
    a, b = _png(np.zeros((4, 4), np.uint8)), _png(np.zeros((5, 4), np.uint8))
    path = _write_table(tmp_path / "m.parquet",
                        {"image": pa.array([a, a, b, a]), "label": [0, 0, 0, 0]})
    with pytest.raises(ValueError, match=r"mixed image shapes: row 2 is \(1, 5, 4\).*"
                                         r"row 0 is \(1, 4, 4\)"):
        read_image_dataset(path)


def test_gray_and_rgb_mixed_become_rgb(tmp_path):
    gray_pixels = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    rgb_pixels = np.random.default_rng(2).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    gray, rgb = _png(gray_pixels), _png(rgb_pixels)
    path = _write_table(tmp_path / "m.parquet",
                        {"image": pa.array([gray, rgb, gray]), "label": [0, 0, 1]})
    ds = read_image_dataset(path)
    assert ds.images.shape == (3, 3, 4, 4)  # the channel rule: any colour -> all RGB
    for channel in range(3):  # greyscale repeated into the three channels
        np.testing.assert_allclose(ds.images[0, channel], gray_pixels / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.images[1], np.transpose(rgb_pixels, (2, 0, 1)) / 255.0,
                               atol=1e-7)


def _encoded(image, format="PNG", **options):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def test_rgba_drops_alpha(tmp_path):
    rgba = np.random.default_rng(3).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    rgba[..., 3] = np.arange(6, dtype=np.uint8) * 40  # varied transparency, never composited
    path = _write_table(tmp_path / "a.parquet",
                        {"image": pa.array([_png(rgba), _png(rgba)]), "label": [0, 1]})
    ds = read_image_dataset(path)
    assert ds.images.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(ds.images[0], np.transpose(rgba[..., :3], (2, 0, 1)) / 255.0,
                               atol=1e-7)


def test_rgba_mixed_with_gray_and_palette(tmp_path):
    gray = _png(np.full((4, 4), 51, np.uint8))
    rgba = _png(np.full((4, 4, 4), 102, np.uint8))
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([255, 0, 0] + [0] * 765)
    palette.info["transparency"] = 0
    la = Image.fromarray(np.full((4, 4, 2), 204, np.uint8), mode="LA")
    path = _write_table(tmp_path / "mix.parquet", {
        "image": pa.array([gray, rgba, _encoded(palette), _encoded(la)]), "label": [0, 0, 1, 1]})
    ds = read_image_dataset(path)
    assert ds.images.shape == (4, 3, 4, 4)
    np.testing.assert_allclose(ds.images[0], 51 / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.images[1], 102 / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.images[2, :, 0, 0], [1.0, 0.0, 0.0])  # red, transparency dropped
    np.testing.assert_allclose(ds.images[3], 204 / 255.0, atol=1e-7)


def test_gray_with_alpha_and_16_bit_stay_one_channel(tmp_path):
    la = Image.fromarray(np.full((3, 3, 2), 100, np.uint8), mode="LA")
    deep = np.array([[0, 65535, 1000], [2, 3, 4], [5, 6, 30000]], dtype=np.uint16)
    path = _write_table(tmp_path / "g.parquet", {
        "image": pa.array([_encoded(la), _png(deep)]), "label": [0, 1]})
    ds = read_image_dataset(path)
    assert ds.images.shape == (2, 1, 3, 3)
    np.testing.assert_allclose(ds.images[0, 0], 100 / 255.0, atol=1e-7)
    np.testing.assert_allclose(ds.images[1, 0], deep / 65535.0, atol=1e-7)


def test_four_channel_png_round_trip_reads_back_rgb(tmp_path):
    original = _dataset(channels=4)
    path = write_image_dataset(original, tmp_path / "d.parquet", image_format="png")
    back = read_image_dataset(path)
    assert back.images.shape == (6, 3, 5, 5)
    np.testing.assert_array_equal(back.images, original.images[:, :3])


def test_null_and_path_only_images(tmp_path):
    png = _png(np.zeros((4, 4), np.uint8))
    path = _write_table(tmp_path / "n.parquet", {"image": pa.array([png, None]), "label": [0, 1]})
    with pytest.raises(ValueError, match="row 1 has no image bytes"):
        read_image_dataset(path)
    struct = pa.array([{"bytes": png, "path": None}, {"bytes": None, "path": "/etc/passwd"}])
    path = _write_table(tmp_path / "p.parquet", {"image": struct, "label": [0, 1]})
    with pytest.raises(ValueError, match="row 1 has no image bytes.*embed"):
        read_image_dataset(path)


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        (pa.array([0, -1]), ValueError, r"column 'label' has negative value -1 in row 1"),
        (pa.array([[0], [1]]), TypeError, r"column 'label' \(--label-column\) must hold "
                                          r"integers, strings, floats or booleans \(labels\), "
                                          r"got list<"),
        (pa.array([0.0, float("nan")]), ValueError, r"column 'label' \(--label-column\) has a "
                                                    r"missing label \(nan\) in row 1"),
        (pa.array(["a", None]), ValueError, r"column 'label' \(--label-column\) has a missing "
                                            r"label \(None\) in row 1"),
        (pa.array([0, None]), ValueError, r"column 'label' has 1 null value"),
    ],
)
def test_bad_labels(tmp_path, labels, error, message):
    png = _png(np.zeros((4, 4), np.uint8))
    path = _write_table(tmp_path / "l.parquet", {"image": pa.array([png, png]), "label": labels})
    with pytest.raises(error, match=r"l\.parquet: " + message):
        read_image_dataset(path)


def test_missing_label_column(tmp_path):
    path = _write_table(tmp_path / "x.parquet", {"image": pa.array([b"x"])})
    with pytest.raises(ValueError, match=r"x\.parquet has no column 'label'"):
        read_image_dataset(path)


def test_array_column_without_shape(tmp_path):
    path = _write_table(tmp_path / "s.parquet",
                        {"image": pa.array([[0.0, 1.0]], pa.list_(pa.float32(), 2)), "label": [0]})
    with pytest.raises(ValueError, match=r"s\.parquet: an array-encoded image column needs.*"
                                         r"acgate.image_shape"):
        read_image_dataset(path)


def test_array_column_wrong_width(tmp_path):
    path = _write_table(tmp_path / "w.parquet",
                        {"image": pa.array([[0.0, 1.0]], pa.list_(pa.float32(), 2)), "label": [0]},
                        {"acgate.image_shape": "[1, 2, 2]"})
    with pytest.raises(ValueError, match="column 'image' has width 2, expected 4"):
        read_image_dataset(path)


@pytest.mark.parametrize(("value", "message"), [
    (1.5, r"pixel values outside \[0, 1\], first in row 1"),
    (float("nan"), "NaN or inf values, first in row 1"),
])
def test_array_column_bad_values(tmp_path, value, message):
    path = _write_table(tmp_path / "v.parquet",
                        {"image": pa.array([[0.0], [value]], pa.list_(pa.float32(), 1)),
                         "label": [0, 0]},
                        {"acgate.image_shape": "[1, 1, 1]"})
    with pytest.raises(ValueError, match=r"v\.parquet: column 'image' has " + message):
        read_image_dataset(path)


def test_unsupported_image_column_type(tmp_path):
    path = _write_table(tmp_path / "i.parquet", {"image": [1, 2], "label": [0, 0]})
    with pytest.raises(TypeError, match="column 'image' has type int64"):
        read_image_dataset(path)


def test_failed_write_leaves_no_file(tmp_path):
    ds = ImageDataset(_quantised_images(2), [0, 1], columns={"weird": np.array([1j, 2j])})
    with pytest.raises(TypeError, match="column 'weird'"):
        write_image_dataset(ds, tmp_path / "d.parquet")
    assert list(tmp_path.iterdir()) == []


def test_png_refuses_two_channels(tmp_path):
    ds = ImageDataset(np.zeros((1, 2, 3, 3), np.float32), [0])
    with pytest.raises(ValueError, match="PNG holds 1, 3 or 4 channels.*has 2"):
        write_image_dataset(ds, tmp_path / "d.parquet", image_format="png")
    with pytest.raises(ValueError, match="image_format must be"):
        write_image_dataset(ds, tmp_path / "d.parquet", image_format="jpeg")


def test_image_dataset_validation():
    images = np.zeros((2, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"N x C x H x W, got shape \(2, 3, 3\)"):
        ImageDataset(np.zeros((2, 3, 3)), [0, 1])
    with pytest.raises(ValueError, match=r"range \[0.0, 2.0\].*row 1"):
        ImageDataset(np.stack([images[0], images[1] + 2]), [0, 1])
    with pytest.raises(ValueError, match="labels has length 3, expected 2"):
        ImageDataset(images, [0, 1, 2])
    with pytest.raises(TypeError, match="labels must be integers, got dtype float64"):
        ImageDataset(images, [0.0, 1.0])
    with pytest.raises(ValueError, match="negative value -1 in row 0"):
        ImageDataset(images, [-1, 1])
    with pytest.raises(ValueError, match=r"columns\['x'\] has shape \(3,\), expected \(2,\)"):
        ImageDataset(images, [0, 1], columns={"x": [1, 2, 3]})
    with pytest.raises(ValueError, match="reserved name 'label'"):
        ImageDataset(images, [0, 1], columns={"label": [1, 2]})
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        ImageDataset(images, [0, 1], metadata={"x": object()})


def test_dataset_is_read_only():
    ds = _dataset()
    with pytest.raises(ValueError):
        ds.images[0, 0, 0, 0] = 0.5
    with pytest.raises(ValueError):
        ds.labels[0] = 2
    with pytest.raises(TypeError):
        ds.columns["new"] = np.zeros(6)


# ----------------------------------------------------------------------------- text


def test_text_round_trip(tmp_path):
    ds = TextDataset(["good film", "bad film", "héllo ✓"], [1, 0, 1],
                     columns={"movie": np.array(["a", "b", "c"], dtype=object)},
                     metadata={"source": "test"}, name="reviews")
    back = read_text_dataset(write_text_dataset(ds, tmp_path / "t.parquet"))
    assert back.texts == ds.texts
    assert back.labels.tolist() == [1, 0, 1]
    assert back.columns["movie"].tolist() == ["a", "b", "c"]
    assert dict(back.metadata) == {"source": "test"} and back.name == "reviews"
    assert dataset_fingerprint(back) == dataset_fingerprint(ds)


@pytest.mark.parametrize(("texts", "error", "message"), [
    (pa.array(["ok", "  "]), ValueError, r"column 'text' row 1 is an empty text"),
    (pa.array(["ok", None]), ValueError, r"column 'text' row 1 is null"),
    (pa.array([1, 2]), TypeError, r"column 'text' must be a string column, got int64"),
])
def test_bad_texts(tmp_path, texts, error, message):
    path = _write_table(tmp_path / "t.parquet", {"text": texts, "label": [0, 1]})
    with pytest.raises(error, match=r"t\.parquet: " + message):
        read_text_dataset(path)


def test_text_dataset_validation():
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        TextDataset(["a", ""], [0, 1])
    with pytest.raises(TypeError, match=r"texts\[0\] must be a string, got int"):
        TextDataset([3], [0])
    with pytest.raises(TypeError, match="not one string"):
        TextDataset("abc", [0, 1, 2])


# ----------------------------------------------------------------------------- read_dataset


def test_read_dataset_picks_modality(tmp_path):
    image_path = write_image_dataset(_dataset(), tmp_path / "i.parquet")
    text_path = write_text_dataset(TextDataset(["a b"], [0]), tmp_path / "t.parquet")
    assert isinstance(read_dataset(image_path), ImageDataset)
    assert isinstance(read_dataset(text_path), TextDataset)
    png = _png(np.zeros((2, 2), np.uint8))
    both = _write_table(tmp_path / "both.parquet",
                        {"image": pa.array([png]), "text": ["hi"], "label": [0]})
    with pytest.raises(ValueError, match=r"both\.parquet has both an 'image' and a 'text' "
                                         r"column; pass modality="):
        read_dataset(both)
    assert isinstance(read_dataset(both, modality="text"), TextDataset)
    image = read_dataset(both, modality="image")
    assert isinstance(image, ImageDataset) and image.columns["text"].tolist() == ["hi"]
    neither = _write_table(tmp_path / "n.parquet", {"label": [0]})
    with pytest.raises(ValueError, match="neither an 'image' nor a 'text' column"):
        read_dataset(neither)
    with pytest.raises(ValueError, match="modality must be"):
        read_dataset(both, modality="audio")


# ----------------------------------------------------------------------------- fingerprint

# Pinned: a change here means every recorded fingerprint (MLflow tags, reports) changes.
DIGITS_FINGERPRINT = "535df959a7fab6d9ce82bb6325afa3f2a4e76633a1fc06644525586b6db3ef17"


def test_fingerprint_is_pinned_and_stable(tmp_path):
    digits = load_digits_dataset()
    assert dataset_fingerprint(digits) == DIGITS_FINGERPRINT
    copy = ImageDataset(np.array(digits.images), np.array(digits.labels), name="other",
                        columns={"x": np.zeros(len(digits))}, metadata={"y": 1})
    assert dataset_fingerprint(copy) == DIGITS_FINGERPRINT


def test_fingerprint_changes_with_content():
    ds = _dataset()
    base = dataset_fingerprint(ds)
    images = np.array(ds.images)
    images[3, 0, 2, 2] = 1.0 - images[3, 0, 2, 2]
    assert dataset_fingerprint(ImageDataset(images, ds.labels)) != base
    labels = np.array(ds.labels)
    labels[0] += 1
    assert dataset_fingerprint(ImageDataset(ds.images, labels)) != base
    same_bytes_other_shape = ImageDataset(np.array(ds.images).reshape(6, 1, 1, 25), ds.labels)
    assert dataset_fingerprint(same_bytes_other_shape) != base
    a = dataset_fingerprint(TextDataset(["ab", "c"], [0, 0]))
    b = dataset_fingerprint(TextDataset(["a", "bc"], [0, 0]))
    assert a != b
    with pytest.raises(TypeError, match="takes an ImageDataset or TextDataset"):
        dataset_fingerprint(json)


@pytest.mark.parametrize("image_format", ["array", "png"])
def test_empty_dataset_round_trip(tmp_path, image_format):
    empty = ImageDataset(np.zeros((0, 3, 4, 5), np.float32), np.zeros(0, np.int64))
    path = write_image_dataset(empty, tmp_path / "e.parquet", image_format=image_format)
    back = read_image_dataset(path)
    assert back.images.shape == (0, 3, 4, 5) and len(back) == 0


def test_empty_foreign_file_has_no_shape(tmp_path):
    path = _write_table(tmp_path / "e.parquet",
                        {"image": pa.array([], pa.binary()), "label": pa.array([], pa.int64())})
    with pytest.raises(ValueError, match="has no rows and the file has no 'acgate.image_shape'"):
        read_image_dataset(path)


# ----------------------------------------------------------------------------- non-regular input


@pytest.mark.parametrize("reader", [read_image_dataset, read_text_dataset, read_dataset,
                                    validation_frame])
def test_fifo_dataset_is_refused_without_hanging(fifo, without_hanging, reader):
    error = without_hanging(lambda: reader(fifo), fifo)
    assert isinstance(error, ValueError)
    assert str(error).startswith(f"{fifo} is not a readable Parquet file: it is a named pipe")


# ----------------------------------------------------------------------------- duplicate columns


@pytest.mark.parametrize("names", [["label", "image", "label"], ["image", "label", "image"]])
def test_duplicate_label_or_image_column(tmp_path, names):
    png = _png(np.zeros((2, 2), np.uint8))
    arrays = [pa.array([0, 1]) if name == "label" else pa.array([png, png]) for name in names]
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path)
    repeated = "label" if names.count("label") > 1 else "image"
    message = rf"dup\.parquet has duplicate column name\(s\): '{repeated}' \(2 times\)"
    for read in (read_image_dataset, read_dataset, validation_frame):
        with pytest.raises(ValueError, match=message):
            read(path)


def test_duplicate_text_column(tmp_path):
    path = tmp_path / "dup.parquet"
    table = pa.Table.from_arrays([pa.array(["a", "b"]), pa.array(["c", "d"]), pa.array([0, 1])],
                                 names=["text", "text", "label"])
    pq.write_table(table, path)
    with pytest.raises(ValueError, match=r"duplicate column name\(s\): 'text' \(2 times\)"):
        read_text_dataset(path)


# ----------------------------------------------------------------------------- memory budget


@pytest.fixture(scope="module")
def black_4096_png():
    return _encoded(Image.new("RGB", (4096, 4096)))


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Make any pixel decode fail loudly: the budget must refuse from the headers alone."""
    from PIL import ImageFile

    def refuse(self):
        raise AssertionError("pixels were decoded before the budget check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_budget_refuses_big_images_from_the_headers(tmp_path, black_4096_png,
                                                    no_pixel_decoding):
    assert len(black_4096_png) < 200_000  # a tiny file that decodes to 192 MiB per image
    path = _write_table(tmp_path / "huge.parquet",
                        {"image": pa.array([black_4096_png] * 6), "label": [0, 1] * 3})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pattern = (r"huge\.parquet: column 'image': 6 image\(s\) of 3x4096x4096 \(C x H x W\) "
               r"would need about [\d.]+ GiB \(1\.1 GiB of decoded float32 images \+ [\d.]+ GiB "
               r"to train the proxy CNN at batch 64\), above the limit of 8\.0 GiB "
               r"\(8589934592 bytes\).*max_decoded_bytes=")
    for read in (read_image_dataset, read_dataset, validation_frame):
        with pytest.raises(ValueError, match=pattern):
            read(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500 * 1024  # KiB


def test_budget_is_configurable(tmp_path):
    rgb = _png(np.zeros((16, 16, 3), np.uint8))
    path = _write_table(tmp_path / "s.parquet",
                        {"image": pa.array([rgb] * 4), "label": [0, 1, 0, 1]})
    needed = estimate_image_memory(4, (3, 16, 16)).total
    with pytest.raises(ValueError, match=rf"above the limit of .* \({needed - 1} bytes\)"):
        read_image_dataset(path, max_decoded_bytes=needed - 1)
    with pytest.raises(ValueError, match="above the limit"):
        validation_frame(path, max_decoded_bytes=needed - 1)
    assert read_image_dataset(path, max_decoded_bytes=needed).images.shape == (4, 3, 16, 16)
    assert read_image_dataset(path, max_decoded_bytes=None).images.shape == (4, 3, 16, 16)
    assert validation_frame(path, max_decoded_bytes=None)["image_shape"].tolist() == \
        ["3x16x16"] * 4
    for bad, error in [(0, ValueError), (-5, ValueError), (float("inf"), ValueError),
                       ("8G", TypeError), (True, TypeError)]:
        with pytest.raises(error, match="max_decoded_bytes must be"):
            read_image_dataset(path, max_decoded_bytes=bad)


def test_budget_applies_to_array_encoding(tmp_path):
    path = write_image_dataset(_dataset(n=6, channels=3, size=5), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"a\.parquet: column 'image': 6 image\(s\) of 3x5x5"):
        read_image_dataset(path, max_decoded_bytes=1000)


def test_estimate_image_memory():
    estimate = estimate_image_memory(10, (3, 32, 32))
    assert estimate.decoded_bytes == 10 * 3 * 32 * 32 * 4
    assert 0 < estimate.proxy_bytes < 512 * 1024**2
    assert estimate.total == estimate.decoded_bytes + estimate.proxy_bytes
    assert estimate_image_memory(0, (3, 4096, 4096)).proxy_bytes > 100 * 1024**3
    assert estimate_image_memory(60_000, (1, 28, 28)).total < DEFAULT_MAX_DECODED_BYTES
    with pytest.raises(ValueError, match="image_shape must be"):
        estimate_image_memory(1, (28, 28))


# ------------------------------------------------------------------- a shard of the rows


def test_a_row_range_reads_those_rows_as_a_whole_read_would(tmp_path):
    """A shard decodes only its rows, from only the row groups that hold them; labels keep
    the whole file's mapping (a shard may miss classes) and ids are checked over every row."""
    from acgate.io.datasets import Columns, read_dataset, write_image_dataset
    from acgate.io.loaders import load_digits_dataset

    digits = load_digits_dataset()
    path = write_image_dataset(digits, tmp_path / "digits.parquet")
    table = pq.read_table(path)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    table = table.set_column(table.schema.get_field_index("label"), "label",
                             pa.array(names[table.column("label").to_numpy()]))
    table = table.append_column("uid", pa.array([f"row-{i}" for i in range(len(digits))]))
    grouped = tmp_path / "grouped.parquet"
    pq.write_table(table, grouped, row_group_size=100)
    assert pq.ParquetFile(grouped).metadata.num_row_groups == 18
    columns = Columns(id="uid")
    whole = read_dataset(grouped, columns=columns)
    part = read_dataset(grouped, columns=columns, rows=(150, 420))
    np.testing.assert_array_equal(part.images, whole.images[150:420])
    np.testing.assert_array_equal(part.labels, whole.labels[150:420])
    assert part.label_names == whole.label_names  # the whole file's sorted mapping
    assert list(part.ids) == [f"row-{i}" for i in range(150, 420)]
    one = read_dataset(grouped, columns=columns, rows=(1000, 1001))  # one row, one class
    assert one.label_names == whole.label_names and len(one) == 1
    assert one.labels[0] == whole.labels[1000]
    with pytest.raises(ValueError, match=r"rows \[1790, 1800\) are not a non-empty range"):
        read_dataset(grouped, columns=columns, rows=(1790, 1800))
    # A repeated id anywhere in the file is refused even when the shard holds neither copy.
    ids = table.column("uid").to_pylist()
    ids[1700] = ids[1701]
    pq.write_table(table.set_column(table.schema.get_field_index("uid"), "uid",
                                    pa.array(ids)), grouped, row_group_size=100)
    with pytest.raises(ValueError, match="row-1701"):
        read_dataset(grouped, columns=columns, rows=(0, 100))
