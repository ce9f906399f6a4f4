"""Errors that the command line reports in one line with exit code 2."""


class ConfigError(ValueError):
    """Invalid user input: a bad configuration, argument or file."""
