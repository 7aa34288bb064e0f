"""Packer provisioners → AIB customizers: one ``StepMapper`` per provisioner of a build (see from_packer.py for
the rest of a source, and docs/translate.md for the mapping).

Shell provisioners that are not plain inline lines (a custom ``execute_command`` such as ``sudo sh -c '{{ .Vars }}
{{ .Path }}'``, environment variables with scripts, another shebang, ``valid_exit_codes``) become a Shell step that
stages the script on the VM and runs Packer's own command line for it, so it behaves as it did under Packer. Local
files are published (``upload_base_uri``: a URI and a sha256) or inlined when small.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import re
import tarfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aibx import model
from aibx.document import Unresolved
from aibx.translators import idioms
from aibx.translators.hcl_eval import BuildValue
from aibx.translators.local_files import LocalFileError, is_folder, outside_folder, read_local_file
from aibx.translators.packer_config import Section, text_of, truthy
from aibx.translators.report import Status

if TYPE_CHECKING:
    from aibx.translators.from_packer import SourceTranslator

INLINE_LIMIT = 64 * 1024  # bytes of a local file inlined into the template without --upload-base-uri
DEFAULT_EXECUTE = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"
DEFAULT_SHEBANG = "/bin/sh -e"
DISCONNECT_CODE = 2300218  # the exit status Packer gives a disconnect: in valid_exit_codes, a disconnect is fine
_GO_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")
_SUDO_PASSWORD_PIPE = re.compile(r"^\s*echo\s+(?:'[^']*'|\"[^\"]*\"|\S+)\s*\|\s*(?=.*\bsudo\b)")
_UNSUPPORTED_PROVISIONERS = {
    "shell-local": "it runs on the machine running Packer, not on the VM: run it before or after the AIB build",
    "ansible": "AIB cannot run Ansible from outside the VM: install and run Ansible in a Shell customizer",
    "ansible-local": "AIB has no Ansible customizer: run ansible-playbook in a Shell customizer",
    "chef-client": "AIB has no Chef customizer", "chef-solo": "AIB has no Chef customizer",
    "puppet-masterless": "AIB has no Puppet customizer", "puppet-server": "AIB has no Puppet customizer",
    "salt-masterless": "AIB has no Salt customizer", "inspec": "AIB has no InSpec customizer",
    "converge": "AIB has no Converge customizer", "azure-dtlartifact": "DevTest Labs artifacts need DevTest Labs",
    "hcp-sbom": "AIB has no SBOM step",
}  # fmt: skip
_META = {"name", "only", "except", "pause_before", "max_retries", "timeout", "override", "type", "pause_after"}


def provisioner_subject(p: Section) -> str:
    kind = p.labels[0] if p.labels else p.type
    name = p.value("name")
    line = f'provisioner[{p.index}] "{kind}"' if p.index is not None else f'provisioner "{kind}"'
    return f'{line} "{name}"' if isinstance(name, str) and name else line


class StepMapper:
    """One Packer provisioner → zero or more AIB steps, with its report entries."""

    def __init__(self, parent: SourceTranslator, p: Section, validator: bool) -> None:
        self.parent = parent
        self.p = p
        self.validator = validator
        self.kind = p.labels[0] if p.labels else p.type
        self.report = parent.report
        self.subject = provisioner_subject(p)
        self.used: set[str] = set(_META)
        name = p.value("name")
        self.name: str | None = name if isinstance(name, str) and name else None
        self.windows = parent.windows

    def take(self, key: str) -> Any:
        self.used.add(key)
        return self.p.value(key)

    def texts(self, *keys: str) -> bool:
        """Whether each of these settings is absent or a string; if one is not, the provisioner is dropped (Packer
        would refuse it, or aibx cannot know what it does)."""
        for key in keys:
            value = self.p.value(key)
            if value is not None and not isinstance(value, str):
                self.done("dropped", f"{key} must be a string, not {_unknown(value)}")
                return False
        return True

    def exit_codes(self) -> list[int] | None:
        """valid_exit_codes as Packer decodes it (numbers, or numeric strings in JSON templates), [0] when not
        given; None (the provisioner dropped) when it holds anything else."""
        codes = self.take("valid_exit_codes")
        if codes is None or codes == []:
            return [0]
        out = []
        for code in codes if isinstance(codes, list) else [codes]:
            if isinstance(code, int) and not isinstance(code, bool):
                out.append(code)
            elif isinstance(code, str) and re.fullmatch(r"\s*-?[0-9]{1,10}\s*", code):
                out.append(int(code))
            else:
                self.done("dropped", f"valid_exit_codes must be numbers, not {_unknown(code)}")
                return None
        return out

    def note(self, status: str, key: str, detail: str) -> None:
        getattr(self.report, status)(f"{self.subject}.{key}", detail, self.p.where(key))

    def steps(self) -> list[model.Step]:
        handler = {
            "shell": self.shell,
            "powershell": self.powershell,
            "file": self.file,
            "windows-restart": self.windows_restart,
            "windows-update": self.windows_update,
            "windows-shell": self.windows_shell,
            "sleep": self.sleep,
            "breakpoint": self.breakpoint,
        }.get(self.kind)
        if handler is None:
            why = _UNSUPPORTED_PROVISIONERS.get(self.kind, "AIB has no equivalent customizer")
            self.report.dropped(self.subject, why, self.p.location)
            return []
        before = self.pause("pause_before")
        main = handler()
        after = self.pause("pause_after")
        self.meta()
        if main and self.validator:
            allowed = (model.ShellStep, model.PowerShellStep, model.FileStep)
            for s in main:
                if not isinstance(s, allowed):
                    self.report.dropped(self.subject, f"AIB has no {s.kind} validator", self.p.location)
            main = [s for s in main if isinstance(s, allowed)]
        leftovers = [k for k in self.p.attrs if k not in self.used] if main else []
        for key in leftovers:
            self.note("dropped", key, f"the {self.kind} provisioner's {key} has no AIB equivalent")
        return [*before, *main, *after] if main else []

    def meta(self) -> None:
        retries = self.p.value("max_retries")
        if retries not in (None, 0, "0", ""):
            self.note("dropped", "max_retries", "AIB does not retry a customizer")
        timeout = self.p.value("timeout")
        if timeout not in (None, "", "0", "0s"):
            self.note(
                "dropped", "timeout", "AIB has no per-customizer timeout (buildTimeoutInMinutes bounds the build)"
            )

    def pause(self, key: str) -> list[model.Step]:
        value = self.p.value(key)
        if not isinstance(value, str) or not value:
            return []
        seconds = model.parse_duration(value)
        if seconds is None:
            self.note("dropped", key, f"{value!r} is not a duration")
            return []
        if seconds == 0:
            return []
        label = f"{self.name or self.kind}: {key} {value}"
        if self.windows:
            step: model.Step = model.PowerShellStep(name=label, inline=idioms.powershell_sleep(seconds))
        else:
            step = model.ShellStep(name=label, inline=idioms.shell_sleep(seconds))
        self.note("approximated", key, f"a {step.kind} customizer that sleeps {value}")
        return [step]

    def done(self, status: str, detail: str) -> None:
        if self.validator:
            detail += " (an in-VM validation, marked by aibx's comment)"
        getattr(self.report, status)(self.subject, detail, self.p.location)

    # ------------------------------------------------------------------------------------------- bodies
    def bodies(self) -> list[tuple[str, bytes | None, Path | None]] | None:
        """(label, content, local path) of each script: inline (one), script (one), scripts (many)."""
        inline = self.take("inline")
        script = self.take("script")
        scripts = self.take("scripts")
        given = [x for x in (inline, script, scripts) if x not in (None, [], "")]
        if len(given) != 1:
            self.done("dropped", "needs exactly one of inline, script and scripts")
            return None
        if inline not in (None, []):
            # a variable without a value is an open value (a <placeholder>), carried as such; a value only known
            # while Packer builds (build.*) is not
            if not isinstance(inline, list) or not all(isinstance(x, (str, Unresolved)) for x in inline):
                self.done("dropped", "inline is not known before Packer builds: " + _unknown(inline))
                return None
            return [("inline", None, None)]
        paths = [script] if script not in (None, "") else scripts
        if not isinstance(paths, list) or not all(isinstance(x, str) for x in paths):
            self.done("dropped", "script paths are not known: " + _unknown(paths))
            return None
        out: list[tuple[str, bytes | None, Path | None]] = []
        for raw in paths:
            local = self.parent.local_file(raw)
            if not self.may_read(raw, local):
                return None
            try:
                data = read_local_file(local)
            except LocalFileError as exc:
                self.done("dropped", f"script {raw}: {exc.reason} (Packer would refuse it too)")
                return None
            out.append((raw, data, local))
        return out

    def env(self) -> dict[str, str] | None:
        env: dict[str, str] = {}
        pairs = self.take("environment_vars") or []
        if not isinstance(pairs, list):
            pairs = [pairs]
        for item in pairs:
            if not isinstance(item, str) or "=" not in item:
                self.note("dropped", "environment_vars", f"not KEY=VALUE: {_unknown(item)}")
                return None
            k, _, v = item.partition("=")
            env[k] = v
        mapping = self.take("env") or {}
        if isinstance(mapping, dict):
            for k, v in mapping.items():
                if not isinstance(v, str):
                    self.note("dropped", "env", f"{k}: {_unknown(v)}")
                    return None
                env[k] = v
        return env

    def may_read(self, raw: str, local: Path) -> bool:
        """Whether aibx may read this local file (or folder) into the translation: one inside the configuration's
        folder, or any with --allow-local-files. A configuration's author is not trusted with the user's files
        (AIB078, the provisioner dropped)."""
        if self.parent.options.allow_local_files:
            return True
        problem = outside_folder(local, Path(self.parent.config.root))
        if problem is None:
            return True
        detail = (
            f"{raw} {problem}: not read, since whatever it names would be copied into the template; pass "
            "--allow-local-files if you trust this configuration"
        )
        self.report.add(Status.DROPPED, self.subject, detail, self.p.location, code="AIB078")
        return False

    def fits_inline(self, data: bytes, raw: str) -> bool:
        if len(data) > self.parent.options.inline_limit:
            self.done(
                "dropped",
                f"{raw} is {len(data)} bytes: too large to inline; pass --upload-base-uri to publish it",
            )
            return False
        return True

    # ------------------------------------------------------------------------------------------- shell
    def shell(self) -> list[model.Step]:
        """The shell provisioner's steps, with Packer's expect_disconnect (or 2300218, the status Packer gives a
        disconnect, in valid_exit_codes) as the engine's hint for aibx run of a Packer configuration; the AIB writer
        ignores it."""
        codes = self.p.value("valid_exit_codes")
        expect = truthy(self.p.value("expect_disconnect")) or (
            isinstance(codes, list) and any(str(c).strip() == str(DISCONNECT_CODE) for c in codes)
        )
        steps = self._shell_steps()
        for step in steps:
            if isinstance(step, model.ShellStep):
                step.expect_disconnect = expect
        return steps

    def _shell_steps(self) -> list[model.Step]:
        if self.windows:
            self.done("dropped", "a shell provisioner on a Windows image: use powershell")
            return []
        bodies = self.bodies()
        env = self.env()
        if bodies is None or env is None:
            return []
        if not self.texts("execute_command", "inline_shebang", "remote_folder", "remote_file", "remote_path"):
            return []
        codes_list = self.exit_codes()
        if codes_list is None:
            return []
        execute = self.take("execute_command")
        shebang = self.take("inline_shebang") or DEFAULT_SHEBANG
        skip_clean = truthy(self.take("skip_clean"))
        binary = truthy(self.take("binary"))
        remote_folder = self.take("remote_folder") or "/tmp"
        remote_file = self.take("remote_file")
        remote_path = self.take("remote_path")
        self.take("env_var_format")
        self.take("use_env_var_file")
        self._note_shell_retry_settings()
        plain_exec = execute is None or _normal(execute) == _normal(DEFAULT_EXECUTE)
        inline = bodies[0][1] is None
        lines: list[model.Text] = (self.p.value("inline") or []) if inline else []
        if plain_exec and codes_list == [0] and inline and shebang == DEFAULT_SHEBANG:
            own = self.own_idiom(lines)
            if own is not None:
                return [own]
            step = model.ShellStep(name=self.name, inline=[*idioms.shell_exports(env), *lines])
            self.done("mapped", "Shell inline" + (" (environment_vars as export lines)" if env else ""))
            return [step]
        if inline and lines is not None and self.open_lines(lines):
            return []
        upload = self.parent.options.upload_base_uri
        if plain_exec and codes_list == [0] and not inline and not env and upload:
            return self._published_shell_steps(bodies)
        # the general case: stage each script on the VM and run it with Packer's own command line
        how: list[str] = []
        command = self._packer_command(execute, how)
        if command is None:
            return []
        pre: list[model.Step] = []
        script_lines: list[str] = []
        env_file = None
        if "EnvVarFile" in _GO_FIELD.findall(command):
            env_file = f"{remote_folder}/varfile_aibx_{self.parent.next_id()}.sh"
            script_lines += idioms.linux_write_file(
                env_file, "".join(f"{x}\n" for x in idioms.shell_exports(env)).encode()
            )
        for raw, data, local in bodies:
            n = self.parent.next_id()
            path = remote_path or f"{remote_folder}/{remote_file or f'script_aibx_{n}.sh'}"
            if data is None:
                content = ("#!" + shebang + "\n" + "\n".join(map(str, lines)) + "\n").encode("utf-8")
            else:
                content = data if binary else data.replace(b"\r\n", b"\n")
                if not binary and not content.endswith(b"\n"):
                    content += b"\n"
            if data is not None and upload:
                uri, sha = self.parent.publish(local, raw)
                label = f"{self.name or 'shell'}: upload {Path(raw).name}"
                pre.append(model.FileStep(name=label, source_uri=uri, destination=path, sha256_checksum=sha))
            else:
                if data is not None and not self.fits_inline(content, raw):
                    return []
                script_lines += idioms.linux_write_file(path, content)
            rendered = _render(command, path, idioms.packer_vars(env), env_file)
            script_lines.append(f"chmod 0755 {idioms.sh_quote(path)}")
            script_lines += _checked_run(rendered, codes_list)
            if not skip_clean:
                script_lines.append(f"rm -f {idioms.sh_quote(path)}")
        if env_file and not skip_clean:
            script_lines.append(f"rm -f {idioms.sh_quote(env_file)}")
        how_text = _staged_shell_how(len(bodies), bool(pre), command, codes_list, shebang if inline else None)
        self.done("approximated", "; ".join([how_text, *how]))
        return [*pre, model.ShellStep(name=self.name, inline=script_lines)]

    def _note_shell_retry_settings(self) -> None:
        for key, advice in (
            (
                "expect_disconnect",
                "AIB has no expect_disconnect: a reboot in this step may fail it on AIB "
                "(aibx run waits for the VM to come back)",
            ),
            ("start_retry_timeout", "AIB's own retry timeout applies"),
        ):
            value = self.take(key)
            if value not in (None, "") and (key != "expect_disconnect" or truthy(value)):
                self.note("approximated", key, advice)

    def _published_shell_steps(self, bodies: list[tuple[str, bytes | None, Path | None]]) -> list[model.Step]:
        """Each script published under --upload-base-uri: a Shell scriptUri step with its checksum."""
        out: list[model.Step] = []
        for i, (raw, _data, local) in enumerate(bodies):
            uri, sha = self.parent.publish(local, raw)
            name = self.name if len(bodies) == 1 else f"{self.name or 'shell'} ({i + 1}/{len(bodies)})"
            out.append(model.ShellStep(name=name, script_uri=uri, sha256_checksum=sha))
        self.done("mapped", f"Shell scriptUri with sha256Checksum ({len(bodies)} published file(s))")
        return out

    def _packer_command(self, execute: object, how: list[str]) -> str | None:
        """Packer's execute_command as the staged script runs it; None (and dropped) when it has template fields
        aibx cannot fill."""
        command = execute if isinstance(execute, str) else DEFAULT_EXECUTE
        stripped = _SUDO_PASSWORD_PIPE.sub("", command)
        if stripped != command:
            command = stripped
            how.append("the sudo password pipe is not needed (AIB's build user has passwordless sudo)")
        unknown = [f for f in _GO_FIELD.findall(command) if f not in ("Path", "Vars", "EnvVarFile")]
        if unknown or "{{" in _GO_FIELD.sub("", command):
            self.note(
                "dropped", "execute_command", f"template fields aibx cannot fill: {', '.join(unknown) or command}"
            )
            return None
        return command

    def own_idiom(self, lines: list[model.Text]) -> model.Step | None:
        """aibx's scriptUri and File downloads (AIB → HCL) read back as what they were; a URI or path holding
        a variable without a value stays open (a <placeholder>)."""
        os_type = self.parent.tpl.os_type
        texts = [x.text if isinstance(x, Unresolved) else x for x in lines]
        open_reason = next((x.reason for x in lines if isinstance(x, Unresolved)), None)

        def text(value: str | None) -> model.Text | None:
            if open_reason is not None and value is not None and _PLACEHOLDER.search(value):
                return Unresolved(value, open_reason)
            return value

        dl = idioms.recognise_script_download(texts, os_type)
        if dl is not None:
            cls = model.PowerShellStep if self.windows else model.ShellStep
            self.done("mapped", f"{cls.kind} scriptUri (aibx's download idiom)")
            return cls(name=self.name, script_uri=text(dl.uri), sha256_checksum=dl.sha256)
        fl = idioms.recognise_file_download(texts, os_type)
        if fl is not None:
            self.done("mapped", "File sourceUri (aibx's download idiom)")
            return model.FileStep(
                name=self.name, source_uri=text(fl.uri), destination=text(fl.path), sha256_checksum=fl.sha256
            )
        return None

    def open_lines(self, lines: list[model.Text]) -> bool:
        """Whether ``lines`` hold a variable without a value where aibx needs the text (a script it writes):
        then the step is dropped, never written with a placeholder as if it were the text."""
        if any(isinstance(x, Unresolved) for x in lines):
            self.done("dropped", "inline holds a variable without a value: " + _unknown(lines) + "; pass it with --var")
            return True
        return False

    # ------------------------------------------------------------------------------------------- powershell
    def powershell(self) -> list[model.Step]:
        bodies = self.bodies()
        env = self.env()
        if bodies is None or env is None:
            return []
        step = model.PowerShellStep(name=self.name)
        how: list[str] = []
        status = self._elevated_user(step, how)
        codes = self.exit_codes()
        if codes is None:
            return []
        if self.p.value("valid_exit_codes") not in (None, []):
            step.valid_exit_codes = codes
            how.append("valid_exit_codes")
        policy = self.take("execution_policy")
        if isinstance(policy, str) and policy.lower() not in ("bypass", ""):
            self.note("approximated", "execution_policy", "AIB runs PowerShell with execution policy bypass")
        debug = self.take("debug_mode")
        prefix: list[str] = []
        if isinstance(debug, int) and debug > 0:
            prefix.append(f"Set-PsDebug -Trace {debug}")
            how.append("debug_mode as Set-PsDebug")
        self._note_powershell_settings_aib_owns()
        env_lines = idioms.powershell_env(env)
        if env:
            how.append("environment_vars as $env: lines")
        return self._powershell_steps(step, bodies, env, env_lines, prefix, how, status)

    def _elevated_user(self, step: model.PowerShellStep, how: list[str]) -> str:
        """elevated_user as runElevated (and runAsSystem for SYSTEM); the mapping's status."""
        user = self.take("elevated_user")
        self.take("elevated_password")
        if user in (None, ""):
            return "mapped"
        if isinstance(user, str) and user.lower() in ("system", "nt authority\\system"):
            step.run_elevated, step.run_as_system = True, True
            how.append("elevated_user SYSTEM as runElevated + runAsSystem")
        elif user == BuildValue("User") or (isinstance(user, str) and user == self.parent.username):
            step.run_elevated = True
            how.append("elevated_user (the build user) as runElevated")
        else:
            step.run_elevated = True
            how.append(f"elevated_user {_unknown(user)}: runElevated runs as AIB's build user instead")
            return "approximated"
        return "mapped"

    def _note_powershell_settings_aib_owns(self) -> None:
        for key, detail in (
            ("use_pwsh", "AIB runs Windows PowerShell (powershell.exe), not pwsh"),
            ("execute_command", "AIB runs the script with its own PowerShell command line"),
            ("elevated_execute_command", "AIB runs the script with its own PowerShell command line"),
            ("start_retry_timeout", "AIB's own retry timeout applies"),
            ("remote_path", "AIB chooses where the script goes"),
            ("remote_env_var_path", "AIB chooses where the script goes"),
            ("skip_clean", "AIB removes its temporary files itself"),
            ("env_var_format", "environment variables are set as $env: lines"),
            ("elevated_env_var_format", "environment variables are set as $env: lines"),
        ):
            value = self.take(key)
            if value not in (None, False, ""):
                self.note("approximated", key, detail)

    def _powershell_steps(
        self,
        step: model.PowerShellStep,
        bodies: list[tuple[str, bytes | None, Path | None]],
        env: dict[str, str],
        env_lines: list[str],
        prefix: list[str],
        how: list[str],
        status: str,
    ) -> list[model.Step]:
        """The step(s) for the scripts: inline lines, published scripts (--upload-base-uri), or scripts written to
        the VM by an inline step."""
        if bodies[0][1] is None:
            lines = self.p.value("inline")
            own = self.own_idiom(lines) if not env and not prefix else None
            if isinstance(own, model.PowerShellStep):
                own.run_elevated, own.run_as_system = step.run_elevated, step.run_as_system
                own.valid_exit_codes = step.valid_exit_codes
            if own is not None:
                return [own]
            step.inline = [*prefix, *env_lines, *lines]
            self.done(status, "PowerShell inline" + (f" ({'; '.join(how)})" if how else ""))
            return [step]
        upload = self.parent.options.upload_base_uri
        out: list[model.Step] = []
        if upload and not env and not prefix:
            for i, (raw, _data, local) in enumerate(bodies):
                uri, sha = self.parent.publish(local, raw)
                s = model.PowerShellStep(
                    name=step.name if len(bodies) == 1 else f"{step.name or 'powershell'} ({i + 1}/{len(bodies)})",
                    script_uri=uri,
                    sha256_checksum=sha,
                    run_elevated=step.run_elevated,
                    run_as_system=step.run_as_system,
                    valid_exit_codes=step.valid_exit_codes,
                )
                out.append(s)
            self.done(status, "PowerShell scriptUri with sha256Checksum" + (f" ({'; '.join(how)})" if how else ""))
            return out
        lines_all: list[str] = [*prefix, *env_lines]
        valid = ", ".join(str(c) for c in (step.valid_exit_codes or [0]))
        for i, (raw, data, _local) in enumerate(bodies):
            assert data is not None
            if not self.fits_inline(data, raw):
                return []
            path = f"C:\\Windows\\Temp\\aibx-{self.parent.next_id()}-{Path(raw).name}"
            if not path.lower().endswith(".ps1"):
                path += ".ps1"
            lines_all += [
                *_windows_stage(path, data),
                f"& {idioms.ps_quote(path)}",
                "$aibxExitCode = $LASTEXITCODE",
                f"Remove-Item -Force -LiteralPath {idioms.ps_quote(path)}",
            ]
            if i < len(bodies) - 1:  # Packer stops at the first script that fails
                lines_all.append(f"if (@({valid}) -notcontains $aibxExitCode) {{ exit $aibxExitCode }}")
        lines_all.append("exit $aibxExitCode")
        step.inline = lines_all
        self.done(
            "approximated",
            "PowerShell inline that writes the script to the VM and runs it (pass --upload-base-uri to publish "
            "scripts instead)" + (f"; {'; '.join(how)}" if how else ""),
        )
        return [step]

    # ------------------------------------------------------------------------------------------- file
    def file(self) -> list[model.Step]:
        direction = self.take("direction")
        destination = self.take("destination")
        source = self.take("source")
        sources = self.take("sources")
        content = self.take("content")
        self.take("generated")
        if isinstance(direction, str) and direction.lower() == "download":
            self.done("dropped", "AIB cannot copy files from the VM to the machine running the build")
            return []
        if not isinstance(destination, str) or not destination:
            self.done("dropped", "destination is missing or unknown: " + _unknown(destination))
            return []
        if isinstance(content, str):
            return [self.write_step(destination, content.encode("utf-8"), "content")]
        paths = [source] if isinstance(source, str) and source else sources
        if not isinstance(paths, list) or not paths or not all(isinstance(x, str) for x in paths):
            self.done("dropped", "source is missing or unknown: " + _unknown(paths))
            return []
        out: list[model.Step] = []
        for raw in paths:
            local = self.parent.local_file(raw)
            target = destination
            if target.endswith(("/", "\\")) or len(paths) > 1:
                sep = "\\" if self.windows else "/"
                target = target.rstrip("/\\") + sep + local.name
            if not self.may_read(raw, local):
                return []
            if is_folder(local):
                steps = self.directory(raw, local, destination)
                if steps is None:
                    return []
                out += steps
                continue
            try:
                data = read_local_file(local)
            except LocalFileError as exc:
                self.done("dropped", f"{raw}: {exc.reason} (Packer would refuse it too)")
                return []
            if self.parent.options.upload_base_uri:
                uri, sha = self.parent.publish(local, raw)
                out.append(model.FileStep(name=self.name, source_uri=uri, destination=target, sha256_checksum=sha))
                continue
            if not self.fits_inline(data, raw):
                return []
            out.append(self.write_step(target, data, raw, report=False))
        if self.parent.options.upload_base_uri:
            self.done("mapped", "File customizer(s) with sourceUri and sha256Checksum (published files)")
        else:
            self.done(
                "approximated",
                "the file's content written by an inline step (pass --upload-base-uri to "
                "publish files as File customizers instead)",
            )
        return out

    def write_step(self, destination: str, data: bytes, what: str, report: bool = True) -> model.Step:
        if self.windows:
            # Packer's WinRM upload creates the parent folder; so does this
            folder = f"(Split-Path -Parent {idioms.ps_quote(destination)})"
            parent = f"New-Item -ItemType Directory -Force -Path {folder} | Out-Null"
            lines = [parent, *idioms.windows_write_file(destination, data)]
            step: model.Step = model.PowerShellStep(name=self.name, inline=lines)
        else:
            step = model.ShellStep(name=self.name, inline=idioms.linux_write_file(destination, data))
        if report:
            self.done("approximated", f"{step.kind} inline that writes the {what} to {destination}")
        return step

    def directory(self, raw: str, local: Path, destination: str) -> list[model.Step] | None:
        """A folder: published as an archive with an extraction step (rsync semantics of a trailing /)."""
        if not self.parent.options.upload_base_uri:
            self.done(
                "dropped",
                f"{raw} is a folder: AIB copies single files; pass --upload-base-uri to publish "
                "it as an archive with an extraction step",
            )
            return None
        into = destination if raw.endswith(("/", "\\")) else posixpath.join(destination.rstrip("/\\"), local.name)
        n = self.parent.next_id()
        if self.windows:
            data = _zip(local)
            uri, sha = self.parent.publish(None, f"{local.name}-{n}.zip", data)
            staged = f"C:\\Windows\\Temp\\aibx-{local.name}-{n}.zip"
            extract: model.Step = model.PowerShellStep(
                name=f"{self.name or 'file'}: extract {local.name}",
                inline=[
                    f"Expand-Archive -Force -LiteralPath {idioms.ps_quote(staged)} "
                    f"-DestinationPath {idioms.ps_quote(into)}",
                    f"Remove-Item -Force -LiteralPath {idioms.ps_quote(staged)}",
                ],
            )
        else:
            data = _tar(local)
            uri, sha = self.parent.publish(None, f"{local.name}-{n}.tar.gz", data)
            staged = f"/tmp/aibx-{local.name}-{n}.tar.gz"
            extract = model.ShellStep(
                name=f"{self.name or 'file'}: extract {local.name}",
                inline=[
                    f"mkdir -p {idioms.sh_quote(into)}",
                    f"tar -xzf {idioms.sh_quote(staged)} -C {idioms.sh_quote(into)}",
                    f"rm -f {idioms.sh_quote(staged)}",
                ],
            )
        upload = model.FileStep(
            name=f"{self.name or 'file'}: upload {local.name}", source_uri=uri, destination=staged, sha256_checksum=sha
        )
        return [upload, extract]

    # ------------------------------------------------------------------------------------------- windows
    def windows_restart(self) -> list[model.Step]:
        step = model.WindowsRestartStep(
            name=self.name,
            restart_command=text_of(self.take("restart_command")),
            restart_check_command=text_of(self.take("restart_check_command")),
            restart_timeout=text_of(self.take("restart_timeout")),
        )
        if truthy(self.take("check_registry")):
            self.note("dropped", "check_registry", "AIB's WindowsRestart does not check pending-reboot registry keys")
        if self.take("registry_keys"):
            self.note("dropped", "registry_keys", "AIB's WindowsRestart does not check registry keys")
        self.done("mapped", "WindowsRestart")
        return [step]

    def windows_update(self) -> list[model.Step]:
        filters = self.take("filters")
        limit = self.take("update_limit")
        step = model.WindowsUpdateStep(
            name=self.name,
            search_criteria=text_of(self.take("search_criteria")),
            filters=[f for f in filters if isinstance(f, str)] if isinstance(filters, list) else None,
            update_limit=int(limit) if re.fullmatch("[0-9]{1,9}", str(limit)) else None,
        )
        for key in ("update_max_retries", "restart_timeout", "username", "password"):
            if self.take(key) not in (None, ""):
                self.note("approximated", key, "AIB's Windows Update customizer uses its defaults")
        self.done("mapped", "WindowsUpdate")
        return [step]

    def windows_shell(self) -> list[model.Step]:
        bodies = self.bodies()
        env = self.env()
        if bodies is None or env is None:
            return []
        self.take("execute_command")
        self.take("remote_path")
        codes = self.exit_codes()
        if codes is None:
            return []
        lines: list[str] = []
        for raw, data, _local in bodies:
            if data is None:
                if self.open_lines(self.p.value("inline")):
                    return []
                text = "\r\n".join(self.p.value("inline")) + "\r\n"
            else:
                if not self.fits_inline(data, raw):
                    return []
                text = data.decode("utf-8", errors="replace")
            n = self.parent.next_id()
            path = f"C:\\Windows\\Temp\\aibx-windows-shell-{n}.cmd"
            sets = "".join(f'set "{k}={v}" && ' for k, v in env.items())
            lines += [
                *idioms.windows_write_text(path, text),
                f"cmd.exe /c {idioms.ps_quote(sets + path)}" if sets else f"cmd.exe /c {idioms.ps_quote(path)}",
                "$aibxExitCode = $LASTEXITCODE",
                f"Remove-Item -Force -LiteralPath {idioms.ps_quote(path)}",
                "if ($aibxExitCode -ne 0) { exit $aibxExitCode }",
            ]
        step = model.PowerShellStep(name=self.name, inline=lines)
        if self.p.value("valid_exit_codes") not in (None, []):
            step.valid_exit_codes = codes
        self.done("approximated", "PowerShell inline that writes the commands to a .cmd file and runs it with cmd.exe")
        return [step]

    def sleep(self) -> list[model.Step]:
        value = self.take("duration")
        seconds = model.parse_duration(value) if isinstance(value, str) else None
        if seconds is None:
            self.done("dropped", f"duration {value!r} is not a duration")
            return []
        lines = idioms.powershell_sleep(seconds) if self.windows else idioms.shell_sleep(seconds)
        cls = model.PowerShellStep if self.windows else model.ShellStep
        self.done("mapped", f"a {cls.kind} customizer that sleeps {value}")
        return [cls(name=self.name, inline=lines)]

    def breakpoint(self) -> list[model.Step]:
        if truthy(self.take("disable")):
            self.done("mapped", "disabled: nothing to do")
            return []
        self.take("note")
        self.done("dropped", "AIB cannot pause a build for debugging")
        return []


