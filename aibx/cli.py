"""The ``aibx`` command line: argument parsing and exit codes. Each verb lives in aibx/commands/<verb>.py.

Only argparse is imported here, so ``aibx --version`` and ``aibx --help`` start fast; a verb imports what it
needs (asyncssh, pywinrm, hcl2) when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from aibx import __version__
from aibx.exitcodes import ExitCode

VERBS = ("validate", "translate", "plan", "run")

DESCRIPTION = """\
aibx checks, translates and runs Azure VM Image Builder (AIB) image templates.

  validate   catch what the AIB service would reject, before you upload
  translate  convert between AIB templates and Packer (HCL2 or legacy JSON)
  plan       show exactly what each customizer would do on the VM
  run        run the customizers on a VM you own, over SSH or WinRM, or locally
"""

EPILOG = """\
exit codes:
  0    success
  1    a step failed (run), or a translation lost something (translate, without --allow-lossy)
  2    invalid input or usage
  3    cannot connect, authenticate, or verify the host key
  4    timed out
  70   internal error in aibx (please report it; AIBX_DEBUG=1 shows the traceback)
  130  interrupted

Run "aibx VERB --help" for the options and examples of each verb.
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=min(100, _terminal_width()))


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aibx", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"aibx {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        module = _command(verb)
        if module is not None:
            module.add_parser(sub)
    return parser


def _command(verb: str):
    try:
        return importlib.import_module(f"aibx.commands.{verb}")
    except ModuleNotFoundError as exc:
        if exc.name == f"aibx.commands.{verb}":
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    if not args.verb:
        parser.print_help()
        return ExitCode.USAGE
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("aibx: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as exc:
        if os.environ.get("AIBX_DEBUG"):
            raise
        print(
            f"aibx: internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in aibx. Run again with AIBX_DEBUG=1 to see the traceback, and please report it.",
            file=sys.stderr,
        )
        return ExitCode.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
