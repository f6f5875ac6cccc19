"""Policies that every statement of a session passes: tenant scoping, soft delete, audit columns.

They are declared once, on the Database (``Database(url, policies=[TenantScope(), ...])``), and
apply to every table model that has the policy's column. They hook the session, not the
repository, so that a ``select(Hero)`` of your own on ``uow.session`` is scoped like a
repository call (SQLAlchemy's "global WHERE criteria" recipe):

* ``do_orm_execute`` adds ``with_loader_criteria`` to every ORM SELECT, UPDATE and DELETE, and
  to the statements that load relationships (selectin) or join them (joined eager loads): rows
  of other tenants, and soft-deleted rows, are not there for the session.
* ``before_flush`` fills the tenant and audit columns of new and changed objects, and refuses
  an object of another tenant.
* ``after_begin`` sets the tenant for PostgreSQL row-level security (``set_config(..., true)``:
  transaction-scoped, so it works behind PgBouncer's transaction pooling).

A session's tenant is fixed when it is made (the :func:`tenant` context, or
``unit_of_work(tenant=...)``): every object in its identity map is then its tenant's, so even
``session.get()`` answered from memory cannot return another tenant's row. A scoped model used
with no tenant raises :class:`~herorepo.MissingTenantError` (fail closed);
``unit_of_work(all_tenants=True)`` is the escape hatch for admin work.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Generator, Iterable, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, false, func, select
from sqlalchemy.orm import (
    Mapper,
    ORMExecuteState,
    Session,
    SessionTransaction,
    registry,
    with_loader_criteria,
)
from sqlalchemy.orm.base import instance_state
from sqlalchemy.types import TypeDecorator
from sqlmodel.main import default_registry

from ._errors import ConfigurationError, MissingTenantError, TenantMismatchError

__all__ = [
    "ALL_TENANTS",
    "AuditColumns",
    "Policies",
    "Policy",
    "SoftDelete",
    "TenantScope",
    "acting_as",
    "tenant",
]

POLICIES_KEY = "herorepo.policies"
"""Where a session made by a Database keeps that Database's :class:`Policies` (``info``)."""
TENANT_KEY = "herorepo.tenant"
"""Where a session keeps its tenant (``info``), fixed when the session is made."""
ACTOR_KEY = "herorepo.actor"
_CLOCK_KEY = "herorepo.clock"


_MAX_CACHED_TENANTS = 4096

INCLUDE_DELETED = "herorepo_include_deleted"
"""Execution option: this statement sees soft-deleted rows too."""


class _AllTenants:
    def __repr__(self) -> str:
        return "ALL_TENANTS"


ALL_TENANTS: Any = _AllTenants()
"""The tenant of admin work: no tenant filter (``unit_of_work(all_tenants=True)``)."""

_tenant: ContextVar[object] = ContextVar("herorepo_tenant", default=None)
_actor: ContextVar[object] = ContextVar("herorepo_actor", default=None)


@contextmanager
def tenant(value: object) -> Generator[None]:
    """Make ``value`` the tenant of the sessions and units of work opened inside the block.

    ::

        with tenant(request.headers["X-Tenant"]):
            async with db.unit_of_work() as uow:
                ...  # every statement sees this tenant's rows only

    .. versionadded:: 0.1.0
    """
    if value is None or value is ALL_TENANTS:
        raise ConfigurationError(
            "tenant() takes a tenant value; for admin work across tenants, open "
            "db.unit_of_work(all_tenants=True)."
        )
    token = _tenant.set(value)
    try:
        yield
    finally:
        _tenant.reset(token)


@contextmanager
def acting_as(actor: object) -> Generator[None]:
    """Record ``actor`` in the ``created_by`` / ``updated_by`` audit columns inside the block.

    .. versionadded:: 0.1.0
    """
    token = _actor.set(actor)
    try:
        yield
    finally:
        _actor.reset(token)


def current_tenant() -> object:
    """The tenant set by the innermost :func:`tenant` block, or ``None``."""
    return _tenant.get()


