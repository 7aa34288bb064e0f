"""Resources and modules of a Bicep file: other resources as the image template refers to them (``identity.id``
is a resource ID, ``gallery.name`` a name), local modules with their params, and one ``Document`` for each image
template resource."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aibx import armexpr
from aibx.bicep import syntax as syn
from aibx.bicep.values import MAX_MODULE_DEPTH, MISSING, EvalError, Runtime, RuntimeObject, Supplied, Val
from aibx.diagnostics import Diagnostic, Severity, format_path, make
from aibx.document import Document, Unresolved, find_unresolved
from aibx.jsonc import JsonPath, SourceMap
from aibx.loader import RESOURCE_TYPE as RESOURCE_TYPE

if TYPE_CHECKING:
    from aibx.bicep.files import BicepFile

# keys of a resource body that Bicep consumes: they are not part of what ARM sends to the resource provider
_BICEP_KEYS = {"parent", "scope", "dependson"}
_REGISTRY = ("br:", "br/", "ts:", "ts/")


def split_type(type_text: str) -> tuple[str, str | None]:
    rtype, _, version = type_text.partition("@")
    return rtype, (version or None)


def is_image_template(decl: syn.Declaration) -> bool:
    """A declared image template (an ``existing`` one is only referred to, not deployed)."""
    rtype = split_type(decl.type_text)[0]
    return decl.kind == "resource" and not decl.existing and rtype.lower() == RESOURCE_TYPE.lower()


# ----------------------------------------------------------------------------------------------- references
def _unfold(f: BicepFile, node: syn.Node | None) -> list[tuple[syn.Node, dict[str, Val], object]] | object:
    """The bodies a resource or module declaration stands for, each with its loop variables and condition;
    or an Unresolved when the loop cannot be evaluated."""
    if node is None:
        return []
    if isinstance(node, syn.For):
        source = f.eval_or_unresolved(node.iterable, {}, ())
        if isinstance(source.value, Unresolved) or not isinstance(source.value, list):
            return source.value if isinstance(source.value, Unresolved) else []
        out = []
        for i, item in enumerate(source.value):
            env: dict[str, Val] = {}
            if node.item:
                env[node.item] = Val(item, {(): node.iterable.pos})
            if node.index:
                env[node.index] = Val(i, {(): node.pos})
            body: syn.Node = node.body
            cond: syn.Node | None = node.condition
            if isinstance(node.body, syn.Conditional):
                body, cond = node.body.body, node.body.condition
            out.append((body, env, _condition(f, cond, env)))
        return out
    if isinstance(node, syn.Conditional):
        return [(node.body, {}, _condition(f, node.condition, {}))]
    return [(node, {}, True)]


def _condition(f: BicepFile, node: syn.Node | None, env: dict[str, Val]) -> object:
    if node is None:
        return True
    return f.eval_or_unresolved(node, env, ()).value


def _prop(body: syn.Node, name: str) -> syn.Node | None:
    if not isinstance(body, syn.Obj):
        return None
    return next((p.value for p in body.props if isinstance(p.key, str) and p.key.lower() == name.lower()), None)


def references(f: BicepFile, decl: syn.Declaration, decls: dict[str, syn.Declaration]) -> object:
    """What the symbolic name of a resource stands for: one Runtime, or a list of them for a loop."""
    bodies = _unfold(f, decl.value)
    if not isinstance(bodies, list):
        return bodies
    refs = [_reference(f, decl, body, env) for body, env, _ in bodies]
    if isinstance(decl.value, syn.For):
        return refs
    return refs[0] if refs else Unresolved(decl.name, f"resource '{decl.name}' has no body aibx can read")


def nested_reference(f: BicepFile, node: syn.NestedRef) -> object:
    """``outer::inner``: a resource declared inside another resource's body."""
    key = "::".join(node.names)
    if key in f.cache:
        return f.cache[key].value
    outer_decl = f.decls.get(node.names[0])
    if outer_decl is None or outer_decl.kind != "resource":
        raise EvalError(f"'{node.names[0]}' is not a resource declared in this file", node.pos)
    outer: object = f.lookup(outer_decl.name, node).value
    decl = outer_decl
    for name in node.names[1:]:
        body = decl.value.body if isinstance(decl.value, syn.Conditional) else decl.value
        inner = next((d for d in body.nested if d.name == name), None) if isinstance(body, syn.Obj) else None
        if inner is None or not isinstance(outer, Runtime):
            raise EvalError(f"resource '{decl.name}' declares no resource '{name}' inside it", node.pos)
        inner_body = inner.value.body if isinstance(inner.value, syn.Conditional) else inner.value
        if inner_body is None:
            raise EvalError(f"resource '{name}' has no body aibx can read", node.pos)
        outer = _reference(f, inner, inner_body, {}, parent=outer)
        decl = inner
    f.cache[key] = Val(outer)
    return outer


