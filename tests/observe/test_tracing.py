"""OpenTelemetry's psycopg instrumentation traces vinyl's statements in both modes.

vinyl's pools connect through ``psycopg.AsyncConnection.connect`` with the connection's own cursor
factory passed as ``cursor_factory``, which is what the instrumentation wraps: each statement run
on a pooled (or pinned) connection gets a span, as Django's statements do in sync mode.
"""

import pytest
from django.db import connection
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.testapp.models import Author, Book
from vinyl import atomic, is_async, maybe_async
from vinyl.testing import both_modes


@pytest.fixture
def spans(db):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = PsycopgInstrumentor()
    connection.close()  # Django's next connection is made through the instrumented connect()
    instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()
        connection.close()


def statements(exporter):
    found = []
    for span in exporter.get_finished_spans():
        attributes = span.attributes or {}
        found.append(attributes.get("db.statement") or attributes.get("db.query.text"))
    return found


@both_modes
def test_each_statement_gets_a_span(spans):
    yield Author.vinyl.filter(name="Ann").count()
    author = yield Author.vinyl.create(name="Ann")
    yield Book.vinyl.create(author=author, title="T")
    traced = [s for s in statements(spans) if s and "testapp_" in s]
    assert len(traced) == 3, traced
    assert traced[0].startswith('SELECT COUNT(*) AS "__count" FROM "testapp_author"')
    assert traced[1].startswith('INSERT INTO "testapp_author"')
    assert traced[2].startswith('INSERT INTO "testapp_book"')
    span = [s for s in spans.get_finished_spans() if "testapp_author" in str(s.attributes)][0]
    assert span.attributes["db.system"] == "postgresql"
    assert span.name.startswith("SELECT")


@maybe_async
def write_in_block():
    if is_async():  # `with` and `async with` cannot be written once
        yield _write_async()
    else:
        with atomic():
            yield Author.vinyl.create(name="Bea")


async def _write_async():
    async with atomic():
        await Author.vinyl.create(name="Bea")


@both_modes
def test_statements_in_a_transaction_are_traced(spans, vinyl_mode):
    yield write_in_block()
    traced = [s for s in statements(spans) if s]
    assert any(s.startswith('INSERT INTO "testapp_author"') for s in traced), traced
    if vinyl_mode == "async":
        # BEGIN and COMMIT too, on the pinned connection (the pool's session set-up aside).
        ours = [s for s in traced if "set_config" not in s and "pg_type" not in s]
        assert ours[0] == "BEGIN" and ours[-1] == "COMMIT" and len(ours) == 3, traced