def _windows_stage(path: str, data: bytes) -> list[str]:
    """Write a script: its lines as PowerShell strings for plain text, base64 otherwise."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return idioms.windows_write_file(path, data)
    if "{{" in text or "\r" in text.replace("\r\n", ""):  # a template to AIB's Packer, or bare CRs
        return idioms.windows_write_file(path, data)
    return idioms.windows_write_text(path, text, bom=not text.isascii())


def _normal(command: str) -> str:
    return re.sub(r"\s+", " ", _GO_FIELD.sub(lambda m: "{{." + m.group(1) + "}}", command)).strip()


def _checked_run(rendered: str, codes_list: list[int]) -> list[str]:
    """The script lines that run Packer's command line and accept the exit codes Packer's valid_exit_codes do."""
    if codes_list == [0]:
        return [rendered]
    allowed = " ".join(str(c) for c in codes_list)
    return [
        "aibx_rc=0",
        f"{rendered} || aibx_rc=$?",
        f'case " {allowed} " in *" $aibx_rc "*) ;; *) exit "$aibx_rc" ;; esac',
    ]


def _staged_shell_how(scripts: int, published: bool, command: str, codes_list: list[int], shebang: str | None) -> str:
    """How a shell provisioner became a staging Shell step, for the report (``shebang``: an inline script's)."""
    how_text = "Shell inline that stages the script" + ("s" if scripts > 1 else "")
    how_text += " (published as File customizers)" if published else ""
    how_text += " and runs Packer's command line for it: " + _render(command, "SCRIPT", "VARS ", "ENVFILE")
    if codes_list != [0]:
        how_text += f"; valid_exit_codes {codes_list} checked in the script"
    if shebang is not None and shebang != DEFAULT_SHEBANG:
        how_text += f"; shebang {shebang}"
    return how_text


def _render(command: str, path: str, env_vars: str, env_file: str | None) -> str:
    """Packer's execute_command with its template fields filled in."""
    values = {"Path": path, "Vars": env_vars.rstrip(" ") if env_vars else "", "EnvVarFile": env_file or ""}
    out = _GO_FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), command)
    return re.sub(r"  +", " ", out).strip()


_PLACEHOLDER = re.compile(r"<[A-Za-z][A-Za-z0-9_.\-]*>")


def _unknown(value: Any) -> str:
    if isinstance(value, (Unresolved, BuildValue)):
        from aibx.translators.hcl_eval import describe_unknown

        return describe_unknown(value)
    if isinstance(value, list):
        for v in value:
            if isinstance(v, (Unresolved, BuildValue)):
                return _unknown(v)
    return repr(value)


def _tar(folder: Path) -> bytes:
    """A reproducible .tar.gz of the folder: fixed times and owners, so its sha256 depends on content only."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
                z.writestr(info, path.read_bytes())
    return buf.getvalue()
