"""The ``aibx`` command line: argument parsing and exit codes. Each verb lives in aibx/commands/<verb>.py.

Only argparse is imported here, so ``aibx --version`` and ``aibx --help`` start fast; a verb imports what it
needs (asyncssh, pywinrm, hcl2) when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NoReturn

from aibx import __version__, console
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
  aibx run template.json --host vm --on-error ask --step -v --timestamps
                                                pause before each step and after a failure; trace the scripts
  aibx run template.json --host vm --timeout 90m --no-color

exit codes:
  0    success
  1    a step failed (run), or a translation lost something (translate, without --allow-lossy)
  2    invalid input or usage
  3    cannot resolve a host name, connect, authenticate, or verify the host key
  4    timed out
  70   internal error in aibx (please report it; AIBX_DEBUG=1 shows the traceback)
  130  interrupted

environment:
  NO_COLOR         no colour in the output, as --no-color (FORCE_COLOR: colour even when not on a terminal)
  AIBX_DEBUG       on an internal error, show the Python traceback
  SSH_AUTH_SOCK    run: the ssh-agent whose keys are tried
  SSL_CERT_FILE    run: CA certificates for https downloads (default: the system's)
  PKR_VAR_NAME     translate --to aib: the value of Packer variable NAME, as in Packer
  XDG_DATA_HOME    --install-completion: where bash completion goes (default ~/.local/share)

files:
  ~/.ssh/config, ~/.ssh/known_hosts, ~/.ssh/id_*    run: SSH settings, host keys, default keys
  ./customization.log                               run: the full log of a run (--log FILE); the previous
                                                    run's is kept as customization.log.1

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


# options of Packer, Terraform, Ansible and the az CLI that aibx spells differently: the hint an unknown one gets
FOREIGN_OPTIONS = {
    "-var": "-p NAME=VALUE (an AIB template's parameter; a Packer config's variable is --var NAME=VALUE)",
    "--var": "-p NAME=VALUE",
    "-var-file": "--parameters FILE (a Packer config's variables file is --var-file FILE)",
    "--var-file": "--parameters FILE",
    "-e": "-p NAME=VALUE",
    "--extra-vars": "-p NAME=VALUE (or --parameters @FILE)",
    "-except": "--skip NAME",
    "--except": "--skip NAME",
    "-only": "--only NAME",
    "--check": "aibx plan TEMPLATE (or aibx run --dry-run)",
    "-check": "aibx plan TEMPLATE (or aibx run --dry-run)",
    "--diff": "aibx plan TEMPLATE",
    "-debug": "--step",
    "--debug": "--step",
    "-on-error": "--on-error",
    "-timestamp-ui": "--timestamps",
    "-color": "--no-color",
    "-no-color": "--no-color",
    "-force": "--yes",
    "-auto-approve": "--yes",
    "--auto-approve": "--yes",
    "-timeout": "--timeout DURATION",
    "-parallel": "--parallel N",
    "--forks": "--parallel N",
    "-f": "--parallel N",
    "-i": "--hosts-file FILE (an Ansible inventory) or --identity KEY",
    "--inventory": "--hosts-file FILE",
    "--private-key": "--identity KEY",
    "--key-file": "--identity KEY",
    "--user": "--host USER@HOST",
    "-u": "--host USER@HOST",
    "--password": "--password-env VAR (a password is never taken on the command line)",
    "--ask-pass": "--password-env VAR",
    "-k": "--password-env VAR",
    "--step-through": "--step",
    "--output": "-o FILE (translate) or --report FILE (run)",
}

# an option whose value must never be echoed in an error message
_SECRET_WORDS = ("pass", "secret", "token", "key", "sas", "credential", "sig")


def _looks_secret(option: str) -> bool:
    return any(word in option.lower() for word in _SECRET_WORDS)


def shown_arguments(arguments: Sequence[str]) -> str:
    """Unrecognised arguments as an error message may show them: the options, never their values (one of them may
    be a password: ``--password s3cret``)."""
    shown: list[str] = []
    hidden = 0
    for text in arguments:
        if text.startswith("-") and len(text) > 1:
            option, eq, _ = text.partition("=")
            shown.append(f"{option}=..." if eq else option)
        else:
            hidden += 1
    if hidden:
        shown.append(f"(and {hidden} value{'s' * (hidden != 1)}, not shown)")
    return " ".join(shown)


def foreign_hint(arguments: Sequence[str], known: Sequence[str]) -> str:
    """ "-var is not an aibx option; aibx says -p NAME=VALUE" for the first option of another tool among
    ``arguments`` that this verb has an equivalent of: Go-style single-dash spellings of its own options
    (``-on-error``, ``-only``, ``-timeout``), and the table above."""
    for text in arguments:
        option = text.partition("=")[0]
        if option in known or not option.startswith("-"):
            continue
        suggestion = FOREIGN_OPTIONS.get(option)
        first = suggestion.split()[0] if suggestion else ""
        if suggestion and (first in known or not first.startswith("-")):
            return f"{option} is not an aibx option; aibx says {suggestion}"
        double = "--" + option.lstrip("-")
        if not option.startswith("--") and len(option) > 2 and double in known:
            return f"{option} is not an aibx option; aibx says {double}"
    return ""


class Parser(argparse.ArgumentParser):
    """No abbreviations (``--password`` is not ``--password-env``), and unknown options answered with the verb's
    own usage, a hint when the option is another tool's, and never an option's value."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def known_options(self) -> list[str]:
        return list(self._option_string_actions)

    def refuse_unknown(self, extras: Sequence[str]) -> None:
        hint = foreign_hint(extras, self.known_options())
        message = f"unrecognized arguments: {shown_arguments(extras)}"
        self.error(f"{message}\n{hint}" if hint else message)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        hint = foreign_hint([a for a in argv if a.startswith("-")], self.known_options())
        if hint and self._subparsers is None:  # a verb's parser: -var would read as -v -a -r
            self.error(hint)
        return super().parse_known_args(argv, namespace)

    def error(self, message: str) -> NoReturn:
        about, colon, _ = message.partition(":")
        if about.startswith("argument ") and colon and "expected" not in message and _looks_secret(about):
            message = f"{about}: invalid value (not shown)"
        super().error(message)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=min(100, _terminal_width()))


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


def build_parser() -> Parser:
    parser = Parser(prog="aibx", description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
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
    for verb_parser in sub.choices.values():
        verb_parser.add_argument(
            "--no-color", action="store_true", help="no colour in the output (as the NO_COLOR variable)"
        )
    return parser


def _command(verb: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"aibx.commands.{verb}")
    except ModuleNotFoundError as exc:
        if exc.name == f"aibx.commands.{verb}":
            return None
        raise


def _parse(parser: Parser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse; arguments no option takes are refused by the verb's own parser (its usage, not the top-level one)."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        verb_parser = _verb_parser(parser, getattr(args, "verb", None))
        (verb_parser or parser).refuse_unknown(extras)
    return args


def _verb_parser(parser: Parser, verb: str | None) -> Parser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and verb in action.choices:
            found = action.choices[verb]
            return found if isinstance(found, Parser) else None
    return None


def quiet_dependencies() -> None:
    """Python warnings (asyncssh's CryptographyDeprecationWarning: DSA, ...) are for the developers of aibx, never
    the user's console; AIBX_DEBUG=1 shows them."""
    if not os.environ.get("AIBX_DEBUG"):
        warnings.simplefilter("ignore")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_dependencies()
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code or 0)
    if not args.verb:
        parser.print_help()
        return ExitCode.USAGE
    console.COLOR_OFF = bool(getattr(args, "no_color", False))
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