class Policy:
    """Base class of :class:`TenantScope`, :class:`SoftDelete` and :class:`AuditColumns`.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()


@dataclass(frozen=True)
class TenantScope(Policy):
    """Scope every statement to one tenant, on every table model that has ``column``.

    Args:
        column: The attribute holding the tenant, e.g. ``tenant_id``.
        row_level_security: On PostgreSQL, also set the tenant for row-level security policies
            at the start of each transaction, as ``current_setting(setting)``.
        setting: The name of that setting (it must contain a dot).

    .. versionadded:: 0.1.0
    """

    column: str = "tenant_id"
    row_level_security: bool = False
    setting: str = "herorepo.tenant"

    def __post_init__(self) -> None:
        if "." not in self.setting or not self.setting.replace(".", "").replace("_", "").isalnum():
            raise ConfigurationError(
                f"setting must be a dotted name such as 'app.tenant', got {self.setting!r}."
            )


@dataclass(frozen=True)
class SoftDelete(Policy):
    """Soft delete on every table model that has ``column`` (a nullable datetime).

    ``delete()`` and ``delete_many()`` set it to the transaction's time; every read leaves such
    rows out unless asked with ``include_deleted=True``; ``restore()`` clears it and ``purge()``
    deletes for real.

    .. versionadded:: 0.1.0
    """

    column: str = "deleted_at"


@dataclass(frozen=True)
class AuditColumns(Policy):
    """Fill audit columns on every write, where a model has them (``None`` turns one off).

    ``created_at`` and ``updated_at`` get the transaction's time in UTC (one clock per
    transaction); ``created_by`` and ``updated_by`` the actor of :func:`acting_as` (or
    ``unit_of_work(actor=...)``).

    .. versionadded:: 0.1.0
    """

    created_at: str | None = "created_at"
    updated_at: str | None = "updated_at"
    created_by: str | None = "created_by"
    updated_by: str | None = "updated_by"


@dataclass(frozen=True)
class _ModelPolicies:
    mapper: Mapper[Any]
    tenant: str | None
    deleted: str | None
    created: tuple[str, ...]  # set on insert: (created_at, created_by) present
    updated: tuple[str, ...]  # set on insert and update
    stamps: frozenset[str]  # the audit columns that hold times


class Policies:
    """The policies of one Database, resolved per model on first use."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        given = list(policies)
        for policy in given:
            if not isinstance(policy, (TenantScope, SoftDelete, AuditColumns)):
                raise ConfigurationError(
                    f"policies takes TenantScope, SoftDelete and AuditColumns, got "
                    f"{type(policy).__name__}."
                )
        kinds = [type(p).__name__ for p in given]
        if len(set(kinds)) != len(kinds):
            raise ConfigurationError("policies takes each kind of policy once.")
        self.tenant = next((p for p in given if isinstance(p, TenantScope)), None)
        self.soft_delete = next((p for p in given if isinstance(p, SoftDelete)), None)
        self.audit = next((p for p in given if isinstance(p, AuditColumns)), None)
        self._models: dict[Mapper[Any], _ModelPolicies] = {}
        self._scoped: list[Mapper[Any]] = []
        self._shapes: dict[tuple[Mapper[Any], str, str], tuple[bool, bool]] = {}
        self._cursor_keys: dict[tuple[tuple[bytes, ...], object], tuple[bytes, ...]] = {}
        self._known = -1
        self._registries: set[registry] = {default_registry}
        self._options: dict[tuple[object, bool], tuple[Any, ...]] = {}

    @property
    def row_level_security(self) -> bool:
        return self.tenant is not None and self.tenant.row_level_security

    def cursor_keys(self, session: Session, keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
        """Cursor keys bound to the session's tenant: a cursor of one tenant does not verify
        in another's session."""
        value = session.info.get(TENANT_KEY)
        if self.tenant is None or value is None or value is ALL_TENANTS:
            return keys
        found = self._cursor_keys.get((keys, value))
        if found is None:
            salt = repr(value).encode()
            found = tuple(hashlib.blake2b(salt, key=key, digest_size=32).digest() for key in keys)
            if len(self._cursor_keys) < 10_000:
                self._cursor_keys[keys, value] = found
        return found

    def __repr__(self) -> str:
        parts = [p for p in (self.tenant, self.soft_delete, self.audit) if p is not None]
        return f"Policies({parts!r})"

    def of(self, mapper: Mapper[Any]) -> _ModelPolicies:
        found = self._models.get(mapper)
        if found is None:
            found = self._models[mapper] = self._resolve(mapper)
        return found

    def _resolve(self, mapper: Mapper[Any]) -> _ModelPolicies:
        columns = set(mapper.column_attrs.keys())

        def present(name: str | None) -> str | None:
            return name if name is not None and name in columns else None

        audit = self.audit or AuditColumns(None, None, None, None)
        created = tuple(n for n in (present(audit.created_at), present(audit.created_by)) if n)
        updated = tuple(n for n in (present(audit.updated_at), present(audit.updated_by)) if n)
        stamps = frozenset(n for n in (present(audit.created_at), present(audit.updated_at)) if n)
        return _ModelPolicies(
            mapper=mapper,
            tenant=present(self.tenant.column) if self.tenant else None,
            deleted=present(self.soft_delete.column) if self.soft_delete else None,
            created=created,
            updated=updated,
            stamps=stamps,
        )

    # --- reads and bulk statements ---------------------------------------------------------------

    def criteria(self, state: ORMExecuteState) -> tuple[Any, ...]:
        """The ``with_loader_criteria`` options for a statement of ``state``'s session.

        Every scoped model gets its criterion on every statement, so that a model inside a
        subquery, an EXISTS or a join is scoped too. The options of a tenant are built once and
        kept (a few thousand tenants at most), so a statement only appends them.
        """
        # The ORM's own loads during a flush (the children whose foreign key a delete sets to
        # NULL) must see soft-deleted rows too, or they would keep pointing at a deleted parent.
        include_deleted = bool(state.execution_options.get(INCLUDE_DELETED)) or bool(
            getattr(state.session, "_flushing", False)
        )
        for mapper in state.all_mappers:
            if mapper.registry not in self._registries:  # models of another registry
                self._registries.add(mapper.registry)
                self._known = -1
                self._options.clear()
        value = state.session.info.get(TENANT_KEY)
        key = (value, include_deleted)
        try:
            options = self._options.get(key)
        except TypeError:  # an unhashable tenant value: built for every statement
            return self._checked(state, self._build_criteria(value, include_deleted))
        if options is None:
            options = self._build_criteria(value, include_deleted)
            if len(self._options) >= _MAX_CACHED_TENANTS:
                self._options.clear()
            self._options[key] = options
        return self._checked(state, options)

    def _checked(self, state: ORMExecuteState, options: tuple[Any, ...]) -> tuple[Any, ...]:
        if options and state.session.info.get(TENANT_KEY) is None:
            self._refuse_without_tenant(state)
        return options

    def _build_criteria(self, value: object, include_deleted: bool) -> tuple[Any, ...]:
        options: list[Any] = []
        for mapper in self._scoped_mappers():
            model = self.of(mapper)
            cls = mapper.class_
            if model.tenant is not None and value is not ALL_TENANTS:
                column = getattr(cls, model.tenant)
                # No tenant: the statement is refused if it names a scoped model; one that
                # reaches it otherwise (a joined load) finds nothing.
                criterion = false() if value is None else column == value
                options.append(with_loader_criteria(cls, criterion, include_aliases=True))
            if model.deleted is not None and not include_deleted:
                column = getattr(cls, model.deleted)
                options.append(with_loader_criteria(cls, column.is_(None), include_aliases=True))
        return tuple(options)

    def _refuse_without_tenant(self, state: ORMExecuteState) -> None:
        for mapper in state.all_mappers:
            if self.of(mapper).tenant is not None:
                session_tenant(state.session, mapper.class_.__name__)
        # select(func.count()).select_from(Hero) names no entity; its FROM names the table.
        statement = state.statement
        if isinstance(statement, Select):
            froms: list[object] = list(statement.get_final_froms())  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
            tables: set[Table] = {table for table in froms if isinstance(table, Table)}
            for mapper in self._scoped_mappers():
                if self.of(mapper).tenant is not None and mapper.local_table in tables:
                    session_tenant(state.session, mapper.class_.__name__)

    def _scoped_mappers(self) -> list[Mapper[Any]]:
        mappers = [mapper for known in self._registries for mapper in known.mappers]
        if len(mappers) != self._known:  # models are declared as modules import
            self._scoped = [m for m in mappers if self.of(m).tenant or self.of(m).deleted]
            self._known = len(mappers)
        return self._scoped

    # --- writes ----------------------------------------------------------------------------------

    def fill_rows(
        self, session: Session, mapper: Mapper[Any], rows: Sequence[dict[str, Any]]
    ) -> None:
        """Set the tenant and audit columns of rows about to be inserted (bulk, upsert)."""
        model = self.of(mapper)
        if model.tenant is not None:
            value = session_tenant(session, mapper.class_.__name__)
            for row in rows:
                given = row.get(model.tenant)
                if given is None and value is not ALL_TENANTS:
                    row[model.tenant] = value
                elif value is not ALL_TENANTS and given != value:
                    raise _mismatch(mapper, model.tenant)
                elif given is None:
                    raise _no_tenant_value(mapper, model.tenant)
        stamp = self._stamps(session, model, (*model.created, *model.updated))
        if stamp:
            for row in rows:
                for key, value in stamp.items():
                    row.setdefault(key, value)

    def update_values(
        self, session: Session, mapper: Mapper[Any], values: dict[str, Any]
    ) -> dict[str, Any]:
        """``values`` of a bulk UPDATE with ``updated_at`` / ``updated_by`` and the tenant
        column checked (it may not be changed)."""
        model = self.of(mapper)
        if model.tenant is not None and model.tenant in values:
            value = session_tenant(session, mapper.class_.__name__)
            if value is ALL_TENANTS or values[model.tenant] != value:
                raise _mismatch(mapper, model.tenant)
        stamp = self._stamps(session, model, model.updated)
        return {**stamp, **values} if stamp else values

    def deleted_column(self, mapper: Mapper[Any]) -> str | None:
        return self.of(mapper).deleted

    def tenant_column(self, mapper: Mapper[Any]) -> str | None:
        return self.of(mapper).tenant

    def now(self, session: Session) -> datetime:
        """The transaction's time: every write of one transaction gets the same instant."""
        # Kept with the session transaction it belongs to: the next transaction gets its own.
        # (Not reset when a connection begins: a unit of work takes its connection at its first
        # statement, after the first flush has read the clock.)
        # A weak reference: the transaction refers to the session, whose info holds this.
        transaction = session.get_transaction()
        now = datetime.now(timezone.utc)
        if transaction is None:  # outside a transaction (a flush always has one)
            return now
        kept = session.info.get(_CLOCK_KEY)
        if kept is not None and kept[0]() is transaction:
            return cast("datetime", kept[1])
        session.info[_CLOCK_KEY] = (weakref.ref(transaction), now)
        return now

    def _stamps(
        self, session: Session, model: _ModelPolicies, names: Sequence[str]
    ) -> dict[str, Any]:
        if not names:
            return {}
        actor = session.info.get(ACTOR_KEY, _actor.get())
        values: dict[str, Any] = {}
        for name in names:
            if name in model.stamps:
                values[name] = self.time_for(session, model.mapper, name)
            else:
                values[name] = actor
        return values

    def time_for(self, session: Session, mapper: Mapper[Any], name: str) -> datetime:
        """The transaction's time, as column ``name`` stores it exactly: aware or naive UTC,
        and in whole seconds where MySQL keeps no fraction (a ``DATETIME`` without ``fsp``)."""
        dialect = session.get_bind(mapper).dialect
        key = (mapper, name, dialect.name)
        shape = self._shapes.get(key)
        if shape is None:
            declared = mapper.columns[name].type
            type_ = declared.dialect_impl(dialect)
            impl = getattr(type_, "impl", type_)
            underneath = (
                type_.load_dialect_impl(dialect) if isinstance(type_, TypeDecorator) else type_
            )
            whole = dialect.name in ("mysql", "mariadb") and not getattr(underneath, "fsp", None)
            shape = self._shapes[key] = (bool(getattr(impl, "timezone", False)), whole)
        aware, whole = shape
        value = self.now(session)
        if whole:
            value = value.replace(microsecond=0)
        return value if aware else value.replace(tzinfo=None)

    def before_flush(self, session: Session) -> None:
        for obj in session.new:
            state = instance_state(obj)
            model = self.of(state.mapper)
            if model.tenant is not None:
                self._check_tenant_of(session, state.mapper, state.dict, new=True, obj=obj)
            stamps = self._stamps(session, model, (*model.created, *model.updated))
            for key, value in stamps.items():
                if state.dict.get(key) is None:
                    setattr(obj, key, value)
        for obj in session.dirty:
            state = instance_state(obj)
            model = self.of(state.mapper)
            if not state.modified:
                continue
            if model.tenant is not None and model.tenant in state.committed_state:
                self._check_tenant_of(session, state.mapper, state.dict, new=False, obj=obj)
            for key, value in self._stamps(session, model, model.updated).items():
                if key not in state.committed_state or key in model.stamps:
                    setattr(obj, key, value)

    def _check_tenant_of(
        self,
        session: Session,
        mapper: Mapper[Any],
        values: Mapping[str, Any],
        *,
        new: bool,
        obj: object,
    ) -> None:
        column = self.of(mapper).tenant
        assert column is not None
        value = session_tenant(session, mapper.class_.__name__)
        given = values.get(column)
        if value is ALL_TENANTS:
            if given is None:
                raise _no_tenant_value(mapper, column)
            return
        if given is None and new:
            setattr(obj, column, value)
        elif given != value:
            raise _mismatch(mapper, column)


def scope_info(*, tenant: object, all_tenants: bool, actor: object) -> dict[str, object]:
    """What ``unit_of_work(tenant=, all_tenants=, actor=)`` puts in its session's ``info``."""
    info: dict[str, object] = {}
    if all_tenants:
        if tenant is not None:
            raise ConfigurationError("Pass tenant= or all_tenants=True, not both.")
        info[TENANT_KEY] = ALL_TENANTS
    elif tenant is not None:
        info[TENANT_KEY] = tenant
    if actor is not None:
        info[ACTOR_KEY] = actor
    return info


def capture_tenant(session: Session) -> None:
    """A new session takes the tenant of the enclosing ``with tenant(...)`` block."""
    if POLICIES_KEY in session.info and TENANT_KEY not in session.info:
        value = _tenant.get()
        if value is not None:
            session.info[TENANT_KEY] = value


def session_tenant(session: Session, model: str) -> object:
    """The tenant of ``session``; raises when it has none (fail closed)."""
    value = session.info.get(TENANT_KEY)
    if value is None:
        raise MissingTenantError(
            f"{model} is scoped to a tenant, and no tenant is set. Open the unit of work inside "
            "`with tenant(...)`, or pass unit_of_work(tenant=...); for admin work across "
            "tenants, unit_of_work(all_tenants=True)."
        )
    return value


def _mismatch(mapper: Mapper[Any], column: str) -> TenantMismatchError:
    return TenantMismatchError(
        f"{mapper.class_.__name__}.{column} must be this unit of work's tenant: a row cannot be "
        "written for, or moved to, another tenant."
    )


def _no_tenant_value(mapper: Mapper[Any], column: str) -> TenantMismatchError:
    return TenantMismatchError(
        f"{mapper.class_.__name__}.{column} must be set explicitly in a unit of work across all "
        "tenants (all_tenants=True)."
    )


# --- session hooks (installed on herorepo's session class in _session.py) ------------------------


def _policies(session: Session) -> Policies | None:
    return session.info.get(POLICIES_KEY)


def scope_statement(state: ORMExecuteState) -> None:
    """``do_orm_execute``: add the policies' criteria to ORM SELECT, UPDATE and DELETE."""
    policies = _policies(state.session)
    if policies is None or state.is_column_load:
        return
    if state.is_select or state.is_update or state.is_delete:
        options = policies.criteria(state)
        if options:
            state.statement = state.statement.options(*options)


def fill_before_flush(session: Session, _context: object, _instances: object) -> None:
    policies = _policies(session)
    if policies is not None:
        policies.before_flush(session)


def set_row_level_tenant(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    """``after_begin``: the tenant for PostgreSQL row-level security, for this transaction."""
    policies = _policies(session)
    if policies is None:
        return
    scope = policies.tenant
    if scope is None or not scope.row_level_security or connection.dialect.name != "postgresql":
        return
    value = session.info.get(TENANT_KEY)
    shown = "" if value is None or value is ALL_TENANTS else str(value)
    # An empty setting matches no tenant: RLS policies then show no rows (fail closed), unless
    # the role bypasses them for admin work.
    connection.execute(select(func.set_config(scope.setting, shown, True)))
