"""Images of every mode and size load as RGB; every reader (image folder, CSV/JSONL of paths, Parquet with bytes)
keeps a readable image and quarantines a corrupt or missing one with its path and reason."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from trainforge.data.config import SourceConfig
from trainforge.data.io import Quarantined, Record, read_source
from trainforge.vision.images import ImageError, load_image, png_data_url
from trainforge.vision.processor import classification_processor, pixel_values


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode, size", [("L", (28, 28)), ("RGBA", (40, 17)), ("P", (9, 31)), ("I;16", (12, 12)),
                                        ("RGB", (1, 1)), ("LA", (33, 5)), ("CMYK", (20, 20))])
def test_every_mode_and_odd_size_loads_as_rgb_and_processes(tmp_path, mode, size):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, size[::-1] + (3,), dtype=np.uint8), "RGB").convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    path = tmp_path / f"x.{fmt.lower()}"
    image.save(path, format=fmt)
    rgb = load_image(str(path))
    assert rgb.mode == "RGB" and rgb.size == size
    px = pixel_values(classification_processor(16), [rgb])  # greyscale straight into the processor would fail
    assert tuple(px.shape) == (1, 3, 16, 16)


def test_rgba_transparency_becomes_white_not_black():
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert load_image(png_data_url(clear)).getpixel((0, 0)) == (255, 255, 255)


def test_unreadable_references_say_why(tmp_path):
    (tmp_path / "bad.png").write_bytes(_png(Image.new("RGB", (8, 8)))[:30])  # truncated
    cases = {str(tmp_path / "bad.png"): "corrupt_image", str(tmp_path / "none.png"): "missing_image",
             "data:image/png;base64,@@@": "invalid_data_url", "https://example.com/x.png": "remote_image"}
    for ref, reason in cases.items():
        with pytest.raises(ImageError) as e:
            load_image(ref)
        assert e.value.reason == reason


def _folder(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (10 + i, 7), 40 * i).save(tmp_path / "imgs" / label / f"{i}.png")
    (tmp_path / "imgs" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    return tmp_path / "imgs"


def test_image_folder_reader_labels_by_subfolder_and_quarantines_the_corrupt_one(tmp_path):
    items = list(read_source(SourceConfig(path=str(_folder(tmp_path))), check_images=True))
    records = [i for i in items if isinstance(i, Record)]
    bad = [i for i in items if isinstance(i, Quarantined)]
    assert sorted(r.label for r in records) == ["cat", "cat", "dog", "dog"] and all(r.text is None for r in records)
    assert len(bad) == 1 and bad[0].reason == "corrupt_image" and bad[0].source.endswith("dog/broken.png")
    unchecked = list(read_source(SourceConfig(path=str(tmp_path / "imgs"))))  # a reader alone never decodes
    assert sum(isinstance(i, Record) for i in unchecked) == 5


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_csv_and_jsonl_of_paths(tmp_path, kind):
    folder = _folder(tmp_path)
    rows = [("cat/0.png", "cat"), ("dog/1.png", "dog"), ("dog/broken.png", "dog"), ("dog/missing.png", "dog")]
    path = folder / f"index.{kind}"
    if kind == "csv":
        path.write_text("file,label\n" + "".join(f"{f},{lab}\n" for f, lab in rows))
    else:
        path.write_text("".join(json.dumps({"file": f, "label": lab}) + "\n" for f, lab in rows))
    items = list(read_source(SourceConfig(path=str(path), image_field="file", text_field="caption"), check_images=True))
    kept = [i for i in items if isinstance(i, Record)]
    bad = {i.line: i.reason for i in items if isinstance(i, Quarantined)}
    first = 2 if kind == "csv" else 1  # the CSV header is line 1
    assert [r.label for r in kept] == ["cat", "dog"] and load_image(kept[0].image).size == (10, 7)
    assert bad == {first + 2: "corrupt_image", first + 3: "missing_image"}
    assert all(("broken.png" in i.raw or "missing.png" in i.raw) and i.source == str(path)
               for i in items if isinstance(i, Quarantined))


def test_parquet_with_image_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = _png(Image.new("RGBA", (5, 9), (10, 20, 30, 255)))
    table = pa.table({"img": [good, b"garbage", {"bytes": good, "path": None}][:2], "label": ["a", "b"]})
    pq.write_table(table, tmp_path / "x.parquet")
    struct = pa.table({"img": [{"bytes": good, "path": "x.png"}], "label": ["c"]})
    pq.write_table(struct, tmp_path / "y.parquet")  # datasets' Image feature: {bytes, path}
    items = list(read_source(SourceConfig(path=str(tmp_path / "x.parquet"), image_field="img"), check_images=True))
    items += list(read_source(SourceConfig(path=str(tmp_path / "y.parquet"), image_field="img"), check_images=True))
    kept = [i for i in items if isinstance(i, Record)]
    bad = [i for i in items if isinstance(i, Quarantined)]
    assert [r.label for r in kept] == ["a", "c"] and kept[0].image.startswith("data:image/png;base64,")
    assert load_image(kept[0].image).size == (5, 9)
    assert len(bad) == 1 and bad[0].reason == "corrupt_image" and bad[0].line == 2


def test_builtin_digits_records():
    items = list(read_source(SourceConfig(builtin="digits", limit=3)))
    assert [r.label for r in items] == ["0", "1", "2"] and load_image(items[0].image).size == (32, 32)
    caps = list(read_source(SourceConfig(builtin="digits-captions", limit=2)))
    assert caps[0].text == "a handwritten digit zero" and caps[1].text == "手写的数字一" and caps[1].meta == {"lang": "zh"}
