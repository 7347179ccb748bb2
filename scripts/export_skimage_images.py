"""Write the scikit-image images of one split of compress/calib_data/sr_split.json as PNGs for `compress sr --data`.

    python scripts/export_skimage_images.py train data/sr_train
    python scripts/export_skimage_images.py test data/sr_test

Grey images are written as grey PNGs (the SR code reads every image as RGB).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from compress.io import atomic_output_dir

SPLIT_FILE = Path(str(resources.files("compress") / "calib_data" / "sr_split.json"))


def load_skimage(name: str) -> np.ndarray:
    """An image from `skimage.data` by name; the two views of the stereo pair are `motorcycle_left/right`."""
    from skimage import data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(data, name)()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", choices=("train", "val", "test"))
    parser.add_argument("out", type=Path, help="folder to create")
    parser.add_argument("--split-file", type=Path, default=SPLIT_FILE)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    names = json.loads(args.split_file.read_text())[args.split]
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        for name in names:
            Image.fromarray(load_skimage(name)).save(tmp / f"{name}.png")
    print(f"wrote {len(names)} images to {args.out}")


if __name__ == "__main__":
    main()
