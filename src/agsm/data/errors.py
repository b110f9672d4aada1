"""The one error type of the data layer: bad user data, reported with where it is and how to fix it."""


class DataError(ValueError):
    """Image/caption data that cannot be used; the message names the file, line or value and the fix."""


class DamagedCacheError(DataError):
    """An encoded cache folder whose index or shards no longer match what was written; it must be rebuilt."""

    def __init__(self, folder, detail: str):
        super().__init__(f"the cache {folder} is damaged ({detail}); delete that folder and run again to "
                         "re-encode the data")
        self.folder, self.detail = folder, detail


class ImagesTooSmallError(DataError):
    """No image of the data reaches min_size: the training size does not fit the data.

    Carries the numbers, so a caller that knows where the size came from (a --config file, an override, the model)
    can name the option that fixes it (data/size_advice.py)."""

    def __init__(self, message: str, *, seen: int, too_small: int, unreadable: int, min_size: int, resolution: int,
                 sides: tuple[int, int] | None):
        super().__init__(message)
        self.seen, self.too_small, self.unreadable = seen, too_small, unreadable
        self.min_size, self.resolution = min_size, resolution
        self.sides = sides  # (smallest, largest) shorter side of the too-small images; None when none could be read
