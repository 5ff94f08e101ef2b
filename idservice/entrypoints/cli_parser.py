"""The command line's parser: argparse, with a hint for the options people reach for first."""

from __future__ import annotations

import argparse
from typing import NoReturn

UNRECOGNIZED = "unrecognized arguments: "
# What people pass to set the address, which is IDSERVICE_LISTEN (contract §1: all
# configuration comes from IDSERVICE_* variables).
ADDRESS_OPTIONS = frozenset({"--port", "--listen", "--host", "--bind", "--address", "-p"})


class Parser(argparse.ArgumentParser):
    """Points a user who passes an address as an option to the variable that sets it."""

    def error(self, message: str) -> NoReturn:
        _, found, rest = message.partition(UNRECOGNIZED)
        if found and any(word.split("=")[0] in ADDRESS_OPTIONS for word in rest.split()):
            message += "; the address is set by IDSERVICE_LISTEN=host:port (all settings are "
            message += "IDSERVICE_* variables)"
        super().error(message)
