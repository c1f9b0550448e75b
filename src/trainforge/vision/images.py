"""Reading images: a path, a file:// URL or a data URL → an RGB PIL image, or the reason it could not be read.

Every reference a record carries (`Record.image`) goes through `load_image`; the data stage calls
`check_image` on each so a missing or corrupt file is quarantined there with its path and a snake_case
reason, never found later as a crash in the middle of training:

    missing_image      the path does not exist
    corrupt_image      PIL cannot decode it (truncated file, not an image)
    invalid_data_url   a data: URL whose base64 payload does not decode
    remote_image       an http(s) URL: trainforge does not fetch images over the network

Every mode loads: greyscale (L, I;16), palette (P), RGBA (alpha composited on white: a transparent
background is not black ink), CMYK — all end as 3-channel RGB, because transformers' image processors
normalise with a 3-element mean (a greyscale array fails with "mean must have 1 elements").
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

DATA_URL_PREFIX = "data:"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """An image reference that cannot be read; `reason` is the snake_case counter name."""

    def __init__(self, reason: str, ref: str, detail: str = ""):
        self.reason, self.ref, self.detail = reason, ref, detail
        shown = ref if len(ref) < 120 else ref[:117] + "..."
        super().__init__(f"{shown}: {reason}{f' ({detail})' if detail else ''}")


def to_data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_data_url(image) -> str:
    """A PIL image as a PNG data URL (the built-in datasets keep their pixels inside the record)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return to_data_url(buf.getvalue())


def decode_data_url(ref: str) -> bytes:
    """The bytes of a base64 data URL; ImageError(invalid_data_url) when it is not one."""
    head, sep, payload = ref.partition(",")
    if not sep or ";base64" not in head:
        raise ImageError("invalid_data_url", ref, "expected data:<mime>;base64,<payload>")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError("invalid_data_url", ref, f"base64: {e}") from None


def image_bytes(ref: str, base_dir: Path | None = None) -> bytes:
    """The encoded bytes a reference points at (relative paths resolve against base_dir)."""
    if ref.startswith(DATA_URL_PREFIX):
        return decode_data_url(ref)
    if ref.startswith(("http://", "https://")):
        raise ImageError("remote_image", ref, "download it and point the record at the local file")
    path = Path(ref[len("file://"):] if ref.startswith("file://") else ref)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError("missing_image", str(path)) from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise ImageError("missing_image", str(path), type(e).__name__) from None


def open_image(data: bytes, ref: str = "<bytes>"):
    """Decode bytes fully (a truncated file fails here, not at the first resize)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError("corrupt_image", ref, str(e)[:200]) from None
    return image


def to_rgb(image):
    """Any PIL mode → RGB; transparency composited on white."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / float greyscale: scale into 8 bits first
        import numpy as np

        a = np.asarray(image, dtype=np.float64)
        span = float(a.max() - a.min()) or 1.0
        image = Image.fromarray(((a - a.min()) / span * 255).astype("uint8"), "L")
    return image.convert("RGB")


def load_image(ref: str, base_dir: Path | None = None):
    """An RGB PIL image from a path, file:// or data URL; ImageError with the reason otherwise."""
    return to_rgb(open_image(image_bytes(ref, base_dir), ref))


def check_image(ref: str, base_dir: Path | None = None) -> str | None:
    """None when `ref` loads, else the snake_case reason (the data stage's quarantine reason)."""
    try:
        load_image(ref, base_dir)
    except ImageError as e:
        return e.reason
    return None


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def load_rgb(rows: list[dict], size: int, where: str = "records") -> list:
    """Each row's image as RGB at size × size. The data stage quarantined unreadable images; one that broke since
    (a file deleted after the data stage ran) stops here with its id, path and reason."""
    from PIL import Image

    from trainforge.errors import UserError

    out = []
    for r in rows:
        if not r.get("image"):
            raise UserError(f"{where}: record {r.get('id')} has no image; set data.sources[].image_field")
        try:
            image = load_image(r["image"])
        except ImageError as e:
            raise UserError(f"{where}: record {r.get('id')}: {e}; re-run the data stage to quarantine it") from None
        out.append(image if image.size == (size, size) else image.resize((size, size), Image.Resampling.BILINEAR))
    return out