def _reference(
    f: BicepFile, decl: syn.Declaration, body: syn.Node, env: dict[str, Val], parent: Runtime | None = None
) -> Runtime:
    rtype, version = split_type(decl.type_text)
    what = f"resource '{decl.name}'"
    known: dict[str, object] = {"type": rtype, "apiVersion": version}
    name_node = _prop(body, "name")
    name = f.eval(name_node, env, ()).value if name_node is not None else None
    known["name"] = name
    known["id"] = _resource_id(f, decl, body, env, rtype, name, parent)
    evaluated: list[dict[str, object]] = []

    def from_body(key: str) -> object:
        if decl.existing or key.lower() in _BICEP_KEYS:
            return MISSING
        if not evaluated:
            value = _body_value(f, body, env).value
            evaluated.append(value if isinstance(value, dict) else {})
        match = next((k for k in evaluated[0] if k.lower() == key.lower()), None)
        if match is None:
            return MISSING
        return _runtime_tree(evaluated[0][match], f"{what}.{match}")

    return Runtime(known, what, from_body)


def _runtime_tree(value: object, what: str) -> object:
    """A body's object read by another expression: a property it does not write is a runtime one."""
    if isinstance(value, dict):
        return RuntimeObject({k: _runtime_tree(v, f"{what}.{k}") for k, v in value.items()}, what)
    if isinstance(value, list):
        return [_runtime_tree(v, f"{what}[{i}]") for i, v in enumerate(value)]
    return value


def _resource_id(
    f: BicepFile,
    decl: syn.Declaration,
    body: syn.Node,
    env: dict[str, Val],
    rtype: str,
    name: object,
    parent: Runtime | None,
) -> object:
    if isinstance(name, Unresolved):
        return Unresolved(f"{decl.name}.id", f"the name of resource '{decl.name}' is unknown: {name.reason}")
    if not isinstance(name, str):
        return Unresolved(f"{decl.name}.id", f"resource '{decl.name}' has no name aibx can read")
    parent_node = _prop(body, "parent")
    segments = rtype.split("/")
    if parent_node is not None or parent is not None:
        outer: object = parent if parent is not None else f.eval(parent_node, env, ()).value  # type: ignore[arg-type]
        parent_id = outer.member("id") if isinstance(outer, Runtime) else outer
        if not isinstance(parent_id, str):
            return parent_id if isinstance(parent_id, Unresolved) else Unresolved(f"{decl.name}.id", "no parent ID")
        return f"{parent_id}/{segments[-1]}/{name}"
    scope_node = _prop(body, "scope")
    scope = f.eval(scope_node, env, ()).value if scope_node is not None else None
    names = name.split("/")
    if len(names) != len(segments) - 1:
        return Unresolved(f"{decl.name}.id", f"the name '{name}' does not fit the type {rtype}")
    tail = segments[0] + "".join(f"/{t}/{n}" for t, n in zip(segments[1:], names, strict=True))
    ctx = f.scope.context
    if isinstance(scope, Runtime) and "/providers/" in str(scope.known.get("id", "")):  # an extension resource
        return f"{scope.known['id']}/providers/{tail}"
    sub: object = ctx.subscription_id
    rg: object = ctx.resource_group
    subscription_scope = rtype.lower() == "microsoft.resources/resourcegroups"
    if isinstance(scope, Runtime):  # resourceGroup('name') or resourceGroup('sub', 'name')
        sub, rg = scope.known.get("subscriptionId", sub), scope.known.get("name")
    elif isinstance(scope, dict) and "subscriptionId" in scope:  # subscription() or subscription('id')
        sub, subscription_scope = scope["subscriptionId"], True
    if not isinstance(sub, str) or not (subscription_scope or isinstance(rg, str)):
        needs = "--subscription-id" if subscription_scope else "--subscription-id and --resource-group"
        return Unresolved(f"{decl.name}.id", f"the ID of resource '{decl.name}' needs {needs}")
    if rtype.lower() == "microsoft.resources/resourcegroups":
        return f"/subscriptions/{sub}/resourceGroups/{name}"
    if subscription_scope:
        return f"/subscriptions/{sub}/providers/{tail}"
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{tail}"


def _body_value(f: BicepFile, body: syn.Node, env: dict[str, Val]) -> Val:
    if not isinstance(body, syn.Obj):
        return f.eval_or_unresolved(body, env, ())
    kept = syn.Obj(body.pos, [p for p in body.props if not (isinstance(p.key, str) and p.key.lower() in _BICEP_KEYS)])
    kept.end = body.end
    return f.eval_or_unresolved(kept, env, ())


