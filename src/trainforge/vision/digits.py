"""Built-in image data: scikit-learn's 1,797 real 8×8 handwritten digits (Alpaydin & Kaynak, UCI), upscaled.

    digits           {image: <PNG data URL>, label: "0".."9"}
    digits-captions  the same images with a caption each, English or Chinese (alternating by index), and
                     the digit as label: {image, text: "a handwritten digit seven" | "手写的数字七", label, lang}

The 8×8 arrays hold 0..16; they are scaled to 0..255 and upscaled (bicubic) to 32×32 so a patch model has
patches to attend over. Pixels travel inside each record as a PNG data URL (~0.4 kB), so the data stage's
dedup, split and quarantine treat them like any other record and no image files need installing.
"""

from __future__ import annotations

from typing import Iterator

SIZE = 32
EN = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ZH = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"]


def caption(digit: int, lang: str) -> str:
    return f"a handwritten digit {EN[digit]}" if lang == "en" else f"手写的数字{ZH[digit]}"


def digit_images(size: int = SIZE):
    """(index, PIL greyscale image, digit) for the 1,797 images."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    for i, (pixels, digit) in enumerate(zip(data.images, data.target)):
        small = Image.fromarray((pixels * (255.0 / 16.0)).round().astype(np.uint8), "L")
        yield i, small.resize((size, size), Image.Resampling.BICUBIC), int(digit)


def digits_records() -> Iterator[dict]:
    from trainforge.vision.images import png_data_url

    for i, image, digit in digit_images():
        yield {"id": f"digits:{i}", "line": i + 1, "image": png_data_url(image), "label": str(digit)}


def digits_caption_records() -> Iterator[dict]:
    from trainforge.vision.images import png_data_url

    for i, image, digit in digit_images():
        lang = "en" if i % 2 == 0 else "zh"
        yield {"id": f"digits-captions:{i}", "line": i + 1, "image": png_data_url(image), "label": str(digit),
               "text": caption(digit, lang), "meta": {"lang": lang}}
