"""`shuzheng keys …` (data keys and the master key)."""


def register(sub) -> None:
    """Adds this app's subcommands to the `shuzheng` parser."""
