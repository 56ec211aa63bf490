"""Data: DICOM reading, the four sources, patch rules, folds and the TFDS dataset."""
