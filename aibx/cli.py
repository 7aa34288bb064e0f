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
from types import ModuleType
from typing import Any

from aibx import __version__
from aibx.errors import AibxError, exit_code
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
examples:
  aibx validate template.json --strict          check before uploading; exit 2 on any problem
  aibx translate build.pkr.hcl --to aib -o template.json
  aibx plan template.json                       the exact commands, scripts and uploads, nothing runs
  aibx run template.json --host azureuser@vm.example.com --report report.json

exit codes:
  0    success
  1    a step failed (run), or a translation lost something (translate, without --allow-lossy)
  2    invalid input or usage
  3    cannot connect, authenticate, or verify the host key
  4    timed out
  70   internal error in aibx (please report it; AIBX_DEBUG=1 shows the traceback)
  130  interrupted

environment:
  NO_COLOR         no colour in the output (FORCE_COLOR: colour even when not on a terminal)
  AIBX_DEBUG       on an internal error, show the Python traceback
  SSH_AUTH_SOCK    run: the ssh-agent whose keys are tried
  SSL_CERT_FILE    run: CA certificates for https downloads (default: the system's)
  PKR_VAR_NAME     translate --to aib: the value of Packer variable NAME, as in Packer
  XDG_DATA_HOME    --install-completion: where bash completion goes (default ~/.local/share)

files:
  ~/.ssh/config, ~/.ssh/known_hosts, ~/.ssh/id_*    run: SSH settings, host keys, default keys
  ./customization.log                               run: the full log of a run (--log FILE)

see also:
  aibx VERB --help for each verb's options and examples; docs/ in the aibx sources: diagnostics.md (every
  code), translate.md (the AIB <-> Packer mapping), compatibility.md (what works where), guide-preflight.md,
  guide-migrate.md, guide-ci.md; packer(1), ssh(1), az image builder --help
"""


class _Completion(argparse.Action):
    """--print-completion / --install-completion: aibx.completion (and shtab) are imported only then."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from aibx import completion

        completion.run(parser, option_string or "", values if isinstance(values, str) or values is None else None)


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
    shells = ("bash", "zsh")
    parser.add_argument(
        "--print-completion",
        action=_Completion,
        choices=shells,
        metavar="SHELL",
        help="print the bash or zsh completion script",
    )
    parser.add_argument(
        "--install-completion",
        action=_Completion,
        nargs="?",
        choices=shells,
        metavar="SHELL",
        help="install completion for SHELL (default: your $SHELL) where it loads by itself",
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        module = _command(verb)
        if module is not None:
            module.add_parser(sub)
    return parser


def _command(verb: str) -> ModuleType | None:
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
    except AibxError as exc:  # an error the user can act on: its message and its exit code, never a traceback
        print(f"aibx: {exc}", file=sys.stderr)
        return exit_code(exc)
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
