"""herorepo: typed async repositories, unit of work and eager loading for SQLModel.

Runs the same on SQLite (aiosqlite), PostgreSQL (asyncpg) and MySQL/MariaDB (aiomysql).
"""

from ._database import Database as Database
from ._database import PoolStats as PoolStats
from ._engine import EngineConfig as EngineConfig
from ._engine import create_engine as create_engine
from ._engine import create_sessionmaker as create_sessionmaker
from ._errors import AfterCommitError as AfterCommitError
from ._errors import CannotConnectError as CannotConnectError
from ._errors import CheckViolationError as CheckViolationError
from ._errors import CommitInterruptedError as CommitInterruptedError
from ._errors import ConcurrentUpdateError as ConcurrentUpdateError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import ConflictError as ConflictError
from ._errors import ConnectionLostError as ConnectionLostError
from ._errors import DatabaseBusyError as DatabaseBusyError
from ._errors import DeadlockError as DeadlockError
from ._errors import DetachedLoadError as DetachedLoadError
from ._errors import ForeignKeyViolationError as ForeignKeyViolationError
from ._errors import HeroRepoError as HeroRepoError
from ._errors import InvalidCursorError as InvalidCursorError
from ._errors import InvalidDataError as InvalidDataError
from ._errors import InvalidFilterError as InvalidFilterError
from ._errors import InvalidLoadError as InvalidLoadError
from ._errors import LazyLoadError as LazyLoadError
from ._errors import LoadError as LoadError
from ._errors import LockTimeoutError as LockTimeoutError
from ._errors import MissingTenantError as MissingTenantError
from ._errors import MultipleResultsError as MultipleResultsError
from ._errors import NotFoundError as NotFoundError
from ._errors import NotNullViolationError as NotNullViolationError
from ._errors import PoolTimeoutError as PoolTimeoutError
from ._errors import ReadOnlyTransactionError as ReadOnlyTransactionError
from ._errors import RetriesExhaustedError as RetriesExhaustedError
from ._errors import SerializationError as SerializationError
from ._errors import StatementTimeoutError as StatementTimeoutError
from ._errors import TenantError as TenantError
from ._errors import TenantMismatchError as TenantMismatchError
from ._errors import TransactionError as TransactionError
from ._errors import TransientError as TransientError
from ._errors import UniqueViolationError as UniqueViolationError
from ._filters import FilterQuery as FilterQuery
from ._filters import FilterSet as FilterSet
from ._loading import Joined as Joined
from ._loading import LoadSpec as LoadSpec
from ._loading import eager as eager
from ._loading import joined as joined
from ._pagination import KeysetPage as KeysetPage
from ._pagination import Page as Page
from ._pagination import SortKey as SortKey
from ._policies import ALL_TENANTS as ALL_TENANTS
from ._policies import AuditColumns as AuditColumns
from ._policies import Policy as Policy
from ._policies import SoftDelete as SoftDelete
from ._policies import TenantScope as TenantScope
from ._policies import acting_as as acting_as
from ._policies import tenant as tenant
from ._projection_plans import load_plan as load_plan
from ._projections import Projection as Projection
from ._query_tags import QueryTags as QueryTags
from ._replicas import Replicas as Replicas
from ._repository import Repository as Repository
from ._retry import RetryPolicy as RetryPolicy
from ._telemetry import Telemetry as Telemetry
from ._unit_of_work import IsolationLevel as IsolationLevel
from ._unit_of_work import UnitOfWork as UnitOfWork
from ._version import __version__ as __version__

__all__ = [
    "ALL_TENANTS",
    "AfterCommitError",
    "AuditColumns",
    "CannotConnectError",
    "CheckViolationError",
    "CommitInterruptedError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ConflictError",
    "ConnectionLostError",
    "Database",
    "DatabaseBusyError",
    "DeadlockError",
    "DetachedLoadError",
    "EngineConfig",
    "FilterQuery",
    "FilterSet",
    "ForeignKeyViolationError",
    "HeroRepoError",
    "InvalidCursorError",
    "InvalidDataError",
    "InvalidFilterError",
    "InvalidLoadError",
    "IsolationLevel",
    "Joined",
    "KeysetPage",
    "LazyLoadError",
    "LoadError",
    "LoadSpec",
    "LockTimeoutError",
    "MissingTenantError",
    "MultipleResultsError",
    "NotFoundError",
    "NotNullViolationError",
    "Page",
    "Policy",
    "PoolStats",
    "PoolTimeoutError",
    "Projection",
    "QueryTags",
    "ReadOnlyTransactionError",
    "Replicas",
    "Repository",
    "RetriesExhaustedError",
    "RetryPolicy",
    "SerializationError",
    "SoftDelete",
    "SortKey",
    "StatementTimeoutError",
    "Telemetry",
    "TenantError",
    "TenantMismatchError",
    "TenantScope",
    "TransactionError",
    "TransientError",
    "UniqueViolationError",
    "UnitOfWork",
    "__version__",
    "acting_as",
    "create_engine",
    "create_sessionmaker",
    "eager",
    "joined",
    "load_plan",
    "tenant",
]


def _present_as_public() -> None:
    # Reprs and tracebacks say herorepo.Repository, not herorepo._repository.Repository.
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("herorepo."):
            obj.__module__ = __name__


_present_as_public()
