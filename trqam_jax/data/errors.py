"""The data problems a user can fix: every one raises a `DataError` subclass whose message names
the paths / fields and the fix; launchers print it and exit non-zero."""


class DataError(Exception):
    """A data problem the user can fix; the message says how."""


class DatasetNotFoundError(DataError):
    """The dataset files are not where the data directory says."""


class CorruptDatasetError(DataError):
    """A dataset file cannot be read, is truncated, or has inconsistent contents."""


class NonFiniteDataError(DataError):
    """A dataset field contains NaN or inf."""


class UnknownEnvironmentError(DataError):
    """The environment / dataset name is not an OGBench single-task name this project supports."""


class LocomotionGenerationError(DataError):
    """A locomotion dataset was requested from the local generator (needs expert policies)."""
