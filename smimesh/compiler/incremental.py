"""The incremental compiler: a change set in, the changed resources and the findings out.

Fed by the operator's index (objects added, changed or removed, by `state.Key`); yields
`proxyconfig.resources.ResourceDelta`s for the config server. It keeps the pure stages
(`services.ServiceIndex`, `matching.RouteGroups`, `targets.Authorizer`, and
`splits.compile_root`) updated object by object, and a `dependencies.Dependencies` index
from every input to the units that read it, so one change recompiles only what it affects.
`compiling.compile_mesh` stays the reference: for any state, `resources.assemble` of these
resources equals its config of every proxy (a property test checks it).

Units and the inputs they read (recorded as each unit is compiled):
- a split root: the splits on it, the root and backend Services, the route groups named;
- an outbound Service: the Service, its EndpointSlices, the pods their endpoints name, and
  its root's route (when the route changes, the outbound is recompiled);
- a proxy's workload: its Pod, the Services (and their slices) whose endpoints name it;
- an inbound policy: the destination's TrafficTargets, the routes they name, the namespace;
- a TrafficTarget's findings: the target and the routes it names.
Mesh settings or the default access mode change everything: then the state is rebuilt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from smimesh.compiler import dependencies, findings, matching, services, splits, state, targets
from smimesh.proxyconfig import outbound, refs, resources, snapshots
from smimesh.smi import access, specs, split

Unit = tuple[str, str, str]
"""("root" | "outbound" | "proxy" | "target", namespace, name), or ("policy", name, "")."""
Input = tuple[str, str, str]
"""(what, namespace, name): "Service", "Slices" (of a Service), "Pod", "Backing" (which
Services name a pod), "Splits" (on a root), "Destination" (a ServiceAccount's targets),
"HTTPRouteGroup", "TCPRoute", "Namespace" (namespace in the name)."""
Changes = Mapping[state.Key, state.MeshObject | None]
"""A change set: each key's new object, or None when it is gone."""


@dataclass(frozen=True)
class Update:
    """What one change set did: the resource delta and every finding now true."""

    delta: resources.ResourceDelta
    findings: tuple[findings.Finding, ...]


class IncrementalCompiler:
    """Holds the last state and its resources; `apply` moves both to the next state."""

    def __init__(self, mesh: state.MeshState | None = None) -> None:
        mesh = mesh or state.MeshState()
        self.settings = mesh.settings
        self.default_access: state.AccessMode = mesh.default_access
        self.objects: dict[state.Key, state.MeshObject] = {}
        self._namespaces: dict[str, state.Namespace] = {}
        self._context = state.MeshState(settings=self.settings, default_access=self.default_access)
        self._index = services.ServiceIndex(self._context)
        self._groups = matching.RouteGroups(self._context)
        self._authorizer = targets.Authorizer(self._context, self._index, groups=self._groups)
        self._splits: dict[refs.ServiceRef, dict[state.Key, split.TrafficSplit]] = {}
        self._routes: dict[refs.ServiceRef, outbound.SplitRoute] = {}
        self._split_findings: dict[refs.ServiceRef, list[findings.Finding]] = {}
        self._policy_users: dict[str, set[str]] = {}
        self._policies: dict[str, tuple[str, str, int, outbound.Protocol]] = {}
        self._deps: dependencies.Dependencies[Unit, Input] = dependencies.Dependencies()
        self.resources: dict[str, resources.AnyResource] = {
            resources.SETTINGS: resources.Resource.of(resources.SETTINGS, self.settings)
        }
        self._changed: dict[str, resources.AnyResource] = {}
        self._removed: set[str] = set()
        self.apply({state.key_of(obj): obj for obj in _objects(mesh)})

    def mesh_state(self) -> state.MeshState:
        """The state compiled last, as `compiling.compile_mesh` would take it."""
        return state.MeshState.of(
            self.objects.values(), settings=self.settings, default_access=self.default_access
        )

    def all_findings(self) -> tuple[findings.Finding, ...]:
        split_findings = [
            f for key in sorted(self._split_findings, key=str) for f in self._split_findings[key]
        ]
        return findings.ordered([*split_findings, *self._authorizer.findings])

    def apply(
        self,
        changes: Changes,
        *,
        settings: snapshots.MeshSettings | None = None,
        default_access: state.AccessMode | None = None,
    ) -> Update:
        """Move to the state with `changes` (and new settings or default access, if given)."""
        if (settings is not None and settings != self.settings) or (
            default_access is not None and default_access != self.default_access
        ):
            return self._rebuild(changes, settings or self.settings, default_access)
        self._changed, self._removed = {}, set()
        inputs: set[Input] = set()
        units: set[Unit] = set()
        for key, new in changes.items():
            old = self.objects.get(key)
            if old == new:
                continue
            if old is not None:
                del self.objects[key]
                self._unindex(old)
                inputs |= _inputs_of(old)
                units |= _units_of(old)
            if new is not None:
                self.objects[key] = new
                self._reindex(new)
                inputs |= _inputs_of(new)
                units |= _units_of(new)
        self._compile(units | self._deps.readers(inputs))
        delta = resources.ResourceDelta(changed=self._changed, removed=frozenset(self._removed))
        return Update(delta=delta, findings=self.all_findings())

    def _rebuild(
        self,
        changes: Changes,
        settings: snapshots.MeshSettings,
        default_access: state.AccessMode | None,
    ) -> Update:
        objects = {**self.objects, **changes}
        fresh = IncrementalCompiler(
            state.MeshState.of(
                (obj for obj in objects.values() if obj is not None),
                settings=settings,
                default_access=default_access or self.default_access,
            )
        )
        before = self.resources
        self.__dict__.update(fresh.__dict__)
        changed = {
            name: resource
            for name, resource in self.resources.items()
            if name not in before or before[name].version != resource.version
        }
        removed = frozenset(name for name in before if name not in self.resources)
        delta = resources.ResourceDelta(changed=changed, removed=removed)
        return Update(delta=delta, findings=self.all_findings())

    # The stages' indexes, object by object.

    def _unindex(self, obj: state.MeshObject) -> None:
        if isinstance(obj, state.Service | state.EndpointSlice | state.Pod):
            self._index.drop(obj)
        elif isinstance(obj, specs.HTTPRouteGroup | specs.TCPRoute):
            self._groups.drop(obj)
        elif isinstance(obj, split.TrafficSplit):
            on_root = self._splits[splits.root_of(obj)]
            del on_root[state.key_of(obj)]
            if not on_root:
                del self._splits[splits.root_of(obj)]
        elif isinstance(obj, access.TrafficTarget):
            self._authorizer.drop(obj)
        else:
            del self._namespaces[obj.name]
            self._set_context()

    def _reindex(self, obj: state.MeshObject) -> None:
        if isinstance(obj, state.Service | state.EndpointSlice | state.Pod):
            self._index.put(obj)
        elif isinstance(obj, specs.HTTPRouteGroup | specs.TCPRoute):
            self._groups.put(obj)
        elif isinstance(obj, split.TrafficSplit):
            self._splits.setdefault(splits.root_of(obj), {})[state.key_of(obj)] = obj
        elif isinstance(obj, access.TrafficTarget):
            self._authorizer.put(obj)
        else:
            self._namespaces[obj.name] = obj
            self._set_context()

    def _set_context(self) -> None:
        """The stages read access modes from the context: namespaces are few, rebuild it."""
        self._context = state.MeshState(
            settings=self.settings,
            default_access=self.default_access,
            namespaces=tuple(self._namespaces.values()),
        )
        self._index.mesh = self._authorizer.mesh = self._context

    # Compiling units, in dependency order.

    def _compile(self, units: set[Unit]) -> None:
        for unit in sorted(u for u in units if u[0] == "target"):
            self._compile_target(unit)
        for unit in sorted(u for u in units if u[0] == "root"):
            if self._compile_root(refs.ServiceRef(namespace=unit[1], name=unit[2])):
                units.add(("outbound", unit[1], unit[2]))
        for unit in sorted(u for u in units if u[0] == "outbound"):
            self._compile_outbound(unit)
        for unit in sorted(u for u in units if u[0] == "proxy"):
            units |= self._compile_proxy(unit)
        for unit in sorted(u for u in units if u[0] == "policy"):
            self._compile_policy(unit)

    def _set(self, name: str, resource: resources.AnyResource | None) -> None:
        held = self.resources.get(name)
        if resource is None:
            if held is not None:
                del self.resources[name]
                self._changed.pop(name, None)
                self._removed.add(name)
        elif held is None or held.version != resource.version:
            self.resources[name] = resource
            self._changed[name] = resource
            self._removed.discard(name)

    def _compile_target(self, unit: Unit) -> None:
        key: state.Key = ("TrafficTarget", access.GROUP, unit[1], unit[2])
        target = self.objects.get(key)
        if not isinstance(target, access.TrafficTarget):
            self._deps.forget(unit)
            return
        self._authorizer.drop(target)
        self._authorizer.put(target)  # its findings, against the routes held now
        self._deps.record(unit, _routes_named([target]))

    def _compile_root(self, root: refs.ServiceRef) -> bool:
        """Compile the splits on `root`; whether its route changed."""
        unit: Unit = ("root", root.namespace, root.name)
        before = self._routes.pop(root, None)
        self._split_findings.pop(root, None)
        candidates = list(self._splits.get(root, {}).values())
        if not candidates:
            self._deps.forget(unit)
            return before is not None
        route, found = splits.compile_root(root, candidates, self._index, self._groups)
        if route is not None:
            self._routes[root] = route
        self._split_findings[root] = found
        read: set[Input] = {("Splits", root.namespace, root.name)}
        for item in candidates:
            read |= {
                ("Service", ref.namespace, ref.name) for ref in [root, *splits.backends_of(item)]
            }
            read |= {("HTTPRouteGroup", root.namespace, m.name) for m in item.spec.matches or []}
        self._deps.record(unit, read)
        return route != before

    def _compile_outbound(self, unit: Unit) -> None:
        ref = refs.ServiceRef(namespace=unit[1], name=unit[2])
        service = self._index.services.get(ref)
        if service is None:
            self._deps.forget(unit)
            self._set(resources.outbound_name(ref), None)
            return
        route = self._routes.get(ref)
        body = self._index.outbound_service(service, [route] if route else [])
        self._set(
            resources.outbound_name(ref), resources.Resource.of(resources.outbound_name(ref), body)
        )
        read: set[Input] = {
            ("Service", ref.namespace, ref.name),
            ("Slices", ref.namespace, ref.name),
        }
        for endpoint_slice in self._index.slices(ref):
            read |= {("Pod", ref.namespace, pod) for pod in services.slice_pods(endpoint_slice)}
        self._deps.record(unit, read)

    def _compile_proxy(self, unit: Unit) -> set[Unit]:
        """Compile a pod's workload; the policies whose users it changed."""
        _, namespace, name = unit
        pod = self._index.pods.get((namespace, name))
        workload = resources.workload_name(namespace, name)
        held = self.resources.get(workload)
        before = (
            {port.policy for port in held.body.ports}
            if held and isinstance(held.body, resources.Workload)
            else set()
        )
        if pod is None or not (pod.meshed and pod.ip):
            self._deps.forget(unit)
            self._set(workload, None)
            return self._use_policies(workload, before, set())
        bindings, uses = [], {}
        for port in self._index.served_ports(pod):
            policy = resources.inbound_name(
                namespace, pod.service_account, port.target_port, port.protocol
            )
            uses[policy] = (namespace, pod.service_account, port.target_port, port.protocol)
            bindings.append(
                resources.PortBinding(
                    port=port.target_port,
                    app_port=pod.app_port(port.target_port),
                    policy=policy,
                )
            )
        body = resources.Workload(
            proxy=pod.proxy,
            identity=services.spiffe_id(self.settings.trust_domain, namespace, pod.service_account),
            ports=tuple(bindings),
        )
        self._set(workload, resources.Resource.of(workload, body))
        self._policies.update(uses)
        read: set[Input] = {("Pod", namespace, name), ("Backing", namespace, name)}
        for ref in self._index.backing(namespace, name):
            read |= {("Service", ref.namespace, ref.name), ("Slices", ref.namespace, ref.name)}
        self._deps.record(unit, read)
        return self._use_policies(workload, before, set(uses))

    def _use_policies(self, workload: str, before: set[str], after: set[str]) -> set[Unit]:
        """Move the workload's uses from `before` to `after`; the policies to compile."""
        for name in before - after:
            self._policy_users[name].discard(workload)
        for name in after - before:
            self._policy_users.setdefault(name, set()).add(workload)
        return {("policy", name, "") for name in before ^ after}

    def _compile_policy(self, unit: Unit) -> None:
        name = unit[1]
        if not self._policy_users.get(name):
            self._policy_users.pop(name, None)
            self._policies.pop(name, None)
            self._deps.forget(unit)
            self._set(name, None)
            return
        namespace, service_account, port, protocol = self._policies[name]
        body = self._authorizer.policy(namespace, service_account, port, protocol)
        self._set(name, resources.Resource.of(name, body))
        read: set[Input] = {
            ("Destination", namespace, service_account),
            ("Namespace", namespace, ""),
            *_routes_named(self._authorizer.targets_of(namespace, service_account)),
        }
        self._deps.record(unit, read)


def _objects(mesh: state.MeshState) -> Iterable[state.MeshObject]:
    yield from mesh.namespaces
    yield from mesh.services
    yield from mesh.endpoint_slices
    yield from mesh.pods
    yield from mesh.splits
    yield from mesh.targets
    yield from mesh.route_groups
    yield from mesh.tcp_routes


def _routes_named(found: Iterable[access.TrafficTarget]) -> set[Input]:
    """The route objects the targets' rules name (a rule's kind is looked up both ways, as
    `targets.Authorizer` may)."""
    read: set[Input] = set()
    for target in found:
        namespace = target.metadata.namespace or ""
        for rule in target.spec.rules:
            read |= {("HTTPRouteGroup", namespace, rule.name), ("TCPRoute", namespace, rule.name)}
    return read


def _inputs_of(obj: state.MeshObject) -> set[Input]:
    """What a change to `obj` touches, as its readers recorded it."""
    if isinstance(obj, state.Service):
        return {("Service", obj.ref.namespace, obj.ref.name)}
    if isinstance(obj, state.EndpointSlice):
        ref = services.slice_service(obj)
        return {("Slices", ref.namespace, ref.name)} | {
            ("Backing", obj.namespace, pod) for pod in services.slice_pods(obj)
        }
    if isinstance(obj, state.Pod):
        return {("Pod", obj.namespace, obj.name)}
    if isinstance(obj, state.Namespace):
        return {("Namespace", obj.name, "")}
    if isinstance(obj, split.TrafficSplit):
        root = splits.root_of(obj)
        return {("Splits", root.namespace, root.name)}
    if isinstance(obj, access.TrafficTarget):
        return {("Destination", *targets.destination_of(obj))}
    return {(obj.kind, obj.metadata.namespace or "", obj.metadata.name or "")}


def _units_of(obj: state.MeshObject) -> set[Unit]:
    """The unit an object is the subject of (compiled whenever it changes)."""
    if isinstance(obj, state.Service):
        return {("outbound", obj.ref.namespace, obj.ref.name)}
    if isinstance(obj, state.Pod):
        return {("proxy", obj.namespace, obj.name)}
    if isinstance(obj, split.TrafficSplit):
        root = splits.root_of(obj)
        return {("root", root.namespace, root.name)}
    if isinstance(obj, access.TrafficTarget):
        return {("target", obj.metadata.namespace or "", obj.metadata.name or "")}
    return set()
