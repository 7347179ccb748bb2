"""Write compress/data/digits16.npz: scikit-learn's digits with a fixed, stratified split.

Run once (needs scikit-learn); the file is committed so the runtime does not need it.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HELDOUT = 360
SEED = 0


def main() -> None:
    digits = load_digits()
    images = digits.images.astype(np.uint8)  # values 0..16
    idx_train, idx_heldout = train_test_split(
        np.arange(len(images)), test_size=HELDOUT, random_state=SEED, stratify=digits.target
    )
    out = Path(__file__).resolve().parents[1] / "compress" / "data" / "digits16.npz"
    np.savez_compressed(
        out,
        train_images=images[idx_train], train_labels=digits.target[idx_train].astype(np.uint8),
        heldout_images=images[idx_heldout], heldout_labels=digits.target[idx_heldout].astype(np.uint8),
        train_index=idx_train.astype(np.int16), heldout_index=idx_heldout.astype(np.int16),
    )
    print(f"wrote {out}: {len(idx_train)} train, {len(idx_heldout)} held-out")


if __name__ == "__main__":
    main()
