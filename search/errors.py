"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input; the message names the bad value."""


class ConfigError(UserError, ValueError):
    """A setting is wrong."""


class DataError(UserError):
    """A dataset could not be read; the message names what and where."""
