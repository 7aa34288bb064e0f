"""Exit codes of the aibx command, as documented in ``aibx --help`` and the README."""

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # a step failed; a lossy translation without --allow-lossy
    USAGE = 2  # invalid input or usage
    CONNECT = 3  # cannot connect, authenticate, or verify the host key
    TIMEOUT = 4
    INTERNAL = 70
    INTERRUPTED = 130
