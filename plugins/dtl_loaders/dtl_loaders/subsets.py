"""The names that mark a predefined split, as folder names or manifest values."""

#: Name (compared in lower case) -> subset.
SUBSET_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
