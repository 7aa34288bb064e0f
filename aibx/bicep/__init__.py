"""Image templates written in Bicep: ``.bicep`` files, ``.bicepparam`` files and the local modules they use.

``load_bicep(path, options)`` returns the same ``LoadResult`` as the JSON loader: one ``Document`` for each
``resource ... 'Microsoft.VirtualMachineImages/imageTemplates@VERSION'``, evaluated as Bicep compiles it and ARM
deploys it, through the same diagnostics and ``Unresolved`` values. The grammar is tree-sitter-bicep (PyPI);
the functions are ARM's (``aibx.armexpr``), which Bicep compiles to. This is not a Bicep compiler: other resources
are read only as far as the image template refers to them.

Modules: ``syntax`` (the grammar's tree to a small syntax tree), ``files`` (one file and its names), ``evaluate``
(expressions), ``params`` (parameter values and their checks), ``resources`` (resource IDs, modules, documents).
"""

from __future__ import annotations

from pathlib import Path

from aibx.bicep.files import Session
from aibx.bicep.values import Supplied
from aibx.diagnostics import Severity
from aibx.document import Document
from aibx.loader import COMMAND_LINE, RESOURCE_TYPE, LoadOptions, LoadResult

BICEP_SUFFIXES = (".bicep", ".bicepparam")


def is_bicep_path(path: str) -> bool:
    return path.lower().endswith(BICEP_SUFFIXES)


# ----------------------------------------------------------------------------------------------- entry point
def load_bicep(path: str, options: LoadOptions | None = None, *, text: str | None = None) -> LoadResult:
    """Load the image templates of a ``.bicep`` file (or of the file a ``.bicepparam`` file is ``using``);
    ``text`` is the file's text when it was read already (standard input, whose ``path`` is ``<stdin>``)."""
    result = LoadResult()
    try:
        return _load(path, options or LoadOptions(), result, text)
    except RecursionError:
        from aibx.diagnostics import make

        message = "the file nests expressions, variables or modules too deeply for aibx to evaluate"
        return LoadResult(diagnostics=[make("AIB006", message, file=path, line=1, column=1)])


def _load(path: str, options: LoadOptions, result: LoadResult, text: str | None) -> LoadResult:
    session = Session(options, result, Path(path).resolve().parent if text is None else Path.cwd())
    if text is not None:
        session.preloaded[path] = text
    supplied: dict[str, Supplied] = {}
    main = path
    if path.endswith(".bicepparam"):
        target = session.read_bicepparam(path, supplied, top=True)
        if target is None:
            return result
        main = target
    for pfile in options.parameter_files:
        if pfile.endswith(".bicepparam"):
            session.read_bicepparam(pfile, supplied, top=False)
        else:
            session.read_json_parameters(pfile, supplied)
    for name, text in options.parameters.items():
        supplied[name] = Supplied(text, COMMAND_LINE)
    file = session.open(main, supplied, from_command_line=True)
    if file is None:
        return result
    if main in session.unreadable:
        return result  # AIB002 says what in the image template cannot be read
    docs = list(file.documents())
    if not docs and (session.unread_modules or session.skipped_templates):
        result.unrelated = True  # in a registry module, or not deployed with these values: nothing is wrong
    elif not docs and not any(d.severity is Severity.ERROR for d in result.diagnostics):
        result.unrelated = True  # named, the AIB003 below is its verdict; found in a folder, it is skipped
        decls = [d for d in file.program.declarations if d.kind == "resource"]
        kinds = sorted({d.type_text.split("@")[0] for d in decls})
        listed = f" (it has {', '.join(kinds)})" if kinds else ""
        existing = [d.name for d in decls if d.existing and d.type_text.lower().startswith(RESOURCE_TYPE.lower())]
        if existing:
            listed += f"; '{existing[0]}' refers to an existing image template, which this file does not deploy"
        message = f"the Bicep file deploys no {RESOURCE_TYPE} resource{listed}"
        session.add(file.name, None, "AIB003", message, line=1, column=1)
    result.documents += _select(docs, options, session, file.name)
    return result


def _select(docs: list[Document], options: LoadOptions, session: Session, file: str) -> list[Document]:
    if not options.resource:
        return docs
    want = options.resource.lower()
    chosen = [d for d in docs if want in (str(d.name).lower(), (d.symbolic_name or "").lower())]
    if not chosen:
        names = ", ".join(str(d.symbolic_name or d.name) for d in docs)
        session.add(file, None, "AIB009", f'no image template named "{options.resource}" here (found: {names})')
    return chosen