# ----------------------------------------------------------------------------------------------- modules
def module_reference(f: BicepFile, decl: syn.Declaration) -> object:
    bodies = _unfold(f, decl.value)
    if not isinstance(bodies, list):
        return bodies
    refs = [_module(f, decl, body, env) for body, env, _ in bodies]
    if isinstance(decl.value, syn.For):
        return refs
    return refs[0] if refs else Unresolved(decl.name, f"module '{decl.name}' has no body aibx can read")


def module_file(f: BicepFile, decl: syn.Declaration, body: syn.Node, env: dict[str, Val]) -> BicepFile | None:
    """The module's file, opened with the params this declaration passes (None for a registry module)."""
    path = decl.type_text
    if path.lower().startswith(_REGISTRY) or not path:
        f.session.unread_modules += 1
        f.add(
            decl.type_pos,
            "AIB005",
            f"module '{decl.name}' comes from a registry ({path}), which aibx does not fetch: image templates in "
            "it are not validated and its outputs are unknown",
        )
        return None
    if f.depth >= MAX_MODULE_DEPTH:
        f.add(decl.type_pos, "AIB006", f"modules nested more than {MAX_MODULE_DEPTH} deep")
        return None
    target = f.session.local_path(f.folder, path)
    if isinstance(target, str):
        f.session.unread_modules += 1
        f.add(decl.type_pos, "AIB005", f"module '{decl.name}': {target}; image templates in it are not validated")
        return None
    read = f.session.read_program(str(target), context=f"module '{decl.name}' ({path})")
    if read is None:
        return None
    text, program, smap = read
    supplied: dict[str, Supplied] = {}
    params_node = _prop(body, "params")
    if params_node is not None:
        params = f.eval_or_unresolved(params_node, env, ())
        if isinstance(params.value, dict):
            spots = f.foreign_spots(params.spots)
            for key, value in params.value.items():
                key_at = params.keys.get((key,), decl.pos)
                line, column = f.smap.line_col(key_at) if isinstance(key_at, int) else key_at[1:]
                mine = {p[1:]: o for p, o in spots.items() if p[:1] == (key,)}
                supplied[key] = Supplied(value, f.name, line, column, mine)
    from aibx.bicep.files import BicepFile

    shown = str(Path(f.name).parent / path) if not Path(path).is_absolute() else path
    module = BicepFile(f.session, shown, text, program, smap, supplied, depth=f.depth + 1)
    module.scope = armexpr.Scope(context=_module_context(f, body, env))
    return module


def _module_context(f: BicepFile, body: syn.Node, env: dict[str, Val]) -> armexpr.DeploymentContext:
    """What resourceGroup() and subscription() are inside a module: its `scope`, else the caller's."""
    ctx = f.scope.context
    scope_node = _prop(body, "scope")
    if scope_node is None:
        return ctx
    scope = f.eval_or_unresolved(scope_node, env, ()).value
    if isinstance(scope, Runtime):  # resourceGroup('name') or resourceGroup('sub', 'name')
        rg, sub = scope.known.get("name"), scope.known.get("subscriptionId", ctx.subscription_id)
        if isinstance(rg, str) and rg == ctx.resource_group and sub == ctx.subscription_id:
            return ctx
        return armexpr.DeploymentContext(sub if isinstance(sub, str) else None, rg if isinstance(rg, str) else None)
    if isinstance(scope, dict) and isinstance(scope.get("subscriptionId"), str) and "name" not in scope:
        return armexpr.DeploymentContext(str(scope["subscriptionId"]), None)  # subscription('id')
    return ctx


def _module(f: BicepFile, decl: syn.Declaration, body: syn.Node, env: dict[str, Val]) -> Runtime:
    name_node = _prop(body, "name")
    name = f.eval(name_node, env, ()).value if name_node is not None else decl.name
    key = f"{decl.name}@{body.pos}:{sorted((k, repr(v.value)) for k, v in env.items())}"
    if key not in f.module_files:
        f.module_files[key] = module_file(f, decl, body, env)
    instance = f.module_files[key]
    what = f"module '{decl.name}'"

    def output(out_name: str) -> object:
        if instance is None or out_name not in instance.outputs:
            return MISSING
        out = instance.outputs[out_name]
        return instance.eval_or_unresolved(out.value, {}, ()).value

    outputs = Runtime({}, f"the outputs of {what}", output)
    return Runtime({"name": name, "outputs": outputs}, what)


