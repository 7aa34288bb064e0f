"""One Bicep file being evaluated (its declarations, evaluated lazily and once), and what the files of one load
share (options, diagnostics, secrets, the folder local files must stay in).

Every value keeps the offsets where its parts were written (``Val.spots``), through variables, loops and
parameters, so a diagnostic points at the ``.bicep`` line and column, with the JSON path into the resource.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from aibx import armexpr
from aibx.bicep import evaluate, params, resources
from aibx.bicep import syntax as syn
from aibx.bicep.values import ALLOW_FLAG, FALLBACK, EvalError, Spots, Supplied, Val
from aibx.diagnostics import Severity, format_path, make
from aibx.document import Document, Unresolved
from aibx.jsonc import JsonPath, SourceMap
from aibx.loader import COMMAND_LINE, LoadOptions, LoadResult, read_json, read_text


# ----------------------------------------------------------------------------------------------- session
class Session:
    """What the files of one load share: options, the result, the folder local files must stay in."""

    def __init__(self, options: LoadOptions, result: LoadResult, root: Path) -> None:
        self.options = options
        self.result = result
        self.root = root
        self.secrets: list[str] = []
        self.secret_names: dict[str, str] = {}
        self.secure_parameters: set[str] = set()
        self.reported: set[tuple[str, int, str]] = set()
        self.opened: dict[str, tuple[str, syn.Program, SourceMap]] = {}
        self.preloaded: dict[str, str] = {}  # texts read already (standard input)
        self.unreadable: set[str] = set()  # files whose image template holds syntax aibx cannot read
        self.skipped_templates = 0  # image templates whose `if` is false with the values given
        self.unread_modules = 0  # modules from a registry, or outside the folder: image templates may hide there

    def add(
        self,
        file: str,
        pos: int | None,
        code: str,
        message: str,
        path: JsonPath = (),
        *,
        smap: SourceMap | None = None,
        line: int = 0,
        column: int = 0,
        severity: Severity | None = None,
    ) -> None:
        if smap is not None and pos is not None:
            line, column = smap.line_col(pos)
        for secret in self.secrets:
            message = message.replace(secret, "***")
        key = (file, line * 100000 + column, message)
        if key in self.reported:
            return
        self.reported.add(key)
        self.result.diagnostics.append(
            make(
                code,
                message,
                file=file,
                line=line,
                column=column,
                json_path=format_path(path),
                severity=severity,
            )
        )

    def read_program(self, path: str, context: str = "") -> tuple[str, syn.Program, SourceMap] | None:
        if path in self.opened:
            return self.opened[path]
        text, diags = (self.preloaded[path], []) if path in self.preloaded else read_text(path)
        if text is None:
            for d in diags:
                message = f"{context}: {d.message}" if context else d.message
                self.result.diagnostics.append(make(d.code, message, file=d.file))
            return None
        if path.endswith(".bicepparam"):
            text_for_grammar, _ = syn.bicepparam_as_bicep(text)
        else:
            text_for_grammar = text
        program = syn.parse(text_for_grammar)
        smap = SourceMap(text=text)
        templates = {d.name for d in program.declarations if resources.is_image_template(d)}
        for problem in program.problems:
            if problem.in_type:
                message = f"Bicep type syntax aibx cannot read in {problem.construct}: the type is not checked"
                self.add(path, problem.pos, "AIB005", message, smap=smap)
            elif problem.declaration in templates or (
                problem.declaration is None and resources.RESOURCE_TYPE.lower() in problem.text.lower()
            ):
                self.unreadable.add(path)  # the image template itself: nothing to validate
                message = f"Bicep syntax aibx cannot read in {problem.construct}; {FALLBACK}"
                self.add(path, problem.pos, "AIB002", message, smap=smap)
            else:  # elsewhere: the template is read without it, and a value that needs it is unknown
                where = f"'{problem.declaration}'" if problem.declaration else "a statement"
                message = (
                    f"Bicep syntax aibx cannot read in {problem.construct}; {where} is left out and values that "
                    f"need it are unknown ({FALLBACK})"
                )
                self.add(path, problem.pos, "AIB002", message, smap=smap, severity=Severity.WARNING)
        self.opened[path] = (text, program, smap)
        return self.opened[path]

    def open(self, path: str, supplied: dict[str, Supplied], *, from_command_line: bool = False) -> BicepFile | None:
        read = self.read_program(path)
        if read is None:
            return None
        text, program, smap = read
        return BicepFile(self, path, text, program, smap, supplied, from_command_line=from_command_line)

    def read_bicepparam(self, path: str, supplied: dict[str, Supplied], *, top: bool) -> str | None:
        """Add the values of a .bicepparam file to ``supplied``; the path of the .bicep file it is ``using``."""
        read = self.read_program(path)
        if read is None:
            return None
        text, program, smap = read
        _, names = syn.bicepparam_as_bicep(text)
        using = next((d for d in program.declarations if d.kind == "using"), None)
        target: str | None = None
        if using is not None and using.type_text:
            if ":" in using.type_text.split("/")[0]:
                self.add(
                    path,
                    using.type_pos,
                    "AIB005",
                    f"'{using.type_text}' is a registry module, which aibx does not fetch; validate the "
                    "template it names with -p or --parameters instead",
                    smap=smap,
                )
            else:
                target = str(Path(path).parent / using.type_text)
        elif top:
            self.add(path, 0, "AIB003", "this .bicepparam file has no `using` statement naming its .bicep file")
        file = BicepFile(self, path, text, program, smap, {})
        for decl in program.declarations:
            if decl.kind == "var" and decl.name in names:
                val = file.variable(decl.name)
                line, column = smap.line_col(decl.value.pos if decl.value else decl.pos)
                supplied[decl.name] = Supplied(val.value, path, line, column, file.foreign_spots(val.spots))
        return target

    def read_json_parameters(self, path: str, supplied: dict[str, Supplied]) -> None:
        value, smap, diags = read_json(path)
        self.result.diagnostics += diags
        if smap is None:
            return
        params = value.get("parameters") if isinstance(value, dict) else None
        if not isinstance(params, dict):
            self.add(path, 0, "AIB007", 'an ARM parameters file needs a "parameters" object', line=1, column=1)
            return
        for name, entry in params.items():
            line, column = smap.locate(("parameters", name))
            if isinstance(entry, dict) and "value" in entry:
                at = ("parameters", name, "value")
                spots: Spots = {p[3:]: (path, *smap.line_col(o)) for p, o in smap.values.items() if p[:3] == at}
                supplied[name] = Supplied(entry["value"], path, line, column, spots)
            elif isinstance(entry, dict) and "reference" in entry:
                reason = "the value is a Key Vault reference, read by ARM at deployment"
                supplied[name] = Supplied(Unresolved(name, reason), path, line, column)

    def local_path(self, base: Path, relative: str) -> Path | str:
        """The file a template names, or why it may not be read."""
        target = (base / relative).resolve()
        if not self.options.allow_local_files and not target.is_relative_to(self.root):
            return f"'{relative}' is outside the template's folder; pass {ALLOW_FLAG} to read it"
        return target


# ----------------------------------------------------------------------------------------------- one file
class BicepFile:
    """One .bicep (or .bicepparam) file with its parameter values: names evaluate lazily, once."""

    def __init__(
        self,
        session: Session,
        name: str,
        text: str,
        program: syn.Program,
        smap: SourceMap,
        supplied: dict[str, Supplied],
        *,
        from_command_line: bool = False,
        depth: int = 0,
    ) -> None:
        self.session = session
        self.name = name
        self.text = text
        self.program = program
        self.smap = smap
        self.supplied = supplied
        self.from_command_line = from_command_line
        self.depth = depth
        self.folder = Path(name).resolve().parent
        self.decls: dict[str, syn.Declaration] = {}
        for d in program.declarations:
            if d.kind != "using" and d.kind != "output":
                self.decls.setdefault(d.name, d)
        self.outputs = {d.name: d for d in program.declarations if d.kind == "output"}
        self.cache: dict[str, Val] = {}
        self.busy: set[str] = set()
        self.module_files: dict[str, BicepFile | None] = {}
        self.scope = armexpr.Scope(context=session.options.context)
        self.secret_values: list[str] = []
        if from_command_line:
            self.check_supplied_names()

    # ------------------------------------------------------------------------------------------- reporting
    def add(self, pos: int | None, code: str, message: str, path: JsonPath = (), **kw: object) -> None:
        self.session.add(self.name, pos, code, message, path, smap=self.smap, **kw)  # type: ignore[arg-type]

    def foreign_spots(self, spots: Spots) -> Spots:
        """Spots of a value given to another file: each as (this file, line, column)."""
        return {p: (self.name, *self.smap.line_col(o)) if isinstance(o, int) else o for p, o in spots.items()}

    def snippet(self, node: syn.Node) -> str:
        end = getattr(node, "end", 0) or node.pos + 60
        text = " ".join(self.text[node.pos : end].split())
        return text if len(text) <= 80 else text[:79] + "…"

    def unresolved(self, node: syn.Node, reason: str) -> Unresolved:
        return Unresolved(self.snippet(node), reason)

    def check_supplied_names(self) -> None:
        from aibx.diagnostics import closest

        params = [n for n, d in self.decls.items() if d.kind == "param"]
        self.session.result.names_known.update(params)
        for name, s in self.supplied.items():
            if name in self.decls and self.decls[name].kind == "param":
                if s.file == COMMAND_LINE:
                    self.session.result.names_used.add(name.lower())
                continue
            if s.file == COMMAND_LINE:
                continue  # unused_assignments() warns about those
            close = closest(name, params)
            hint = f'; did you mean "{close}"?' if close else ""
            self.session.add(
                s.file,
                None,
                "AIB007",
                f"{self.name} declares no parameter '{name}'{hint}",
                line=s.line,
                column=s.column,
            )

    # ------------------------------------------------------------------------------------------- names
    def lookup(self, name: str, node: syn.Node, path: JsonPath = ()) -> Val:
        """The value of a declared name; ``path`` is where in the resource it is first used (for diagnostics)."""
        if name in self.cache:
            return self.cache[name]
        decl = self.decls.get(name)
        if decl is None and any(p.declaration is None and not p.in_type for p in self.program.problems):
            return Val(self.unresolved(node, f"'{name}' is not declared in what aibx could read of this file"))
        if decl is None:
            raise EvalError(f"'{name}' is not declared in this file", node.pos)
        if decl.broken and decl.kind != "resource":
            reason = f"the declaration of '{name}' holds Bicep syntax aibx cannot read"
            return Val(self.unresolved(node, reason), {(): decl.pos})
        if name in self.busy:
            raise EvalError(f"'{name}' refers to itself", node.pos)
        self.busy.add(name)
        try:
            if decl.kind == "param":
                val = self.parameter(decl)
            elif decl.kind == "var":
                val = self.eval_or_unresolved(decl.value, {}, path)
            elif decl.kind == "resource":
                val = Val(self.resource_refs(decl))
            elif decl.kind == "module":
                val = Val(self.module_ref(decl))
            else:
                raise EvalError(f"'{name}' ({decl.kind}) cannot be used as a value here", node.pos)
        finally:
            self.busy.discard(name)
        self.cache[name] = val
        return val

    def variable(self, name: str) -> Val:
        decl = self.decls[name]
        return self.lookup(name, decl.value or syn.Name(decl.pos, name))

    def eval_or_unresolved(self, node: syn.Node | None, env: dict[str, Val], path: JsonPath) -> Val:
        if node is None:
            return Val(Unresolved("", "nothing is written here"))
        try:
            return self.eval(node, env, path)
        except EvalError as exc:
            self.add(exc.pos, "AIB006", exc.message, path)
            return Val(Unresolved(self.snippet(node), exc.message, reported=True))
        except RecursionError:  # variables that refer to variables, thousands deep
            message = "the expression (or the variables it uses) is nested too deeply"
            self.add(node.pos, "AIB006", message, path)
            return Val(Unresolved(self.snippet(node), message, reported=True))

    # ------------------------------------------------------------------------------------------- parameters
    def parameter(self, decl: syn.Declaration) -> Val:
        return params.parameter_value(self, decl)

    # ------------------------------------------------------------------------------------------- evaluation
    def eval(self, node: syn.Node, env: dict[str, Val], path: JsonPath) -> Val:
        return evaluate.evaluate(self, node, env, path)

    # ------------------------------------------------------------------------------------------- resources
    def resource_refs(self, decl: syn.Declaration) -> object:
        return resources.references(self, decl, self.decls)

    def module_ref(self, decl: syn.Declaration) -> object:
        return resources.module_reference(self, decl)

    def documents(self) -> Iterator[Document]:
        yield from resources.documents(self)
