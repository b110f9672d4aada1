"""The one error type of the data layer: bad user data, reported with where it is and how to fix it."""


class DataError(ValueError):
    """Image/caption data that cannot be used; the message names the file, line or value and the fix."""
