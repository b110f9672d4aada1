"""The one error type of the data layer: bad user data, reported with where it is and how to fix it."""


class DataError(ValueError):
    """Image/caption data that cannot be used; the message names the file, line or value and the fix."""


class DamagedCacheError(DataError):
    """An encoded cache folder whose index or shards no longer match what was written; it must be rebuilt."""

    def __init__(self, folder, detail: str):
        super().__init__(f"the cache {folder} is damaged ({detail}); delete that folder and run again to "
                         "re-encode the data")
        self.folder, self.detail = folder, detail
