"""Write the scikit-image images of one split of compress/calib_data/sr_split.json as PNGs for `compress sr --data`.

    python scripts/export_skimage_images.py train data/sr_train
    python scripts/export_skimage_images.py test data/sr_test

Grey images are written as grey PNGs (the SR code reads every image as RGB).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image

from compress.io import atomic_output_dir
from compress.sr.files import SPLIT_FILE, load_skimage


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
