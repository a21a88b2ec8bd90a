"""Just enough of pyodbc for database.py's ODBC path, scripted by the test: every statement is recorded
with the number of the connection it ran on and handed to `on_execute`, which may raise to fail it;
the fetch calls answer what the test set; fetchmany takes rows from the statement's result as pyodbc does,
an empty list once they are all taken."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

OnExecute = Callable[["FakePyodbc", int, str], None]  # (the fake, connection number, sql)


class FakePyodbc:
    class Error(Exception):
        pass

    def __init__(self, driver: str, *, on_execute: OnExecute | None = None, fetchone: tuple[object, ...] = (),
                 fetchall: list[tuple[object, ...]] | None = None, description: object = (("one",),),
                 fetchmany: list[tuple[object, ...]] | None = None) -> None:
        self.driver = driver
        self.on_execute = on_execute
        self.fetchone_row = fetchone
        self.fetchall_rows = [(1,)] if fetchall is None else fetchall
        self.fetchmany_rows = [(1,), (2,)] if fetchmany is None else fetchmany
        self.description = description
        self.connects = 0
        self.closed = 0
        self.executed: list[tuple[int, str]] = []

    @property
    def statements(self) -> list[str]:
        """The statements sent, on every connection, in order."""
        return [sql for _, sql in self.executed]

    def drivers(self) -> list[str]:
        return [self.driver]

    def connect(self, *_: object, **__: object) -> Any:
        self.connects += 1
        return _Connection(self, self.connects)


class _Cursor:
    def __init__(self, fake: FakePyodbc, number: int) -> None:
        self._fake = fake
        self._number = number
        self.description = fake.description
        self._left: list[tuple[object, ...]] = []

    def execute(self, sql: str, *_: object) -> _Cursor:
        self._fake.executed.append((self._number, sql))
        self._left = list(self._fake.fetchmany_rows)
        if self._fake.on_execute is not None:
            self._fake.on_execute(self._fake, self._number, sql)
        return self

    def fetchone(self) -> tuple[object, ...]:
        return self._fake.fetchone_row

    def fetchall(self) -> list[tuple[object, ...]]:
        return self._fake.fetchall_rows

    def fetchmany(self, limit: int) -> list[tuple[object, ...]]:
        taken, self._left = self._left[:limit], self._left[limit:]
        return taken

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class _Connection:
    def __init__(self, fake: FakePyodbc, number: int) -> None:
        self._fake = fake
        self._number = number

    def cursor(self) -> _Cursor:
        return _Cursor(self._fake, self._number)

    def rollback(self) -> None: ...

    def close(self) -> None:
        self._fake.closed += 1
