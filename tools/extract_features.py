"""Extract per-frame video features into an HDF5 file. See `python tools/extract_features.py --help`.

Example: python tools/extract_features.py videos/ --out features.hdf5 --encoder mobilenet_v2 --fps 1
"""

import sys

from g2l.video.feature_extraction import extract_features_main

if __name__ == "__main__":
    sys.exit(extract_features_main())
