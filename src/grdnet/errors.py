"""Errors users can act on. Each message names the file or setting, the problem and the fix."""


class GrdnetError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class ConfigError(GrdnetError):
    """A configuration value or file is wrong."""


class DataError(GrdnetError):
    """A dataset file or folder is missing, unreadable or inconsistent."""


class CheckpointError(GrdnetError):
    """A checkpoint is missing, corrupt or from an incompatible version."""


class TrainingError(GrdnetError):
    """Training cannot go on (for example a NaN or infinite loss)."""