# ----------------------------------------------------------------------------------------------- documents
def documents(f: BicepFile) -> Iterator[Document]:
    for decl in f.program.declarations:
        if is_image_template(decl):
            yield from _template_documents(f, decl)
        elif decl.kind == "module":
            bodies = _unfold(f, decl.value)
            if not isinstance(bodies, list):
                continue
            for body, env, cond in bodies:
                if cond is False:
                    continue
                key = f"{decl.name}@{body.pos}:{sorted((k, repr(v.value)) for k, v in env.items())}"
                if key not in f.module_files:
                    f.module_files[key] = module_file(f, decl, body, env)
                instance = f.module_files[key]
                if instance is not None:
                    yield from instance.documents()


def _template_documents(f: BicepFile, decl: syn.Declaration) -> Iterator[Document]:
    if decl.broken:
        return  # AIB002 (an error) says what in it aibx cannot read
    bodies = _unfold(f, decl.value)
    if not isinstance(bodies, list) and isinstance(decl.value, syn.For):  # a loop over values only Azure knows
        loop = decl.value
        unknown = bodies if isinstance(bodies, Unresolved) else Unresolved(decl.name, "the loop cannot be evaluated")
        env = {n: Val(unknown, {(): loop.pos}) for n in (loop.item, loop.index) if n}
        body = loop.body.body if isinstance(loop.body, syn.Conditional) else loop.body
        bodies = [(body, env, True)]
    elif not isinstance(bodies, list):
        return
    rtype, version = split_type(decl.type_text)
    for body, env, cond in bodies:
        if cond is False:
            f.session.skipped_templates += 1
            message = f"image template '{decl.name}' is not deployed with these parameter values (its `if` is false)"
            f.add(decl.pos, "AIB005", message)
            continue
        if body is None:
            continue
        val = _body_value(f, body, env)
        if not isinstance(val.value, dict):
            f.add(body.pos, "AIB003", f"the body of resource '{decl.name}' is not an object aibx can read")
            continue
        finished = _finished(val.value)
        assert isinstance(finished, dict)
        resource: dict[str, object] = {"type": rtype, "apiVersion": version, **finished}
        val.spots[("type",)] = decl.type_pos
        val.spots[("apiVersion",)] = decl.type_pos
        val.spots[()] = decl.pos
        yield _document(f, decl, resource, val)


def _document(f: BicepFile, decl: syn.Declaration, resource: dict[str, object], val: Val) -> Document:
    values = {p: o for p, o in val.spots.items() if isinstance(o, int)}
    smap = SourceMap(text=f.text, values=values, keys={p: o for p, o in val.keys.items() if isinstance(o, int)})
    session = f.session
    name = resource.get("name")
    doc = BicepDocument(file=f.name, resource=resource, source_map=smap)
    doc.elsewhere = {p: o for p, o in val.spots.items() if not isinstance(o, int)}
    doc.name = name if isinstance(name, str) else decl.name
    doc.symbolic_name = decl.name
    api = session.options.api_version or resource.get("apiVersion")
    doc.api_version_written = api
    doc.api_version = api if isinstance(api, str) else None
    doc.in_deployment = True
    doc.unresolved = dict(find_unresolved(resource, ()))
    doc.unresolved.update(val.unknown_keys)
    doc.secrets = list(session.secrets)
    doc.secret_names = dict(session.secret_names)
    doc.secure_parameters = set(session.secure_parameters)
    return doc


@dataclass
class BicepDocument(Document):
    """A Document whose values may have been written in another file: a ``.bicepparam`` file, a module's caller
    or a JSON parameters file. A diagnostic points there when that is where the value was written."""

    # JSON path (relative to the resource) -> (file, line, column) of a value written in another file
    elsewhere: dict[JsonPath, tuple[str, int, int]] = field(default_factory=dict)

    def diagnostic(
        self,
        code: str,
        message: str,
        path: JsonPath = (),
        *,
        key: bool = False,
        severity: Severity | None = None,
    ) -> Diagnostic:
        foreign = _deepest(self.elsewhere, path)
        local = _deepest(self.source_map.keys if key else self.source_map.values, path)
        if foreign is None or (local is not None and len(local) >= len(foreign)):
            return super().diagnostic(code, message, path, key=key, severity=severity)
        file, line, column = self.elsewhere[foreign]
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return make(
            code,
            message,
            file=file,
            line=line,
            column=column,
            json_path=format_path(self.full_path(path)),
            severity=severity,
        )


def _deepest(spots: Mapping[JsonPath, object], path: JsonPath) -> JsonPath | None:
    for n in range(len(path), -1, -1):
        if path[:n] in spots:
            return path[:n]
    return None


def _finished(value: object) -> object:
    """The value as the resource provider receives it: another resource as its ID, a module as its name."""
    if isinstance(value, Runtime):
        return _finished(value.plain())
    if isinstance(value, dict):  # a property whose value is null is left out of the request, as ARM does
        return {k: _finished(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_finished(v) for v in value]
    return value
