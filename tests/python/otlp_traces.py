"""Sends a two-service trace with the real OpenTelemetry Python SDK (used by the Rust tests).

usage: otlp_traces.py http|grpc ENDPOINT TENANT

frontend (SERVER "GET /checkout") → frontend (CLIENT "call backend") → backend (SERVER "charge",
status ERROR, an event, a link to an earlier trace) → backend (INTERNAL "db query"). Prints the
trace id (hex) and the linked trace id on one line.
"""
import sys

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

proto, endpoint, tenant = sys.argv[1:4]
results = []


def exporter():
    if proto == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        e = OTLPSpanExporter(endpoint=endpoint + "/v1/traces", headers={"X-Scope-OrgID": tenant})
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        e = OTLPSpanExporter(endpoint=endpoint, headers={"x-scope-orgid": tenant}, insecure=True)
    inner = e.export

    def export(spans):
        r = inner(spans)
        results.append(r)
        return r

    e.export = export
    return e


def provider(service):
    p = TracerProvider(resource=Resource.create({"service.name": service, "k8s.namespace.name": "shop"}))
    p.add_span_processor(SimpleSpanProcessor(exporter()))
    return p


fp, bp = provider("frontend"), provider("backend")
front, back = fp.get_tracer("front", "1.0"), bp.get_tracer("back", "2.0")

with front.start_as_current_span("earlier") as earlier:
    earlier_ctx = earlier.get_span_context()

with front.start_as_current_span("GET /checkout", kind=SpanKind.SERVER, attributes={"http.method": "GET", "http.route": "/checkout"}) as root:
    with front.start_as_current_span("call backend", kind=SpanKind.CLIENT, attributes={"peer.service": "backend"}):
        carrier = {}
        inject(carrier)
    ctx = extract(carrier)
    with back.start_as_current_span(
        "charge", context=ctx, kind=SpanKind.SERVER, links=[Link(earlier_ctx, {"reason": "retry"})],
        attributes={"amount": 42, "ratio": 0.5, "ok": False, "tags": ["a", "b"]},
    ) as charge:
        charge.add_event("card declined", {"code": "51"})
        with back.start_as_current_span("db query", attributes={"db.system": "postgresql"}):
            pass
        charge.set_status(Status(StatusCode.ERROR, "payment failed"))
    trace_id = root.get_span_context().trace_id

fp.shutdown()
bp.shutdown()
if not results or any(r.name != "SUCCESS" for r in results):
    sys.exit(f"export failed: {results}")
print(format(trace_id, "032x"), format(earlier_ctx.trace_id, "032x"))
