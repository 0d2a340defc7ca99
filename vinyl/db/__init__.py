"""The connection layer: where the two modes meet the database.

Modules, lowest first (each imports only the ones before it; see tests/test_layering.py):

* ``worker``: the worker threads in which Django functions with mid-logic queries run once;
* ``querylog``: the hook every statement passes through: Django's SQL log, query list and execute
  wrappers in async mode, ``execute_wrapper()`` and ``capture_queries()`` in both;
* ``requestlog``: ``QueryLog`` (per context: per request) with its N+1 detector, and the ASGI
  ``QueryLogMiddleware``;
* ``pins``: which async transaction (``atomic()`` block) each task holds, per alias;
* ``wrapper``: the compile-only DatabaseWrapper async mode compiles SQL against;
* ``pool``: one psycopg ``AsyncConnectionPool`` per (alias, event loop);
* ``connection``: ``acquire()`` a handle, ``run_on()`` a statement, ``release()`` it;
* ``transaction``: ``atomic()``, ``on_commit()``, the rollback flag, ``in_atomic()``;
* ``testdb``: in a test run, Django's guards, the test database and the test's transaction.

With vinyl.futures and vinyl.flags, only this layer imports asyncio or anyio.
"""
